"""The prepare stage: params -> manifest + report, byte-reproducible, atomic on failure,
and the embedded synthetic dataset read through the real readers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline import pose as posemod
from pipeline.config import ConfigError
from pipeline.datasets import DatasetError
from pipeline.manifest import read_manifest
from pipeline.files import file_sha256
from pipeline.project import load_stage as get_stage
from fixtures_formats import face_landmarks, write_3ddfa, write_biwi_frame, write_box_json


def _dataset(root: Path) -> Path:
    write_3ddfa(root / "300W_LP/AFW/AFW_1_1_0.jpg", (0.3, 0.2, 0.1), face_landmarks(5, 6, 30, 35))
    write_3ddfa(root / "300W_LP/AFW_Flip/AFW_1_1_0.jpg", (0.3, -0.2, -0.1), face_landmarks(18, 6, 43, 35))
    write_3ddfa(root / "AFLW2000/image00002.jpg", (0.1, 0.2, 0.0), face_landmarks(3, 3, 25, 30, 21))
    write_3ddfa(root / "AFLW2000/image00003.jpg", (0.0, -1.9, 0.0), face_landmarks(3, 3, 25, 30, 21))
    write_biwi_frame(root, "01", 3, posemod.biwi_matrix_from_pose((5.0, 20.0, -3.0)))
    return write_box_json(root / "boxes/BIWI.json",
                          {"01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44]}]})


def _params(tmp_path: Path, **prepare) -> Path:
    block = {"protocol": 1, "data_root": str(tmp_path / "data"),
             "box_files": {"BIWI": str(tmp_path / "data/boxes/BIWI.json")},
             "manifest": str(tmp_path / "out/manifest.csv"),
             "report": str(tmp_path / "out/prepare-report.json"), "metrics": str(tmp_path / "out/metrics.json"),
             **prepare}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"prepare": block}))
    return path


def test_prepare_writes_reproducible_manifest_and_report(tmp_path, capsys):
    _dataset(tmp_path / "data")
    params = _params(tmp_path, workers=2)
    stage = get_stage("prepare")
    report = stage.run(params, [])
    manifest, report_path = tmp_path / "out/manifest.csv", tmp_path / "out/prepare-report.json"
    first = file_sha256(manifest)
    stage.run(params, ["prepare.workers=1"])       # threads do not change a byte
    assert file_sha256(manifest) == first
    assert json.loads(report_path.read_text())["manifest_sha256"] == first
    assert report["datasets"]["AFLW2000"]["out_of_range"] == 1
    assert "AFLW2000: read 2, bad 0, out of range 1" in capsys.readouterr().out

    samples = {s.key: s for s in read_manifest(manifest)}
    assert sorted(samples) == ["300W_LP/AFW/AFW_1_1_0", "300W_LP/AFW_Flip/AFW_1_1_0",
                               "AFLW2000/image00002", "BIWI/hpdb/01/frame_00003_rgb"]
    assert samples["300W_LP/AFW/AFW_1_1_0"].pose[0] == pytest.approx(-17.188733, abs=1e-5)
    assert samples["BIWI/hpdb/01/frame_00003_rgb"].box == (10.0, 8.0, 40.0, 44.0)
    assert samples["BIWI/hpdb/01/frame_00003_rgb"].split == "test"
    assert samples["BIWI/hpdb/01/frame_00003_rgb"].subject == "01"


def test_report_is_identical_across_runs_with_same_config(tmp_path):
    _dataset(tmp_path / "data")
    params = _params(tmp_path)
    stage = get_stage("prepare")
    stage.run(params, [])
    first = (tmp_path / "out/prepare-report.json").read_bytes()
    stage.run(params, [])
    assert (tmp_path / "out/prepare-report.json").read_bytes() == first


def test_bad_input_leaves_no_output_and_names_the_file(tmp_path):
    _dataset(tmp_path / "data")
    broken = tmp_path / "data/BIWI/hpdb/01/frame_00003_pose.txt"
    broken.write_text("1 0 0\n")
    params = _params(tmp_path)
    with pytest.raises(DatasetError, match=str(broken)):
        get_stage("prepare").run(params, [])
    assert not (tmp_path / "out").exists()
    report = get_stage("prepare").run(params, ["prepare.on_bad=skip"])
    assert report["datasets"]["BIWI"]["bad"] == 1
    assert str(broken) in report["datasets"]["BIWI"]["bad_files"][0]


def test_config_errors_name_the_key(tmp_path):
    params = _params(tmp_path)
    with pytest.raises(ConfigError, match="prepare.protocol"):
        get_stage("prepare").run(params, ["prepare.protocol=4"])
    with pytest.raises(ConfigError, match="prepare.on_bad"):
        get_stage("prepare").run(params, ["prepare.on_bad=ignore"])
    with pytest.raises(ConfigError, match="prepare.boxes"):
        get_stage("prepare").run(params, ["prepare.boxes=x"])


def test_reads_the_embedded_synthetic_dataset(tmp_path):
    """The synth generator's output goes through the real readers: protocols 1 and 3."""
    from pipeline.synth import SynthConfig, generate

    out_dir = tmp_path / "synth"
    generate(SynthConfig(out_dir=out_dir, train_count=12, aflw2000_count=6, biwi_subjects=8,
                         biwi_frames=2, out_of_range=0.0, image_size=64, workers=1,
                         contact_per_set=2))
    params = _params(tmp_path, data_root=str(out_dir),
                     box_files={"BIWI": str(out_dir / "boxes/BIWI.json")})
    report = get_stage("prepare").run(params, [])
    sets = report["datasets"]
    assert sets["300W_LP"]["train"] == sets["300W_LP"]["read"] >= 12  # plus mirrored copies
    assert sets["AFLW2000"]["test"] == 6 and sets["BIWI"]["test"] == 16
    p3 = get_stage("prepare").run(params, ["prepare.protocol=3"])
    biwi = read_manifest(tmp_path / "out/manifest.csv")
    test_subjects = {s.subject for s in biwi if s.split == "test"}
    assert p3["test"] == 4 and test_subjects == {"06", "07"}


