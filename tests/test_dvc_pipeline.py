"""The DVC pipeline as a user runs it: `dvc repro` in a fresh repository, on a tiny profile.

The repository's own dvc.yaml and params.yaml are copied with a few params shrunk, so every
stage, dep, out and params key of dvc.yaml is exercised; a second `dvc repro` must do nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_block

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "synth": {"train_count": 24, "aflw2000_count": 8, "biwi_subjects": 8, "biwi_frames": 2,
              "image_size": 64, "workers": 1, "contact_per_set": 2},
    "train_teacher": {"epochs": 1, "input_size": 32, "batch_size": 8, "grid_samples": 2,
                      "workers": 0},
    "ensemble_labels": {"s": 2, "p": 2, "chunk_size": 16, "num_workers": 0},
    "base_labels": {"chunk_size": 16, "num_workers": 0},
    "ensemble_grid": {"strides": [2], "paddings": [0, 2], "num_workers": 0},
    "views": {"count": 3},
    "distill": {"epochs": 2, "input_size": 32, "batch_size": 8, "workers": 0, "seeds": [0, 1],
                "methods": ["kd", "ce", "odkd", "kdloss"]},
    "evaluate": {"num_workers": 0},
}


TINY_FLOOR = 0.05   # params.yaml's distill.method.odkd.floor


def stage_names(dvc_yaml: dict) -> set[str]:
    return set(dvc_yaml["stages"])


def test_every_dvc_stage_runs_pipeline_run_stage_of_a_known_stage():
    from pipeline.project import stage_files

    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc_yaml["stages"].items():
        cmd = stage.get("do", stage)["cmd"]
        assert cmd.startswith(f"pipeline run-stage {name}"), (name, cmd)
    assert set(dvc_yaml["stages"]) == set(stage_files(ROOT))  # one stage module per DVC stage


def stage_configs():
    """(block, config class) of every stage, read off its `stage_config("block", Cls, ...)` calls."""
    import re

    from pipeline.project import load_stage, stage_files

    found = {}
    for name, path in stage_files(ROOT).items():
        module = load_stage(name, ROOT)
        source = path.read_text()
        for block, cls in re.findall(r'stage_config\("(\w+)", (\w+)', source):
            found[block] = getattr(module, cls)
    return found


@pytest.mark.parametrize("profile", [None] + sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
def test_every_params_block_parses_into_its_stage_config(profile, tmp_path):
    """The default params and every profile applied to them are valid for every stage
    (typed configs reject unknown keys; path keys come from the `paths` block)."""
    from pipeline.config import stage_config
    from pipeline.profiles import apply_profile

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    if profile:
        changed = apply_profile(ROOT / "profiles" / f"{profile}.yaml", path)
        assert "report.profile" in changed
        if profile == "paper":
            assert "paths.data_root" in changed and "train_teacher.backbone" in changed
        assert path.read_text().count("#") == (ROOT / "params.yaml").read_text().count("#")  # comments kept
    params = load_params(path)
    configs = stage_configs()
    assert len(configs) >= 6
    for block, cls in configs.items():
        assert block in params, f"{profile}: no '{block}' block"
        try:
            cfg = stage_config(block, cls, path)
        except ConfigError as exc:
            pytest.fail(f"{profile}: {exc}")
        if hasattr(cfg, "manifest"):
            assert str(cfg.manifest) == params["paths"]["manifest"]
    # a fair schedule (issue 23): students train as long as the teacher, with its pose-changing
    # augmentations through the views they replay
    teacher, student = params["train_teacher"], params["distill"]
    assert student["epochs"] == teacher["epochs"], profile
    for key in ("flip", "rotate", "box_shift", "box_scale"):
        assert params["views"][key] == teacher["augment"].get(key, 0.0 if key.startswith("box") else None), (profile, key)
    assert params["views"]["count"] > 1


def test_a_profile_key_the_params_lack_is_an_error(tmp_path):
    from pipeline.profiles import apply_profile

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "typo.yaml").write_text("train_teacher: {epoch: 3}\n")
    before = (tmp_path / "params.yaml").read_bytes()
    with pytest.raises(ConfigError, match="train_teacher.epoch: not a key of the params file"):
        apply_profile(tmp_path / "typo.yaml", tmp_path / "params.yaml")
    assert (tmp_path / "params.yaml").read_bytes() == before


def test_each_shared_path_is_written_once():
    """No path of the `paths` block is written again in params.yaml, dvc.yaml or as a code default
    (a `Path("...")` in the library); data_root is left out: in the default profile it is also
    where `synth` writes."""
    import ast
    import re
    params = load_params(ROOT / "params.yaml")
    defaults = [node.args[0].value for path in (ROOT / "pipeline").rglob("*.py")
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Path"
                and node.args and isinstance(node.args[0], ast.Constant)]
    texts = {name: (ROOT / name).read_text() for name in ("params.yaml", "dvc.yaml")}
    flat = {f"teachers.{k}" if name == "teachers" else name: v for name, value in params["paths"].items()
            for k, v in (value.items() if isinstance(value, dict) else [(name, value)])}
    assert {"teachers.ensemble", "teachers.base"} <= set(flat)
    for name, value in flat.items():
        if name == "data_root":
            continue
        whole = re.compile(re.escape(value) + r"(?![\w-])")  # not checkpoints/students-state
        assert len(whole.findall(texts["params.yaml"])) == 1 and not whole.findall(texts["dvc.yaml"]), name
        assert value not in defaults, name


DVC_ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}  # no network calls from the test


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _exp_runs(node):
    """Every revision of `dvc exp show --json` (workspace, commits, experiments) with its data."""
    if isinstance(node, dict):
        if isinstance(node.get("data"), dict) and "metrics" in node["data"]:
            yield node
        for value in node.values():
            yield from _exp_runs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _exp_runs(value)


def _flat(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield prefix + key


# A whole DVC pipeline (every stage, 8 student runs, then each stage again by hand): about 20
# processes that each import torch. 570 s on a 2-core CPU shared for its first minutes with a
# training job, against the suite's 600 s per test: its own limit leaves it room on a slow machine.
@pytest.mark.timeout(1200)
def test_dvc_repro_end_to_end_then_nothing_to_do(tmp_path):
    if shutil.which("dvc") is None:
        pytest.fail("dvc is not installed (it is a dependency in pyproject.toml)")
    for item in ("pipeline", "stages"):
        shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    params = load_params(ROOT / "params.yaml")
    for block, values in TINY.items():
        params[block].update(values)
    assert params["distill"]["method"]["odkd"]["floor"] == TINY_FLOOR
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(tmp_path, "init", "-q")
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=DVC_ENV)
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "init")

    first = subprocess.run(["dvc", "repro"], cwd=tmp_path, capture_output=True, text=True, env=DVC_ENV)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name in stage_names(dvc_yaml):
        assert f"Running stage '{name}" in first.stdout, f"stage {name} did not run"
    assert "train-teacher: done in" in first.stdout and "distill@efficientnet_lite0-odkd-seed1: done in" in first.stdout
    assert (tmp_path / "data/manifest.csv").exists()
    assert (tmp_path / "cache/teacher-labels.h5").exists() and (tmp_path / "cache/base-labels.h5").exists()

    second = subprocess.run(["dvc", "repro"], cwd=tmp_path, capture_output=True, text=True, env=DVC_ENV)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout, second.stdout

    # `dvc metrics show`: every stage's headline and wall time, a table that fits a terminal
    shown = json.loads(subprocess.run(["dvc", "metrics", "show", "--json"], cwd=tmp_path, capture_output=True,
                                      text=True, env=DVC_ENV, check=True).stdout)
    files = next(iter(shown.values()))["data"]            # the workspace (keyed "" or "workspace")
    runs = len(TINY["distill"]["seeds"]) * len(TINY["distill"]["methods"])
    table_rows = {name for name in files if name.startswith("metrics/evaluate/")}
    stage_files = set(files) - table_rows
    assert len(stage_files) == len(stage_names(dvc_yaml)) - 1 + runs, sorted(files)   # one per stage, per student run
    for name in stage_files:
        assert "wall_s" in files[name]["data"], name
    methods = [m.upper() for m in TINY["distill"]["methods"]]
    rows = ["Base", "Ensemble"] + [f"{m}-efficientnet_lite0" for m in methods]
    taught = [f"{m}-efficientnet_lite0" for m in methods if m != "CE"]      # CE, the control, claims nothing
    claims = (["Ensemble.vs.Base"] + [f"{r}.vs.{b}" for r in taught for b in ("Base", "Ensemble", "CE")]
              + [f"{m}-efficientnet_lite0.vs.KD" for m in ("ODKD", "KDLOSS")])   # two teachers against one
    assert table_rows == {f"metrics/evaluate/{name}.json" for name in rows + claims}, sorted(table_rows)
    table = subprocess.run(["dvc", "metrics", "show"], cwd=tmp_path, capture_output=True, text=True,
                           env=DVC_ENV, check=True).stdout
    columns = {key for content in files.values() for key in _flat(content["data"])}
    assert columns == {"300W_LP", "AFLW2000", "BIWI", "val", "img/s", "s", "p", "wall_s"}, sorted(columns)
    width = max(map(len, table.splitlines()))
    assert width <= 160, table                            # it was 3,172 characters wide (issue 24)
    assert "within noise" in table or "holds" in table or "fails" in table

    # a finished stage run by hand does what DVC would: nothing, and `dvc status` stays clean
    for stage in (["ensemble-labels"], ["base-labels"], ["distill", "efficientnet_lite0-kdloss-seed0"]):
        by_hand = subprocess.run(["pipeline", "run-stage", *stage], cwd=tmp_path, capture_output=True, text=True,
                                 env=DVC_ENV)
        assert by_hand.returncode == 0, by_hand.stderr[-2000:]
        assert "complete and current" in by_hand.stdout or "nothing to train" in by_hand.stdout, by_hand.stdout
        status = subprocess.run(["dvc", "status", "--json"], cwd=tmp_path, capture_output=True, text=True,
                                env=DVC_ENV, check=True)
        assert json.loads(status.stdout or "{}") == {}, (stage, status.stdout)

    # a key that changes no result: DVC reruns the finished training, which keeps its weights
    # and rewrites every declared output (DVC deleted them), so nothing downstream reruns
    params["train_teacher"]["workers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = subprocess.run(["dvc", "repro"], cwd=tmp_path, capture_output=True, text=True, env=DVC_ENV)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "Running stage 'train-teacher'" in third.stdout and "nothing to train" in third.stdout
    assert "Running stage 'ensemble-labels'" not in third.stdout, third.stdout
    # one method's params rerun that method's students only (and what reads them)
    params["distill"]["method"]["odkd"]["floor"] = 0.2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = json.loads(subprocess.run(["dvc", "status", "--json"], cwd=tmp_path, capture_output=True, text=True,
                                      env=DVC_ENV, check=True).stdout)
    assert set(stale) == {"distill@efficientnet_lite0-odkd-0", "distill@efficientnet_lite0-odkd-1", "evaluate"}, stale
    params["distill"]["method"]["odkd"]["floor"] = TINY_FLOOR
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    forced = subprocess.run(["dvc", "repro", "--force", "--single-item", "distill@efficientnet_lite0-kd-1"], cwd=tmp_path,
                            capture_output=True, text=True, env=DVC_ENV)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert "nothing to train" in forced.stdout

    # plots: the teacher's curves grouped (top-level plots), one declared curve per student run
    plots = json.loads(subprocess.run(["dvc", "plots", "show", "--json"], cwd=tmp_path, capture_output=True,
                                      text=True, env=DVC_ENV, check=True).stdout)["data"]
    teacher = [k for k in plots if k.startswith("Teacher")]
    students = [k for k in plots if k.startswith("dvclive/distill/")]
    assert len(teacher) == 3 and len(students) == runs and len(plots) == 3 + runs, sorted(plots)
    for name in teacher + students:
        content = plots[name][0]["content"]
        assert content["data"]["values"] and content["encoding"]["x"]["title"] == "epoch", name

    # experiments: every revision's metrics are readable (DVC caches them), and differ where they should
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "baseline")
    exp = subprocess.run(["dvc", "exp", "run", "-S", "distill.lr=0.01"], cwd=tmp_path, capture_output=True,
                         text=True, env=DVC_ENV)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    assert "Running stage 'train-teacher'" not in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=tmp_path, capture_output=True,
                                      text=True, env=DVC_ENV, check=True).stdout)
    runs = list(_exp_runs(shown))
    assert len(runs) >= 3, shown        # the workspace, the baseline commit and the experiment
    for run in runs:
        evaluated = run["data"]["metrics"].get("metrics/evaluate/KD-efficientnet_lite0.json", {"error": "missing"})
        assert "error" not in evaluated, (run["rev"], evaluated)
    diff = subprocess.run(["dvc", "metrics", "diff", "HEAD", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, env=DVC_ENV)
    assert diff.returncode == 0, diff.stderr[-2000:]
    changed = json.loads(diff.stdout)
    assert {"AFLW2000", "BIWI"} & set(changed.get("metrics/evaluate/KD-efficientnet_lite0.json", {})), sorted(changed)


def test_dvc_yaml_lists_every_module_each_stage_runs():
    """Code deps come from the import graph (`pipeline dvc-deps`); none may be missing."""
    from pipeline.dvc_deps import code_deps, stage_entry, sync_dvc_yaml

    assert sync_dvc_yaml(ROOT / "dvc.yaml") == {}, "run `pipeline dvc-deps` to update dvc.yaml"
    teacher = code_deps(stage_entry("train-teacher"))
    # the modules the hand-written lists used to miss
    assert {"pipeline/__init__.py", "pipeline/config.py", "stages/train_teacher.py"} <= set(teacher)
    assert "pipeline/report.py" not in teacher


def test_committed_dvc_lock_is_in_step_with_code_and_params():
    """dvc.lock is committed (DVC experiments need it); it must record the code and params of
    this commit: refresh it with a complete `dvc repro` of a clean clone after every change."""
    done = subprocess.run(["dvc", "status", "--json"], cwd=ROOT, capture_output=True, text=True, env=DVC_ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    import json
    stale = {}
    for stage, changes in json.loads(done.stdout or "{}").items():
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):
                continue
            deps = {k: v for k, v in change.get("changed deps", {}).items()
                    if k.split("/")[0] in ("pipeline", "stages") or k.startswith("params")}
            if deps:
                stale[stage] = deps
    assert not stale, f"dvc.lock is older than the code or params: {stale}"


def test_dvc_plots_page_works_offline(tmp_path):
    """`dvc plots show` writes a page with Vega inlined (the project's .dvc/config), no CDN."""
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    git(tmp_path, "init", "-q")
    (tmp_path / "curve.tsv").write_text("step\tmae\n0\t9.5\n1\t7.25\n")
    (tmp_path / "dvc.yaml").write_text("plots:\n- curve.tsv:\n    x: step\n    y: mae\n")
    done = subprocess.run(["dvc", "plots", "show", "-o", "page"], cwd=tmp_path, capture_output=True, text=True,
                          env=DVC_ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<scriptsrc=" not in page.replace(" ", "")     # nothing loaded from the network
    assert 'var e="5.20.2"' in page and "vegaEmbed('#" in page and "7.25" in page
