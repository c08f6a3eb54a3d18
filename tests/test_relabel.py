"""Relabel stage: each backend on fixtures written here, fallbacks, bad input, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.boxes import BoxFileError, iou, read_boxes
from pipeline.config import ConfigError, stage_config
from pipeline.manifest import Sample, write_manifest
from pipeline.project import load_stage
from pipeline.relabel import (DetectorError, HaarConfig, HaarDetector, RelabelConfig, RelabelError,
                              YuNetConfig, YuNetDetector, build_report, choose_box, enlarge_box,
                              mirror_boxes, relabel, relabel_samples)
from pipeline.relabel.yunet import MODEL_NAME

skimage_data = pytest.importorskip("skimage.data")  # test extra: scikit-image (real face photo)

# skimage.data.astronaut() downscaled to 256 px; Haar finds her face at about this box.
ASTRONAUT_SIZE = 256
ASTRONAUT_LANDMARKS = (93.0, 43.0, 133.0, 83.0)


def write_rgb(path: Path, rgb: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))  # files store BGR
    return str(path)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.resize(skimage_data.astronaut(), (ASTRONAUT_SIZE, ASTRONAUT_SIZE), interpolation=cv2.INTER_AREA)


def sample(key, image, box, split="train", dataset="300W_LP") -> Sample:
    return Sample(key=key, dataset=dataset, image=str(image), pose=(0.0, 0.0, 0.0), box=box, split=split)


def config(**kw) -> RelabelConfig:
    return RelabelConfig(**{"workers": 1, "manifest": Path("manifest.csv"), "boxes": Path("boxes.csv"), **kw})


def test_landmark_rule_is_a_scaled_square_about_the_centre():
    assert enlarge_box((10, 20, 30, 60), 1.5) == (-10.0, 10.0, 50.0, 70.0)
    assert enlarge_box((0, 0, 10, 10), 1.0) == (0.0, 0.0, 10.0, 10.0)
    with pytest.raises(ValueError, match="empty"):
        enlarge_box((5, 0, 5, 10), 1.2)


def test_choose_box_best_iou_else_largest():
    ref = (0, 0, 10, 10)
    far, near, big = (50, 50, 60, 60), (1, 1, 11, 11), (0, 0, 40, 40)
    box, score = choose_box([far, near, big], ref)
    assert box == near and score == pytest.approx(iou(near, ref))
    assert choose_box([far, near, big], None) == (big, None)
    assert choose_box([], ref) == (None, None)


def test_mirror_boxes_maps_back_to_the_original_image():
    assert mirror_boxes([(10, 5, 30, 25)], 100) == [(70, 5, 90, 25)]


def test_haar_finds_the_astronaut_and_her_mirror_image(astronaut):
    detector = HaarDetector(HaarConfig())
    probe = sample("x/a", "unused", ASTRONAUT_LANDMARKS)
    box, score = choose_box(detector.detect(astronaut, probe), ASTRONAUT_LANDMARKS)
    assert score > 0.5, (box, score)
    mirrored_ref = mirror_boxes([ASTRONAUT_LANDMARKS], ASTRONAUT_SIZE)[0]
    mirrored_box, mirrored_score = choose_box(detector.detect(astronaut[:, ::-1].copy(), probe), mirrored_ref)
    assert mirrored_score > 0.5
    assert mirror_boxes([mirrored_box], ASTRONAUT_SIZE)[0] == pytest.approx(box, abs=8)


@pytest.mark.parametrize("workers", [1, 2])
def test_mtcnn_backend_finds_the_astronaut_in_parallel_and_falls_back_on_a_blank(tmp_path, astronaut, workers):
    face = write_rgb(tmp_path / "img" / "astronaut.png", astronaut)
    blank = write_rgb(tmp_path / "img" / "blank.png", np.full((64, 64, 3), 128, np.uint8))
    samples = [sample("300W_LP/astronaut", face, ASTRONAUT_LANDMARKS), sample("300W_LP/blank", blank, (16.0, 16.0, 48.0, 48.0))]
    outcomes = {o.key: o for o in relabel_samples(samples, config(backend="mtcnn", workers=workers, min_iou=0.3))}
    hit = outcomes["300W_LP/astronaut"]
    assert hit.source == "mtcnn" and hit.iou > 0.4
    assert outcomes["300W_LP/blank"].source == "fallback:no_face"


def test_haar_backend_accepts_matches_and_counts_fallbacks(tmp_path, astronaut):
    face = write_rgb(tmp_path / "img" / "astronaut.png", astronaut)
    blank = write_rgb(tmp_path / "img" / "blank.png", np.full((64, 64, 3), 128, np.uint8))
    samples = [
        sample("300W_LP/astronaut", face, ASTRONAUT_LANDMARKS),
        sample("300W_LP/astronaut-wrong-box", face, (5.0, 200.0, 40.0, 240.0)),
        sample("300W_LP/blank", blank, (16.0, 16.0, 48.0, 48.0)),
    ]
    cfg = config(backend="haar", landmark_scale=1.2, min_iou=0.3)
    outcomes = {o.key: o for o in relabel_samples(samples, cfg)}
    hit = outcomes["300W_LP/astronaut"]
    assert hit.source == "haar" and hit.iou > 0.5
    wrong = outcomes["300W_LP/astronaut-wrong-box"]
    assert wrong.source == "fallback:low_iou"
    assert wrong.box == pytest.approx(enlarge_box((5.0, 200.0, 40.0, 240.0), 1.2))
    assert outcomes["300W_LP/blank"].source == "fallback:no_face"

    report = build_report(list(outcomes.values()), cfg)
    assert (report["samples"], report["detections"], report["fallbacks"]) == (3, 1, 2)
    assert report["detections_per_backend"] == {"haar": 1}
    assert report["fallback_reasons"] == {
        "low_iou": {"count": 1, "examples": ["300W_LP/astronaut-wrong-box"]},
        "no_face": {"count": 1, "examples": ["300W_LP/blank"]}}
    assert report["mean_iou"] == pytest.approx(hit.iou, abs=1e-6)


def test_yunet_missing_model_says_where_to_get_it_and_where_to_put_it(tmp_path):
    missing = tmp_path / "models" / MODEL_NAME
    with pytest.raises(DetectorError) as err:
        YuNetDetector(YuNetConfig(model=missing))
    message = str(err.value)
    assert str(missing) in message and "OpenCV Zoo" in message and "relabel.yunet.model" in message
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(DetectorError, match="garbage.onnx: not a usable YuNet"):
        YuNetDetector(YuNetConfig(model=garbage))


def test_yunet_missing_model_fails_before_any_image_is_read(tmp_path):
    cfg = config(backend="yunet", yunet=YuNetConfig(model=tmp_path / "nope.onnx"))
    with pytest.raises(DetectorError, match="nope.onnx"):
        relabel_samples([sample("300W_LP/a", tmp_path / "missing.png", (0.0, 0.0, 5.0, 5.0))], cfg)


def write_json(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_json_backend_picks_split_face_id_and_iou(tmp_path):
    ref = (10.0, 10.0, 50.0, 50.0)
    box_file = write_json(tmp_path / "300W_LP.json", {
        "AFW/img1.jpg": [{"bbox": [10, 10, 50, 50], "type": "test"},      # exact, wrong split
                         {"bbox": [12, 12, 52, 52], "type": "train"},
                         {"bbox": [100, 100, 140, 140], "type": "train"}],
        "AFW/img2.jpg": [{"bbox": [10, 10, 50, 50], "faceid": 0},
                         {"bbox": [14, 14, 54, 54], "faceid": 1}],
        "AFW/img3.jpg": [{"bbox": [13, 13, 53, 53], "type": "train"}],    # only the other split
        "AFW/none.jpg": [],
        "AFW/far.jpg": [{"bbox": [900, 900, 950, 950]}],                 # outside the image
        "HELEN/img4.jpg": [{"bbox": [11, 11, 51, 51]}],
    })
    samples = [
        sample("300W_LP/AFW/img1", "no/image/needed.jpg", ref),
        sample("300W_LP/AFW/img2#1", "x.jpg", ref),
        sample("300W_LP/AFW/img3", "x.jpg", ref, split="test"),
        sample("300W_LP/AFW/none", "x.jpg", ref),
        sample("300W_LP/AFW/far", "x.jpg", ref),
        sample("300W_LP/AFW/unlisted", "x.jpg", ref),
        sample("300W_LP/HELEN/img4", "/any/data/root/300W_LP/HELEN/img4.jpg", ref),
    ]
    outcomes = {o.key: o for o in relabel_samples(samples, config(backend="json", json_files={"300W_LP": box_file}))}
    assert outcomes["300W_LP/AFW/img1"].box == (12.0, 12.0, 52.0, 52.0)
    assert outcomes["300W_LP/AFW/img2#1"].box == (14.0, 14.0, 54.0, 54.0)
    assert outcomes["300W_LP/AFW/img3"].box == (13.0, 13.0, 53.0, 53.0)
    assert outcomes["300W_LP/AFW/none"].source == "fallback:no_face"
    assert outcomes["300W_LP/AFW/far"].source == "fallback:low_iou"
    assert outcomes["300W_LP/AFW/unlisted"].source == "fallback:not_in_box_file"
    assert outcomes["300W_LP/HELEN/img4"].box == (11.0, 11.0, 51.0, 51.0)
    assert {o.source for k, o in outcomes.items() if "img" in k} == {"json"}


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ("{\"a.jpg\": [", "malformed JSON"),
    (json.dumps({"a.jpg": [{"bbox": [30, 10, 20, 50]}]}), "empty \\(need x2 > x1"),
])
def test_json_backend_bad_box_files_name_the_file(tmp_path, content, problem):
    box_file = write_json(tmp_path / "bad.json", content)
    cfg = config(backend="json", json_files={"300W_LP": box_file})
    with pytest.raises(BoxFileError, match=f"bad.json.*{problem}"):
        relabel_samples([sample("300W_LP/a", "a.jpg", (0.0, 0.0, 5.0, 5.0))], cfg)


def test_json_backend_refuses_a_file_in_another_key_layout(tmp_path):
    box_file = write_json(tmp_path / "BIWI.json", {       # relative to BIWI/, not BIWI/hpdb/
        f"hpdb/01/frame_0000{i}_rgb.png": [{"bbox": [10, 10, 50, 50]}] for i in range(3)})
    samples = [sample(f"BIWI/hpdb/01/frame_0000{i}_rgb", f"d/BIWI/hpdb/01/frame_0000{i}_rgb.png",
                      (10.0, 10.0, 50.0, 50.0), dataset="BIWI") for i in range(3)]
    with pytest.raises(BoxFileError, match=r"BIWI.json: box file for BIWI lists 0 of its 3 images.*"
                                           r"expects keys like '01/frame_00000_rgb.png'"):
        relabel_samples(samples, config(backend="json", json_files={"BIWI": box_file}))


def test_json_backend_needs_a_file_for_every_dataset(tmp_path):
    cfg = config(backend="json", json_files={"AFLW2000": tmp_path / "x.json"})
    with pytest.raises(RelabelError, match="no box file for dataset.*300W_LP"):
        relabel_samples([sample("300W_LP/a", "a.jpg", (0.0, 0.0, 5.0, 5.0))], cfg)


def test_bad_images_and_boxes_are_errors_naming_the_file(tmp_path):
    good = write_rgb(tmp_path / "good.png", np.zeros((32, 32, 3), np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    samples = [
        sample("300W_LP/broken", broken, (1.0, 1.0, 20.0, 20.0)),
        sample("300W_LP/empty", empty, (1.0, 1.0, 20.0, 20.0)),
        sample("300W_LP/empty-box", good, (20.0, 1.0, 10.0, 20.0)),
        sample("300W_LP/outside", good, (100.0, 100.0, 120.0, 120.0)),
        sample("300W_LP/fine", good, (1.0, 1.0, 20.0, 20.0)),
    ]
    with pytest.raises(RelabelError) as err:
        relabel_samples(samples, config(backend="haar", workers=2))
    message = str(err.value)
    assert "4 of 5 samples failed" in message
    assert "broken.jpg: not a readable image" in message and "empty.jpg: empty file (0 bytes)" in message
    assert "300W_LP/empty-box" in message and "empty or invalid" in message
    assert "300W_LP/outside" in message and "good.png" in message and "outside the 32x32 image" in message


def test_an_exception_in_a_worker_comes_back_with_the_file_name(tmp_path):
    img = write_rgb(tmp_path / "ok.png", np.zeros((32, 32, 3), np.uint8))
    samples = [sample(f"300W_LP/{n}", img, (1.0, 1.0, 20.0, 20.0)) for n in ("a", "c")]
    samples.append(Sample(key="300W_LP/boom", dataset="300W_LP", image=None, pose=(0.0, 0.0, 0.0),
                          box=(1.0, 1.0, 20.0, 20.0)))          # a TypeError inside the worker
    with pytest.raises(RelabelError, match=r"1 of 3 samples failed(.|\n)*300W_LP/boom \(None\): TypeError"):
        relabel_samples(samples, config(backend="haar", workers=2, chunksize=1))


def write_params(path: Path, block: dict) -> Path:
    path.write_text(yaml.safe_dump({"relabel": block}))
    return path


def test_stage_is_byte_identical_for_1_and_2_workers(tmp_path, astronaut):
    rng = np.random.default_rng(0)
    samples = [sample("300W_LP/astronaut", write_rgb(tmp_path / "a.png", astronaut), ASTRONAUT_LANDMARKS)]
    for i in range(7):
        noise = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        samples.append(sample(f"AFLW2000/n{i}", write_rgb(tmp_path / f"n{i}.png", noise),
                              (8.0 + i, 8.0, 40.0, 40.0), split="test", dataset="AFLW2000"))
    write_manifest(tmp_path / "manifest.csv", samples)
    params = write_params(tmp_path / "params.yaml", {
        "manifest": str(tmp_path / "manifest.csv"), "backend": "haar", "chunksize": 2})
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        relabel(stage_config("relabel", RelabelConfig, params, [
            f"relabel.workers={workers}", f"relabel.boxes={out}/boxes.csv", f"relabel.report={out}/report.json"]))
        outs.append(((out / "boxes.csv").read_bytes(), (out / "report.json").read_bytes()))
    assert outs[0] == outs[1]
    boxes = read_boxes(tmp_path / "w1" / "boxes.csv")
    assert sorted(boxes) == sorted(s.key for s in samples)
    assert boxes["300W_LP/astronaut"][1] == "haar"
    report = json.loads(outs[0][1])
    assert report["datasets"]["AFLW2000"]["samples"] == 7


def test_stage_writes_nothing_when_a_sample_fails(tmp_path):
    samples = [sample("300W_LP/gone", tmp_path / "gone.png", (1.0, 1.0, 9.0, 9.0))]
    write_manifest(tmp_path / "manifest.csv", samples)
    params = write_params(tmp_path / "params.yaml", {
        "manifest": str(tmp_path / "manifest.csv"), "backend": "haar", "workers": 1,
        "boxes": str(tmp_path / "boxes.csv"), "report": str(tmp_path / "report.json")})
    with pytest.raises(RelabelError, match="gone.png: image file not found"):
        relabel(stage_config("relabel", RelabelConfig, params))
    assert not (tmp_path / "boxes.csv").exists() and not (tmp_path / "report.json").exists()


def test_landmarks_backend_through_the_stage(tmp_path):
    samples = [sample("BIWI/01/frame_00003", "never/read.png", (10.0, 20.0, 30.0, 60.0), dataset="BIWI")]
    write_manifest(tmp_path / "manifest.csv", samples)
    params = write_params(tmp_path / "params.yaml", {
        "manifest": str(tmp_path / "manifest.csv"), "backend": "landmarks", "landmark_scale": 1.5,
        "boxes": str(tmp_path / "boxes.csv"), "report": str(tmp_path / "report.json")})
    load_stage("relabel").run(params, [])
    assert read_boxes(tmp_path / "boxes.csv") == {"BIWI/01/frame_00003": ((-10.0, 10.0, 50.0, 70.0), "landmarks")}
    assert json.loads((tmp_path / "report.json").read_text())["fallbacks"] == 0


@pytest.mark.parametrize("block, problem", [
    ({"backend": "retinaface"}, "relabel.backend"),
    ({"haar": {"scale_factor": 1.0}}, "relabel.haar.scale_factor: expected float > 1"),
    ({"min_iou": 1.5}, r"relabel.min_iou: expected float in \[0, 1\]"),
])
def test_config_rejects_bad_values(tmp_path, block, problem):
    with pytest.raises(ConfigError, match=problem):
        stage_config("relabel", RelabelConfig, write_params(tmp_path / "params.yaml",
                                                            {"manifest": "m.csv", "boxes": "b.csv", **block}))
