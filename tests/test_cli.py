import subprocess
import sys

from typer.testing import CliRunner

from pipeline import cli


def run_cli(*args):
    for mod in cli._COMMAND_MODULES:
        __import__(mod)
    return CliRunner().invoke(cli.app, list(args))


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("run-stage", "bench"):
        assert command in result.output


def test_unknown_stage_lists_known_ones():
    from stages import STAGES

    result = run_cli("run-stage", "no-such-stage")
    assert result.exit_code == 2
    assert "unknown stage 'no-such-stage'" in result.output
    for name in STAGES:
        assert name in result.output


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run-stage" in out.stdout


def test_torchvision_compiled_ops_load():
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
