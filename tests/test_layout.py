"""Thin stages over one library (issue 12), checked on the sources with :mod:`ast`.

``stages/<name>.py`` is the entry point of one DVC stage: a docstring, imports and
``run(params_path, overrides, item=None)``, which reads its params block(s) with
``stage_config`` and calls ONE library function. The jobs and their config classes live in
``pipeline/``; nothing there imports a stage, no stage imports another, and the tests reach a
stage only through ``pipeline.project.load_stage`` (as ``pipeline run-stage`` does).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGE_FILES = sorted(p for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py")


def imported_modules(source: str, package: tuple[str, ...]) -> set[str]:
    """Dotted names a module of ``package`` imports, relative imports resolved (``from a import
    b`` gives a and a.b), plus the constant names given to ``importlib.import_module`` or
    ``__import__``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Call) and node.args:
            func, arg = node.func, node.args[0]
            if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) not in (
                    "import_module", "__import__"):
                continue
            if isinstance(arg, ast.JoinedStr) and arg.values:   # f"stages.{name}": its constant head
                arg = arg.values[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def stage_imports(path: Path) -> set[str]:
    names = imported_modules(path.read_text(), path.parent.relative_to(ROOT).parts)
    return {n for n in names if n.split(".")[0] == "stages"}


@pytest.mark.parametrize("source", ["from . import distill", "from .distill import DistillConfig",
                                    "import stages.report", "from stages import evaluate",
                                    "importlib.import_module('stages.synth')", "__import__('stages')",
                                    "importlib.import_module(f'stages.{name}')"])
def test_the_finder_sees_every_form_of_stage_import(source):
    assert {n for n in imported_modules(source, ("stages",)) if n.split(".")[0] == "stages"}, source
    assert imported_modules("from . import config", ("pipeline",)) == {"pipeline", "pipeline.config"}


def test_every_dvc_stage_has_its_module():
    assert {p.stem for p in STAGE_FILES} >= {"synth", "prepare", "relabel", "train_teacher", "ensemble_labels",
                                             "ensemble_grid", "distill", "evaluate", "report"}


@pytest.mark.parametrize("path", sorted((ROOT / "pipeline").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_imports_a_stage(path):
    assert not stage_imports(path), f"{path.relative_to(ROOT)} imports {stage_imports(path)}"


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: p.stem)
def test_no_stage_imports_another_stage(path):
    assert not stage_imports(path), f"{path.relative_to(ROOT)} imports {stage_imports(path)}"


def test_tests_reach_stages_only_through_load_stage():
    for path in sorted((ROOT / "tests").glob("*.py")):
        assert not stage_imports(path), f"{path.relative_to(ROOT)} imports {stage_imports(path)}"


def _is_stage_config_call(node) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "stage_config"


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: p.stem)
def test_every_stage_is_thin(path):
    """docstring, imports, ``run`` = ``cfg = stage_config(...)`` lines and one library call."""
    tree = ast.parse(path.read_text(), str(path))
    body = tree.body
    assert ast.get_docstring(tree), f"{path.name}: no docstring"
    rest = [n for n in body[1:] if not isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [type(n).__name__ for n in rest] == ["FunctionDef"] and rest[0].name == "run", \
        f"{path.name}: a stage holds only `run` (the job and its config belong in pipeline/)"
    run = rest[0]
    assert [a.arg for a in run.args.args] == ["params_path", "overrides", "item"], path.name
    statements = run.body[1:] if ast.get_docstring(run) else run.body
    *reads, last = statements
    assert reads and all(isinstance(n, ast.Assign) and _is_stage_config_call(n.value) for n in reads), \
        f"{path.name}: run reads its block(s) with stage_config(...) and does nothing else"
    assert isinstance(last, ast.Return) and isinstance(last.value, ast.Call), \
        f"{path.name}: run ends by returning one library call"
    calls = [n for n in ast.walk(last.value) if isinstance(n, ast.Call)]
    assert len(calls) == 1, f"{path.name}: run calls one library function"
    imported = {alias.asname or alias.name for n in body if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("pipeline") for alias in n.names}
    assert getattr(last.value.func, "id", None) in imported, \
        f"{path.name}: the function run calls is imported from pipeline"
