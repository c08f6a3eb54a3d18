"""Protocol splits, the [-99, 99] filter counts, box sources and published box matching."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from pathlib import Path
import pytest

from pipeline import pose as posemod
from pipeline.datasets import DatasetError
from pipeline.protocols import BIWI_TEST_SUBJECTS, build
from fixtures_formats import (face_landmarks, write_3ddfa, write_aflw, write_biwi_frame,
                                    write_box_json)


def _protocol1_data(root):
    write_3ddfa(root / "300W_LP/AFW/AFW_1_1_0.jpg", (0.3, 0.2, 0.1), face_landmarks(5, 6, 30, 35))
    write_3ddfa(root / "300W_LP/LFPW/LFPW_2_1_0.jpg", (0.1, -0.2, 0.0), face_landmarks(4, 4, 20, 30))
    write_3ddfa(root / "AFLW2000/image00002.jpg", (0.1, 0.2, 0.0), face_landmarks(3, 3, 25, 30, 21))
    write_3ddfa(root / "AFLW2000/image00004.jpg", (0.0, 1.8, 0.0), face_landmarks(3, 3, 25, 30, 21))  # yaw 103
    write_3ddfa(root / "AFLW2000/image00006.jpg", (-1.0, 0.0, 0.2), face_landmarks(3, 3, 25, 30, 21))
    write_biwi_frame(root, "01", 3, posemod.biwi_matrix_from_pose((5.0, 20.0, -3.0)))
    write_biwi_frame(root, "02", 5, posemod.biwi_matrix_from_pose((-5.0, 10.0, 3.0)))


def test_protocol1_splits_filter_and_no_box_counts(tmp_path):
    _protocol1_data(tmp_path)
    samples, report = build(1, tmp_path)
    by_key = {s.key: s for s in samples}
    assert sorted(by_key) == ["300W_LP/AFW/AFW_1_1_0", "300W_LP/LFPW/LFPW_2_1_0",
                              "AFLW2000/image00002", "AFLW2000/image00006"]
    assert {s.split for s in samples if s.dataset == "300W_LP"} == {"train"}
    assert {s.split for s in samples if s.dataset == "AFLW2000"} == {"test"}
    assert by_key["300W_LP/AFW/AFW_1_1_0"].pose[0] == pytest.approx(-17.188733, abs=1e-4)
    assert by_key["300W_LP/AFW/AFW_1_1_0"].box == pytest.approx((5, 6, 30, 35))
    a2k = report["datasets"]["AFLW2000"]
    assert (a2k["read"], a2k["out_of_range"], a2k["kept"], a2k["test"]) == (3, 1, 2, 2)
    biwi = report["datasets"]["BIWI"]   # no landmarks and no box file: counted, not lost
    assert (biwi["no_box"], biwi["kept"]) == (2, 0)
    assert biwi["no_box_keys"] == ["BIWI/hpdb/01/frame_00003_rgb", "BIWI/hpdb/02/frame_00005_rgb"]
    assert (report["train"], report["test"], report["samples"]) == (2, 2, 4)


def test_protocol1_biwi_boxes_from_published_file(tmp_path):
    _protocol1_data(tmp_path)
    box_file = write_box_json(tmp_path / "boxes/BIWI.json", {
        "01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44]}],
        "02/frame_00005_rgb.png": [{"bbox": [1, 1, 9, 9]}, {"bbox": [20, 20, 30, 30]}],
    })
    samples, report = build(1, tmp_path, {"BIWI": box_file})
    biwi = [s for s in samples if s.dataset == "BIWI"]
    assert [(s.key, s.box, s.split) for s in biwi] == [
        ("BIWI/hpdb/01/frame_00003_rgb", (10.0, 8.0, 40.0, 44.0), "test")]
    # two detections and no landmark box to decide between them: counted as no box
    assert report["datasets"]["BIWI"]["no_box_keys"] == ["BIWI/hpdb/02/frame_00005_rgb"]
    assert report["datasets"]["BIWI"]["box_source"] == str(box_file)


def test_protocol3_biwi_subject_split(tmp_path):
    subjects = ["01", "06", "07", "09", "10", "13", "15", "18", "21", "22", "24"]
    for i, subject in enumerate(subjects):
        write_biwi_frame(tmp_path, subject, i, np.eye(3), width=32, height=32)
    box_file = write_box_json(tmp_path / "BIWI.json", {
        f"{s}/frame_{i:05d}_rgb.png": [{"bbox": [2, 2, 20, 20]}] for i, s in enumerate(subjects)})
    samples, report = build(3, tmp_path, {"BIWI": box_file})
    test_subjects = {s.subject for s in samples if s.split == "test"}
    assert test_subjects == set(BIWI_TEST_SUBJECTS)
    assert {s.subject for s in samples if s.split == "train"} == {"01", "09", "24"}
    assert (report["train"], report["test"]) == (3, 8)


def test_protocol2_first_jpg_images_by_file_name(tmp_path):
    # by basename the order is image00001 (folder 3), image00003 (2), image00005 (0), image00007 (0);
    # by full path it would start with folder 0. The png does not count as a jpg image.
    faces = [
        {"face_id": 1, "filepath": "0/image00005.jpg", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
        {"face_id": 2, "filepath": "0/image00007.jpg", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
        {"face_id": 3, "filepath": "2/image00003.jpg", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
        {"face_id": 4, "filepath": "3/image00001.jpg", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
        {"face_id": 5, "filepath": "3/image00001.jpg", "pose": (0, 1.9, 0), "rect": (30, 2, 20, 20)},
        {"face_id": 6, "filepath": "0/image00000.png", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
    ]
    write_aflw(tmp_path, faces)
    samples, report = build(2, tmp_path, aflw_test_images=2)
    split = {s.subject: s.split for s in samples}
    assert split == {"1": "train", "2": "train", "3": "test", "4": "test", "6": "train"}
    assert report["datasets"]["AFLW"]["out_of_range"] == 1     # face 5: yaw 108.9
    assert report["datasets"]["AFLW"]["box_source"] == "FaceRect"


def test_published_boxes_by_face_id_iou_and_type(tmp_path):
    write_aflw(tmp_path, [
        {"face_id": 10, "filepath": "0/image00002.jpg", "pose": (0, 0, 0), "rect": (2, 2, 10, 10)},
        {"face_id": 11, "filepath": "0/image00002.jpg", "pose": (0, 0, 0), "rect": (30, 2, 10, 10)},
    ])
    aflw_boxes = write_box_json(tmp_path / "AFLW.json", {"0/image00002.jpg": [
        {"bbox": [31, 3, 41, 13], "faceid": 11, "type": "test"},
        {"bbox": [1, 1, 13, 13], "faceid": 10, "type": "test"}]})
    samples, report = build(2, tmp_path, {"AFLW": aflw_boxes}, aflw_test_images=1)
    assert [(s.subject, s.box, s.split) for s in samples] == [
        ("10", (1.0, 1.0, 13.0, 13.0), "test"), ("11", (31.0, 3.0, 41.0, 13.0), "test")]
    assert report["datasets"]["AFLW"]["box_type_differs"] == 0

    write_3ddfa(tmp_path / "AFLW2000/image00002.jpg", (0.1, 0.1, 0), face_landmarks(4, 4, 20, 24, 21))
    write_3ddfa(tmp_path / "300W_LP/AFW/AFW_5_1_0.jpg", (0.1, 0.1, 0), face_landmarks(4, 4, 20, 24))
    write_biwi_frame(tmp_path, "01", 1, np.eye(3))
    a2k_boxes = write_box_json(tmp_path / "AFLW2000.json", {"image00002.jpg": [
        {"bbox": [30, 2, 45, 20], "type": "test"},     # another face: no overlap
        {"bbox": [3, 3, 21, 25], "type": "train"},     # this face, but a train box
        {"bbox": [5, 5, 19, 23], "type": "test"}]})    # this face, test box
    w300_boxes = write_box_json(tmp_path / "300W_LP.json", {"AFW/AFW_5_1_0.jpg": [
        {"bbox": [3, 3, 21, 25], "type": "test"}]})    # only a box of the other split
    samples, report = build(1, tmp_path, {"AFLW2000": a2k_boxes, "300W_LP": w300_boxes})
    by_key = {s.key: s for s in samples}
    assert by_key["AFLW2000/image00002"].box == (5.0, 5.0, 19.0, 23.0)
    # its only box is typed "test": used (types follow the file's protocol), and counted
    assert by_key["300W_LP/AFW/AFW_5_1_0"].box == (3.0, 3.0, 21.0, 25.0)
    assert report["datasets"]["300W_LP"]["box_type_differs"] == 1
    assert report["datasets"]["AFLW2000"]["box_type_differs"] == 0


def test_box_outside_image_errors_or_is_skipped(tmp_path):
    write_biwi_frame(tmp_path, "06", 1, np.eye(3), width=64, height=48)
    write_biwi_frame(tmp_path, "07", 2, np.eye(3), width=64, height=48)
    write_biwi_frame(tmp_path, "10", 3, np.eye(3), width=64, height=48)
    box_file = write_box_json(tmp_path / "BIWI.json", {
        "06/frame_00001_rgb.png": [{"bbox": [70, 10, 90, 30]}],
        "07/frame_00002_rgb.png": [{"bbox": [10, 10, 30, 30]}],
        "10/frame_00003_rgb.png": [{"bbox": [63, 10, 90, 30]}]})   # one pixel column inside
    image = str(tmp_path / "BIWI/hpdb/06/frame_00001_rgb.png")
    with pytest.raises(DatasetError, match="outside the 64x48 image") as info:
        build(3, tmp_path, {"BIWI": box_file})
    assert image in str(info.value) and "(and 1 more bad inputs)" in str(info.value)
    samples, report = build(3, tmp_path, {"BIWI": box_file}, on_bad="skip")
    assert [s.subject for s in samples] == ["07"]
    assert report["datasets"]["BIWI"]["bad"] == 2
    assert image in report["datasets"]["BIWI"]["bad_files"][0]
    assert report["datasets"]["BIWI"]["bad_files"][1] == (
        f"{tmp_path}/BIWI/hpdb/10/frame_00003_rgb.png: box (63.0, 10.0, 90.0, 30.0) lies mostly "
        "outside the 64x48 image (4% of it inside, need 50%)")


def test_on_bad_error_names_file_and_skip_lists_it(tmp_path):
    _protocol1_data(tmp_path)
    broken = tmp_path / "300W_LP/AFW/AFW_1_1_0.mat"
    broken.write_bytes(b"MATLAB but not really")
    with pytest.raises(DatasetError, match="AFW_1_1_0.mat") as info:
        build(1, tmp_path)
    assert "on_bad=skip" in str(info.value)
    samples, report = build(1, tmp_path, on_bad="skip")
    w300 = report["datasets"]["300W_LP"]
    assert (w300["read"], w300["bad"], w300["kept"]) == (2, 1, 1)
    assert str(broken) in w300["bad_files"][0]
    with pytest.raises(DatasetError, match="unknown dataset 'WIDER'"):
        build(1, tmp_path, {"WIDER": "x.json"})


def test_authors_key_layouts_match_in_prepare_and_relabel(tmp_path):
    """Box files keyed exactly as the authors' BIWI.json, AFLW.json and AFLW2000.json: paths
    below BIWI/hpdb, below AFLW/flickr and in AFLW2000. Both readers find every face."""
    from pipeline.relabel import RelabelConfig, relabel_samples

    _protocol1_data(tmp_path)
    write_aflw(tmp_path, [
        {"face_id": 40, "filepath": "0/image00002.jpg", "pose": (0, 0.1, 0), "rect": (2, 2, 20, 20)},
        {"face_id": 41, "filepath": "0/image00002.jpg", "pose": (0, 0.1, 0), "rect": (30, 2, 20, 20)},
    ])
    files = {
        "BIWI": write_box_json(tmp_path / "boxes/BIWI.json", {
            "01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44], "type": "train"}],
            "02/frame_00005_rgb.png": [{"bbox": [12, 9, 41, 45], "type": "train"}]}),
        "AFLW": write_box_json(tmp_path / "boxes/AFLW.json", {"0/image00002.jpg": [
            {"bbox": [31, 3, 49, 21], "type": "train", "faceid": 41},
            {"bbox": [3, 3, 21, 21], "type": "train", "faceid": 40}]}),
        "AFLW2000": write_box_json(tmp_path / "boxes/AFLW2000.json", {
            "image00002.jpg": [{"bbox": [2, 2, 26, 31]}], "image00006.jpg": [{"bbox": [4, 4, 24, 29]}]}),
    }
    expected = {"BIWI/hpdb/01/frame_00003_rgb": (10, 8, 40, 44), "BIWI/hpdb/02/frame_00005_rgb": (12, 9, 41, 45),
                "AFLW/flickr/0/image00002#40": (3, 3, 21, 21), "AFLW/flickr/0/image00002#41": (31, 3, 49, 21),
                "AFLW2000/image00002": (2, 2, 26, 31), "AFLW2000/image00006": (4, 4, 24, 29)}
    p1, r1 = build(1, tmp_path, {"BIWI": files["BIWI"], "AFLW2000": files["AFLW2000"]})
    p2, r2 = build(2, tmp_path, {"AFLW": files["AFLW"]}, aflw_test_images=0)
    assert r1["datasets"]["BIWI"]["no_box"] == r1["datasets"]["AFLW2000"]["no_box"] == 0
    assert r2["datasets"]["AFLW"]["no_box"] == 0
    samples = [s for s in p1 + p2 if s.dataset != "300W_LP"]
    assert {s.key: s.box for s in samples} == expected

    # relabel's json backend, on the keys and image paths prepare wrote
    shifted = [replace(s, box=(s.box[0] + 1, s.box[1], s.box[2] + 1, s.box[3])) for s in samples]
    outcomes = relabel_samples(shifted, RelabelConfig(backend="json", json_files=files, workers=1, manifest=Path("m.csv"),
                                                        boxes=Path("b.csv")))
    assert {o.key: (o.box, o.source) for o in outcomes} == {k: (b, "json") for k, b in expected.items()}


def test_box_file_in_another_layout_is_an_error_naming_file_dataset_and_keys(tmp_path):
    from pipeline.boxes import BoxFileError

    _protocol1_data(tmp_path)
    box_file = write_box_json(tmp_path / "boxes/BIWI.json", {      # keys below BIWI/, not hpdb/
        "hpdb/01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44]}],
        "hpdb/02/frame_00005_rgb.png": [{"bbox": [12, 9, 41, 45]}]})
    with pytest.raises(BoxFileError) as info:
        build(1, tmp_path, {"BIWI": box_file})
    message = str(info.value)
    assert message.startswith(f"{box_file}: box file for BIWI lists 0 of its 2 images")
    assert "'hpdb/01/frame_00003_rgb.png'" in message and "'01/frame_00003_rgb.png'" in message