def _run_stage(*args):
    """``pipeline run-stage ...`` as the command line runs it (exit code, printed output)."""
    import importlib
    from typer.testing import CliRunner
    from pipeline import cli

    return CliRunner().invoke(cli.app, ["run-stage", *args])


def test_box_file_in_another_layout_fails_through_run_stage_and_writes_nothing(tmp_path):
    write_box_json(_dataset(tmp_path / "data"), {"hpdb/01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44]}]})
    result = _run_stage("prepare", "--params", str(_params(tmp_path)))
    assert result.exit_code == 1
    assert "BIWI.json: box file for BIWI lists 0 of its 1 images" in result.output
    assert not (tmp_path / "out").exists()


def test_truncated_or_empty_images_are_refused_or_skipped_and_listed(tmp_path):
    """Both formats cut in half, as a copy interrupted mid-file leaves them (the header is
    intact, so only decoding the whole image finds them), and a zero-byte file."""
    _dataset(tmp_path / "data")
    cut = [tmp_path / "data/AFLW2000/image00002.jpg", tmp_path / "data/BIWI/hpdb/01/frame_00003_rgb.png"]
    for path in cut:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    empty = tmp_path / "data/300W_LP/AFW_Flip/AFW_1_1_0.jpg"
    empty.write_bytes(b"")
    params = _params(tmp_path, workers=2)
    result = _run_stage("prepare", "--params", str(params))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(empty) in result.output and "empty file (0 bytes)" in result.output
    assert not (tmp_path / "out").exists()
    report = get_stage("prepare").run(params, ["prepare.on_bad=skip"])
    for path, name, why in zip(cut + [empty], ("AFLW2000", "BIWI", "300W_LP"), (
            "truncated JPEG (no end-of-image marker after its last scan)",
            "not a readable image (corrupt or truncated)", "empty file (0 bytes)")):
        assert report["datasets"][name]["bad"] == 1
        assert report["datasets"][name]["bad_files"] == [f"{path}: {why}"]
    keys = {s.key for s in read_manifest(tmp_path / "out/manifest.csv")}
    assert keys == {"300W_LP/AFW/AFW_1_1_0"}
