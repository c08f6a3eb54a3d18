import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from pipeline import cli


def run_cli(*args):
    return CliRunner().invoke(cli.app, list(args))


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("run-stage", "bench"):
        assert command in result.output


def test_unknown_stage_lists_known_ones():
    from pipeline.project import stage_files

    result = run_cli("run-stage", "no-such-stage")
    assert result.exit_code == 2
    assert "'no-such-stage' is not one of" in result.output
    for name in stage_files():
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


def test_help_imports_no_torch_and_lists_every_command():
    code = ("import sys\nfrom pipeline.cli import app\nfrom typer.testing import CliRunner\n"
            "out = CliRunner().invoke(app, ['--help']).output + CliRunner().invoke(app, ['bench', '--help']).output\n"
            "print('torch' in sys.modules, out)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False")
    for command in ("run-stage", "inspect-cache", "synth", "dvc-deps", "bench", "train", "labeling",
                    "distill", "kd-rotation", "all"):
        assert command in done.stdout, command


def test_library_never_imports_typer_and_no_module_imports_a_stage():
    """spaCy's layout: commands live in pipeline/cli; the library and the stages know nothing of them."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for path in [*(root / "pipeline").rglob("*.py"), *(root / "stages").glob("*.py")]:
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        if "cli" not in path.relative_to(root).parts:
            assert not {n for n in names if n.split(".")[0] in ("typer", "click")}, path
        assert not {n for n in names if n.split(".")[0] == "stages"}, path


def test_progress_bars_redraw_rarely_when_written_to_a_pipe(monkeypatch):
    import io
    import sys

    import tqdm

    from pipeline.cli import _quiet_progress_when_piped

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(tqdm.tqdm, "__init__", tqdm.tqdm.__init__)   # restored after the test
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    _quiet_progress_when_piped(30)
    assert tqdm.tqdm(total=3, file=io.StringIO()).mininterval == 0.1   # a terminal: tqdm's default
    monkeypatch.setenv("TQDM_MININTERVAL", "2")                          # the user's choice: left alone
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    _quiet_progress_when_piped(30)
    assert tqdm.tqdm(total=3, file=io.StringIO()).mininterval == 0.1
    monkeypatch.delenv("TQDM_MININTERVAL")
    _quiet_progress_when_piped(30)                                       # a pipe or a file
    assert tqdm.tqdm(total=3, file=io.StringIO()).mininterval == 30
    assert tqdm.tqdm(total=3, file=io.StringIO(), mininterval=1.0).mininterval == 1.0


def test_bad_params_profile_and_readme_files_are_named_in_one_line(tmp_path, monkeypatch):
    """Files a command reads or writes besides images and models: each fault ends in the error
    presenter (exit 2 for a settings file, 1 for an output), one line naming the file."""
    (tmp_path / "broken.yaml").write_text("train_teacher: {epochs: [1, 2}\n")
    (tmp_path / "list.yaml").write_text("- just a list\n")
    (tmp_path / "blocks.yaml").write_text("paths: {}\n")
    (tmp_path / "a-file").write_text("in the way of a folder")
    (tmp_path / "report.md").write_text("# results\n")
    cases = [
        (2, "broken.yaml: not valid YAML (line 1, column 30: expected ',' or ']', but got '}')", ["check-inputs", "--params", "broken.yaml"]),
        (2, "list.yaml: top level must be a mapping", ["check-inputs", "--params", "list.yaml"]),
        (2, "blocks.yaml: not a params file of this project (missing or malformed key 'data_root')",
         ["check-inputs", "--params", "blocks.yaml"]),
        (2, "broken.yaml: not valid YAML", ["profile", "list.yaml", "--params", "broken.yaml"]),
        (2, "broken.yaml: not valid YAML", ["profile", "broken.yaml", "--params", "blocks.yaml"]),
        (2, "list.yaml: a profile is a mapping", ["profile", "list.yaml", "--params", "blocks.yaml"]),
        (2, "gone.md: no such README", ["readme-results", "--command", "c", "--report", "report.md",
                                        "--readme", "gone.md"]),
        (1, "a-file/sub.tmp: cannot create this folder (a file is in the way)",
         ["synth", "--params", str(Path(__file__).resolve().parents[1] / "params.yaml"), "--out", "a-file/sub"]),
    ]
    monkeypatch.chdir(tmp_path)
    for code, message, args in cases:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        result = run_cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, (args, result.output)
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before   # nothing written
