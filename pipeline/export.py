"""``pipeline export``: a teacher or student checkpoint as an ONNX file for deployment.

The graph maps a batch of face crops to angles: input ``image`` (B, 3, H, W) float32, RGB,
ImageNet-normalised (``(pixel / 255 - mean) / std``), cropped to the face box and stretched to
H x W (:func:`pipeline.image.crop_box`); output ``angles`` (B, 3) degrees, (pitch, yaw, roll) in
the project's convention, eq. 2 on the prediction head (softmax, expectation over the bin
centres). The batch axis is dynamic. Everything a user needs to feed it is in the model's
metadata (``metadata_props``): input size, layout, normalisation, crop rule, angle order and
convention, the head and its bins, and the checkpoint's sha256 and backbone.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from . import bins
from .files import atomic_path, file_sha256
from .image import IMAGENET_MEAN, IMAGENET_STD
from .model import HeadPoseNet, load_checkpoint
from .pose import ANGLE_NAMES, CONVENTION

OPSET = 17
CROP_RULE = ("the face box (x1, y1, x2, y2) stretched to H x W, bilinear, no aspect kept, pixels "
             "outside the image black (pipeline.image.crop_box); boxes of the detector that made "
             "the model's training boxes")


class AngleNet(torch.nn.Module):
    """Crops -> (B, 3) degrees: eq. 2 on the prediction head of ``model``."""

    def __init__(self, model: HeadPoseNet):
        super().__init__()
        self.model, self.head, self.bin_size = model, model.prediction_head, model.bin_sizes[0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return bins.decode_logits(self.model(image)[self.head], self.bin_size)


def metadata(model: HeadPoseNet, checkpoint: Path) -> dict[str, str]:
    return {"input_name": "image", "output_name": "angles", "input_size": json.dumps([model.input_size] * 2),
            "layout": "NCHW, RGB, float32", "pixel_scale": "1/255",
            "mean": json.dumps([round(float(v), 6) for v in IMAGENET_MEAN]),
            "std": json.dumps([round(float(v), 6) for v in IMAGENET_STD]),
            "crop": CROP_RULE, "angle_order": ",".join(ANGLE_NAMES), "convention": CONVENTION,
            "units": "degrees", "head": model.prediction_head, "bin_size": str(model.bin_sizes[0]),
            "bins": str(bins.num_bins(model.bin_sizes[0])), "backbone": model.backbone_name,
            "checkpoint_sha256": file_sha256(checkpoint)}


def export_onnx(checkpoint: str | Path, out: str | Path) -> dict[str, str]:
    """Write ``checkpoint`` as ONNX to ``out`` (atomically); returns the metadata written."""
    import onnx

    checkpoint = Path(checkpoint)
    model, _ = load_checkpoint(checkpoint)
    net = AngleNet(model).eval()
    props = metadata(model, checkpoint)
    h, w = json.loads(props["input_size"])
    with atomic_path(out, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")   # constant-folding notes
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)        # the bin centres: constants
        torch.onnx.export(net, (torch.zeros(1, 3, h, w),), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["angles"],
                          dynamic_axes={"image": {0: "batch"}, "angles": {0: "batch"}})
        graph = onnx.load(str(tmp))
        for key, value in props.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return props


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported file (what :func:`export_onnx` wrote)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
