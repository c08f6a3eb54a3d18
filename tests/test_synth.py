"""The synthetic dataset: same bytes for a seed, real formats, labels that match the images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from pipeline import pose as P
from pipeline.boxes import read_box_json
from pipeline.config import ConfigError, parse_block
from pipeline.datasets import IMAGE_FOLDERS
from pipeline.synth import SynthConfig, generate
from pipeline.synth import build as gen
from pipeline.synth.contact import read_biwi_pose
from pipeline.synth.head import FLIP_68, landmarks_68, random_head
from pipeline.synth.poses import sample_pose, trajectory
from pipeline.synth.render import Camera, Light, project, render, to_camera, visible
from pipeline.synth.writers import mat_bytes

TINY = dict(train_count=6, aflw2000_count=3, biwi_subjects=2, biwi_frames=2, image_size=48,
            biwi_size=(64, 48), contact_per_set=3)
CAM = Camera(64, 64, 64 * 0.6 * 700 / 230, 31.5, 31.5)
LIGHT = Light(np.array([0.0, 0.0, 1.0]), 0.4, 0.6, np.ones(3))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _landmarks_px(pose, head=None):
    head = head or random_head(np.random.default_rng(5))
    return project(to_camera(landmarks_68(head), P.rotation_from_pose(pose), np.array([0, 0, 700.0])), CAM)


def test_same_bytes_for_a_seed_with_any_number_of_workers(tmp_path):
    a = generate(SynthConfig(out_dir=tmp_path / "a", workers=1, **TINY))
    b = generate(SynthConfig(out_dir=tmp_path / "b", workers=2, **TINY))
    assert a["counts"] == b["counts"]
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys() and len(files_a) > 20
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    other = generate(SynthConfig(out_dir=tmp_path / "c", seed=1, workers=1, **TINY))
    assert _files(tmp_path / "c")["AFLW2000/image00001.jpg"] != files_a["AFLW2000/image00001.jpg"]
    assert other["counts"]["AFLW2000"]["images"] == 3


def test_mat_bytes_are_deterministic_and_loadable():
    one, two = mat_bytes({"Pose_Para": np.ones((1, 7))}), mat_bytes({"Pose_Para": np.ones((1, 7))})
    assert one == two and one.startswith(b"MATLAB 5.0 MAT-file")


def test_300wlp_and_aflw2000_mat_labels_round_trip(tmp_path):
    cfg = SynthConfig(out_dir=tmp_path, **TINY)
    for dataset, index in (("300W_LP", 2), ("AFLW2000", 0)):
        (_, rel, box, kind, pose), *_ = gen._image_sample(cfg, tmp_path, dataset, index)
        mat = scipy.io.loadmat(tmp_path / dataset / Path(rel).with_suffix(".mat"))
        assert mat["Pose_Para"].shape == (1, 7)
        np.testing.assert_allclose(P.pose_from_pose_para(mat["Pose_Para"]), pose, atol=1e-9)
        assert cv2.imread(str(tmp_path / dataset / rel)).shape == (48, 48, 3)
    assert mat["pt3d_68"].shape == (3, 68) and mat["pt2d"].shape == (2, 21)
    pts = mat["pt2d"].T
    hidden = np.all(pts == -1, axis=1)
    assert np.all(hidden | np.all((pts >= 0) & (pts <= 47), axis=1))
    lp = scipy.io.loadmat(tmp_path / "300W_LP" / "IBUG" / "IBUG_000003.mat")
    assert lp["pt2d"].shape == (2, 68)


def test_flip_copy_has_mirrored_image_and_flipped_label(tmp_path):
    cfg = SynthConfig(out_dir=tmp_path, flip_fraction=1.0, **{k: v for k, v in TINY.items()})
    records = gen._image_sample(cfg, tmp_path, "300W_LP", 0)
    assert [r[1] for r in records] == ["AFW/AFW_000001.jpg", "AFW_Flip/AFW_000001.jpg"]
    orig = scipy.io.loadmat(tmp_path / "300W_LP/AFW/AFW_000001.mat")
    flip = scipy.io.loadmat(tmp_path / "300W_LP/AFW_Flip/AFW_000001.mat")
    np.testing.assert_allclose(P.pose_from_pose_para(flip["Pose_Para"]),
                               P.flip_pose(P.pose_from_pose_para(orig["Pose_Para"])), atol=1e-9)
    np.testing.assert_allclose(flip["pt2d"][0], 47 - orig["pt2d"][0][FLIP_68])


def test_biwi_pose_txt_parses_back(tmp_path):
    cfg = SynthConfig(out_dir=tmp_path, **TINY)
    (_, rel, box, kind, pose), = gen._biwi_sample(cfg, tmp_path, 1, 1)
    assert rel == "01/frame_00002_rgb.png" and kind == "train"   # the authors' key: below hpdb/
    text = (tmp_path / "BIWI/hpdb/01/frame_00002_pose.txt").read_text().split("\n")
    assert len(text[:3][0].split()) == 3 and text[3] == ""
    parsed, translation = read_biwi_pose(tmp_path / "BIWI/hpdb/01/frame_00002_pose.txt")
    np.testing.assert_allclose(parsed, pose, atol=1e-4)
    assert 700 < translation[2] < 1200
    assert cv2.imread(str(tmp_path / "BIWI/hpdb" / rel)).shape == (48, 64, 3)


def test_pose_distributions():
    rng = np.random.default_rng(0)
    poses = np.array([sample_pose(rng, "300W_LP", 0.02) for _ in range(3000)])
    out = ~P.in_range(poses)
    assert 0.01 < out.mean() < 0.03
    assert np.abs(poses[:, 1]).max() > 85 and np.percentile(np.abs(poses[:, 0]), 90) < 30
    assert P.in_range(np.array([sample_pose(rng, "AFLW2000", 0.0) for _ in range(300)])).all()
    track = trajectory(rng, 60)
    assert P.in_range(track).all() and np.abs(np.diff(track, axis=0)).max() < 12
    assert np.ptp(track[:, 1]) > 20


def test_image_directions_match_the_pose_convention():
    nose, eye_r, eye_l = 30, 36, 45
    front = _landmarks_px((0, 0, 0))
    assert _landmarks_px((0, 30, 0))[nose, 0] < front[nose, 0] - 5     # yaw > 0: turns to image left
    assert _landmarks_px((30, 0, 0))[nose, 1] > front[nose, 1] + 5     # pitch > 0: looks down
    eyes = _landmarks_px((0, 0, 30))[[eye_r, eye_l]]
    d = eyes[1] - eyes[0]
    assert d[0] > 0 and np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(30, abs=6)  # roll > 0: clockwise
    assert front[eye_r, 0] < front[eye_l, 0]                            # subject's right eye on the image left


def test_rendered_face_is_where_the_landmarks_are():
    head = random_head(np.random.default_rng(5))
    t = np.array([0, 0, 700.0])
    for pose in ((0, 0, 0), (10, 40, 0), (-20, -30, 15)):
        rot = P.rotation_from_pose(pose)
        result = render(head, rot, t, CAM, LIGHT)
        lm = np.round(project(to_camera(landmarks_68(head), rot, t), CAM)).astype(int)
        assert result.face_mask[lm[[30, 8, 51], 1], lm[[30, 8, 51], 0]].all()   # nose tip, chin, lip
        assert result.coverage[0, 0] == 0
    rot = P.rotation_from_pose((10, 70, 0))
    lm_cam = to_camera(landmarks_68(head), rot, t)
    seen = visible(lm_cam, render(head, rot, t, CAM, LIGHT), CAM)
    assert seen[[36, 45]].tolist() == [False, True]   # yaw 70 to the left: the right eye is hidden


def test_mirrored_pose_gives_mirrored_landmarks():
    pose = np.array([12.0, 35.0, -8.0])
    lm = _landmarks_px(pose)
    mirrored = np.stack([63 - lm[:, 0], lm[:, 1]], axis=1)[FLIP_68]
    np.testing.assert_allclose(_landmarks_px(P.flip_pose(pose)), mirrored, atol=1e-6)


def test_box_files_contact_sheet_and_atomic_output(tmp_path):
    out = tmp_path / "synth"
    (tmp_path / "synth.tmp").mkdir()
    (tmp_path / "synth.tmp" / "half.jpg").write_bytes(b"x")   # an interrupted run's leftovers
    generate(SynthConfig(out_dir=out, workers=1, **{**TINY, "biwi_subjects": 6, "biwi_frames": 1}))
    assert not (tmp_path / "synth.tmp").exists() and not (out / "half.jpg").exists()
    for dataset, kinds in (("300W_LP", {"train"}), ("AFLW2000", {"test"}), ("BIWI", {"train", "test"})):
        boxes = read_box_json(out / "boxes" / f"{dataset}.json")
        assert {e.type for v in boxes.values() for e in v} == kinds
        for rel, (entry,) in boxes.items():
            img = cv2.imread(str(out / dataset / IMAGE_FOLDERS.get(dataset, "") / rel))   # authors' layout
            x1, y1, x2, y2 = entry.bbox
            assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    biwi = read_box_json(out / "boxes" / "BIWI.json")
    assert biwi["06/frame_00001_rgb.png"][0].type == "test"
    assert "AFW/AFW_000001.jpg" in read_box_json(out / "boxes" / "300W_LP.json")
    assert "image00001.jpg" in read_box_json(out / "boxes" / "AFLW2000.json")
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape[0] >= 3 * 128 and sheet.std() > 10


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="synth"):
        parse_block(SynthConfig, {"jpeg_quality": [90, 50]}, "synth")
    with pytest.raises(ConfigError, match="synth.train_count"):
        parse_block(SynthConfig, {"train_count": "many"}, "synth")


def test_label_noise_moves_only_the_training_labels_never_the_images(tmp_path):
    exact, noisy = (SynthConfig(out_dir=tmp_path / name, flip_fraction=1.0, label_noise=sigma, **TINY)
                    for name, sigma in (("exact", 0.0), ("noisy", 4.0)))
    gaps = []
    for index in range(40):
        a = gen._image_sample(exact, exact.out_dir, "300W_LP", index)
        b = gen._image_sample(noisy, noisy.out_dir, "300W_LP", index)
        for (_, rel, box, _, pose), (_, rel2, box2, _, noisy_pose) in zip(a, b):
            assert rel == rel2 and box == box2
            assert (exact.out_dir / "300W_LP" / rel).read_bytes() == (noisy.out_dir / "300W_LP" / rel).read_bytes()
            mat = scipy.io.loadmat(noisy.out_dir / "300W_LP" / Path(rel).with_suffix(".mat"))
            np.testing.assert_allclose(P.pose_from_pose_para(mat["Pose_Para"]), noisy_pose, atol=1e-9)
        gaps.append(b[0][4] - a[0][4])
        np.testing.assert_allclose(b[1][4], P.flip_pose(b[0][4]), atol=1e-9)    # the _Flip copy: the same fit
    gaps = np.array(gaps)
    assert np.abs(gaps.mean(axis=0)).max() < 2.0 and 2.5 < gaps.std(axis=0).min() and gaps.std(axis=0).max() < 6.0
    for index in range(5):     # the test sets stay exact
        assert (gen._image_sample(exact, exact.out_dir, "AFLW2000", index)[0][4]
                == gen._image_sample(noisy, noisy.out_dir, "AFLW2000", index)[0][4]).all()
