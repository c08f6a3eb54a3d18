"""Readers on tiny fixtures in the real formats: labels (incl. the pitch sign), keys,
landmark boxes, ordering, and every bad-input case (message names the file)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline import pose as posemod
from pipeline.datasets import READERS, DatasetError, aflw, aflw2000, biwi, landmark_box, w300lp
from fixtures_formats import (face_landmarks, pose_txt, write_3ddfa, write_aflw,
                                    write_biwi_frame, write_image)


def test_300w_lp_labels_keys_boxes_and_order(tmp_path):
    root = tmp_path
    write_3ddfa(root / "300W_LP/AFW/AFW_134_1_0.jpg", (0.3, 0.5, -0.2), face_landmarks(5, 6, 30, 35))
    write_3ddfa(root / "300W_LP/AFW_Flip/AFW_134_1_0.jpg", (0.3, -0.5, 0.2), face_landmarks(18, 6, 43, 35))
    write_3ddfa(root / "300W_LP/HELEN/HELEN_9_2_13.jpg", (0.0, 0.0, 0.0), face_landmarks(1, 2, 3, 4))
    write_image(root / "300W_LP/landmarks/AFW_134_1_0.jpg")  # not a sample folder

    records, bad = w300lp.read(root)
    assert bad == []
    keys = [r.sample.key for r in records]
    assert keys == ["300W_LP/AFW/AFW_134_1_0", "300W_LP/AFW_Flip/AFW_134_1_0",
                    "300W_LP/HELEN/HELEN_9_2_13"]
    first = records[0]
    # Pose_Para pitch +0.3 rad -> our pitch -17.19 deg (pitch negated, see pipeline.pose)
    assert first.sample.pose == pytest.approx((-17.188733, 28.647890, -11.459156), abs=1e-4)
    assert first.sample.box == pytest.approx((5, 6, 30, 35))
    assert first.sample.subject == "AFW_134_1"
    assert first.sample.landmarks.shape == (68, 2)
    assert first.rel == "AFW/AFW_134_1_0.jpg" and first.size == (48, 40)
    assert first.sample.image == str(root / "300W_LP/AFW/AFW_134_1_0.jpg")
    # the flip twin: (p, -y, -r)
    assert records[1].sample.pose == pytest.approx(posemod.flip_pose(first.sample.pose), abs=1e-4)


def test_reading_is_deterministic_with_threads(tmp_path):
    for i in range(6):
        write_3ddfa(tmp_path / f"AFLW2000/image{i:05d}.jpg", (0.01 * i, 0.1, 0.0),
                    face_landmarks(2, 3, 20 + i, 25))
    one, _ = aflw2000.read(tmp_path, workers=1)
    three, _ = aflw2000.read(tmp_path, workers=3)
    assert [r.sample for r in one] == [r.sample for r in three]
    assert [r.sample.key for r in one] == [f"AFLW2000/image{i:05d}" for i in range(6)]


def test_aflw2000_landmark_box_ignores_negative_points(tmp_path):
    pts = face_landmarks(4, 5, 30, 33, count=21)
    pts[:, 0] = (-1, -1)            # a missing point, as AFLW2000 marks it
    pts[:, 20] = (-5.0, 12.0)       # a point left of the image
    write_3ddfa(tmp_path / "AFLW2000/image00002.jpg", (-0.1, 0.2, 0.05), pts)
    (record,), bad = aflw2000.read(tmp_path)
    assert bad == []
    assert record.sample.box == pytest.approx((pts[0, 1:20].min(), pts[1, 1:20].min(),
                                               pts[0, 1:20].max(), pts[1, 1:20].max()))
    assert record.sample.box[0] > 4.0
    assert record.sample.pose[0] == pytest.approx(math.degrees(0.1), abs=1e-4)
    assert landmark_box(np.full((5, 2), -1.0)) is None


def test_biwi_pose_txt_real_layout(tmp_path):
    pose = (12.0, -30.0, 7.5)
    matrix = posemod.biwi_matrix_from_pose(pose)
    write_biwi_frame(tmp_path, "03", 4, matrix)
    write_biwi_frame(tmp_path, "01", 7, np.eye(3))
    text = (tmp_path / "BIWI/hpdb/03/frame_00004_pose.txt").read_text()
    assert text.splitlines()[3] == "" and text.splitlines()[0].endswith(" ")
    records, bad = biwi.read(tmp_path)
    assert bad == []
    assert [r.sample.key for r in records] == ["BIWI/hpdb/01/frame_00007_rgb",
                                               "BIWI/hpdb/03/frame_00004_rgb"]
    assert records[1].sample.pose == pytest.approx(pose, abs=1e-4)
    assert records[1].sample.subject == "03" and records[1].sample.box is None
    assert records[1].rel == "hpdb/03/frame_00004_rgb.png"
    assert records[0].sample.pose == pytest.approx((0, 0, 0), abs=1e-9)


def test_aflw_faces_poses_rects_and_keys(tmp_path):
    write_aflw(tmp_path, [
        {"face_id": 40, "filepath": "0/image00002.jpg", "pose": (0.1, 0.3, -0.4),
         "rect": (5, 6, 20, 22), "coords": {1: (7.0, 8.0), 21: (20.0, 25.0)}},
        {"face_id": 41, "filepath": "0/image00002.jpg", "pose": (0.0, 0.0, 0.2), "rect": (30, 4, 10, 12)},
    ])
    records, bad = aflw.read(tmp_path)
    assert bad == []
    a, b = records
    assert a.sample.key == "AFLW/flickr/0/image00002#40" and b.sample.key == "AFLW/flickr/0/image00002#41"
    # FacePose (roll, pitch, yaw) = (0.1, 0.3, -0.4) -> degrees(-pitch, yaw, -roll), the
    # authors' and HopeNet's conversion (protocol 2 labels are theirs)
    assert a.sample.pose == pytest.approx((-math.degrees(0.3), math.degrees(-0.4), -math.degrees(0.1)))
    assert a.sample.box == (5.0, 6.0, 25.0, 28.0)
    assert a.sample.landmarks.shape == (21, 2)
    assert tuple(a.sample.landmarks[0]) == (7.0, 8.0) and tuple(a.sample.landmarks[5]) == (-1.0, -1.0)
    assert a.rel == "flickr/0/image00002.jpg"


# --- bad input: each reader reports the offending file --------------------------------

def _one_bad(reader, root):
    records, bad = reader(root)
    assert records == [] and len(bad) == 1
    return bad[0].message


def test_missing_mat_and_missing_pose_para(tmp_path):
    image = write_image(tmp_path / "AFLW2000/image00001.jpg")
    assert str(image.with_suffix(".mat")) in _one_bad(aflw2000.read, tmp_path)
    write_3ddfa(image, None, face_landmarks(1, 1, 9, 9), extra={"pt3d_68": np.zeros((3, 68))})
    message = _one_bad(aflw2000.read, tmp_path)
    assert str(image.with_suffix(".mat")) in message and "Pose_Para" in message


def test_nan_angles_are_bad(tmp_path):
    image = write_3ddfa(tmp_path / "300W_LP/IBUG/IBUG_1_0.jpg", (np.nan, 0.1, 0.0), None)
    message = _one_bad(w300lp.read, tmp_path)
    assert str(image.with_suffix(".mat")) in message and "finite" in message


def test_unreadable_and_missing_images(tmp_path):
    write_3ddfa(tmp_path / "AFLW2000/image00001.jpg", (0.1, 0.1, 0.1), face_landmarks(1, 1, 9, 9))
    (tmp_path / "AFLW2000/image00001.jpg").write_bytes(b"not a jpeg at all")
    message = _one_bad(aflw2000.read, tmp_path)
    assert str(tmp_path / "AFLW2000/image00001.jpg") in message and "readable image" in message
    write_aflw(tmp_path, [{"face_id": 1, "filepath": "2/image00009.jpg", "pose": (0, 0, 0),
                           "rect": (1, 1, 5, 5)}])
    (tmp_path / "AFLW/flickr/2/image00009.jpg").unlink()
    message = _one_bad(aflw.read, tmp_path)
    assert str(tmp_path / "AFLW/flickr/2/image00009.jpg") in message and "not found" in message


@pytest.mark.parametrize("text, problem", [
    ("1 0 0\n0 1 0\n\n1 2 3\n", "malformed"),              # a rotation row missing
    ("1 0 0 \n0 1 x \n0 0 1 \n\n1 2 3 \n", "non-numeric"),
    ("2 0 0\n0 1 0\n0 0 1\n\n1 2 3\n", "rotation"),        # det != 1
    ("nan 0 0\n0 1 0\n0 0 1\n\n1 2 3\n", "rotation"),
    ("1 0.2 0\n0 1 0\n0 0 1\n\n1 2 3\n", "not a rotation matrix: max|R^T R - I| = 0.2"),  # sheared, det 1
])
def test_malformed_biwi_pose_txt(tmp_path, text, problem):
    write_biwi_frame(tmp_path, "05", 1, np.eye(3))
    pose_file = tmp_path / "BIWI/hpdb/05/frame_00001_pose.txt"
    pose_file.write_text(text)
    message = _one_bad(biwi.read, tmp_path)
    assert str(pose_file) in message and problem in message


def test_aflw_face_without_pose_and_broken_database(tmp_path):
    write_aflw(tmp_path, [{"face_id": 7, "filepath": "0/image00003.jpg", "pose": None,
                           "rect": (1, 1, 5, 5)}])
    message = _one_bad(aflw.read, tmp_path)
    assert "aflw.sqlite (face 7)" in message and "FacePose" in message
    db = tmp_path / "AFLW/aflw.sqlite"
    db.write_bytes(b"garbage" * 100)
    with pytest.raises(DatasetError, match="aflw.sqlite"):
        aflw.read(tmp_path)


def test_missing_dataset_folders_name_the_path(tmp_path):
    for name, reader in READERS.items():
        with pytest.raises(DatasetError, match=str(tmp_path)):
            reader(tmp_path)
    assert pose_txt(np.eye(3), (1, 2, 3)).count("\n") == 5
