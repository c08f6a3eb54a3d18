"""The prepare stage: params -> manifest + report, byte-reproducible, atomic on failure,
and the synthetic profile's wiring to ``pipeline.synth`` (stubbed here)."""
from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline import pose as posemod
from pipeline.config import ConfigError
from pipeline.datasets import DatasetError
from pipeline.manifest import file_sha256, read_manifest
from stages import get_stage
from fixtures_formats import face_landmarks, write_3ddfa, write_biwi_frame, write_box_json


def _dataset(root: Path) -> Path:
    write_3ddfa(root / "300W_LP/AFW/AFW_1_1_0.jpg", (0.3, 0.2, 0.1), face_landmarks(5, 6, 30, 35))
    write_3ddfa(root / "300W_LP/AFW_Flip/AFW_1_1_0.jpg", (0.3, -0.2, -0.1), face_landmarks(18, 6, 43, 35))
    write_3ddfa(root / "AFLW2000/image00002.jpg", (0.1, 0.2, 0.0), face_landmarks(3, 3, 25, 30, 21))
    write_3ddfa(root / "AFLW2000/image00003.jpg", (0.0, -1.9, 0.0), face_landmarks(3, 3, 25, 30, 21))
    write_biwi_frame(root, "01", 3, posemod.biwi_matrix_from_pose((5.0, 20.0, -3.0)))
    return write_box_json(root / "boxes/BIWI.json",
                          {"hpdb/01/frame_00003_rgb.png": [{"bbox": [10, 8, 40, 44]}]})


def _params(tmp_path: Path, **prepare) -> Path:
    block = {"protocol": 1, "synthetic": False, "data_root": str(tmp_path / "data"),
             "box_files": {"BIWI": str(tmp_path / "data/boxes/BIWI.json")},
             "manifest": str(tmp_path / "out/manifest.csv"),
             "report": str(tmp_path / "out/prepare-report.json"), **prepare}
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


def test_synthetic_profile_generates_then_reads(tmp_path, monkeypatch):
    """With synthetic: true the stage calls pipeline.synth.generate with the synth block and
    reads cfg.out_dir (stub generator: the real one is tested in its own module)."""
    calls = []

    @dataclass(frozen=True)
    class SynthConfig:
        out_dir: Path = Path("data/synth")
        seed: int = 0

    def generate(cfg):
        calls.append(cfg)
        _dataset(Path(cfg.out_dir))

    monkeypatch.setitem(sys.modules, "pipeline.synth",
                        types.SimpleNamespace(SynthConfig=SynthConfig, generate=generate))
    out_dir = tmp_path / "synth"
    params = _params(tmp_path, synthetic=True, data_root="does/not/exist",
                     box_files={"BIWI": str(out_dir / "boxes/BIWI.json")})
    data = yaml.safe_load(params.read_text())
    data["synth"] = {"out_dir": str(out_dir), "seed": 3}
    params.write_text(yaml.safe_dump(data))
    report = get_stage("prepare").run(params, [])
    assert calls == [SynthConfig(out_dir=out_dir, seed=3)]
    assert report["data_root"] == str(out_dir)
    assert (report["samples"], report["test"]) == (4, 2)
