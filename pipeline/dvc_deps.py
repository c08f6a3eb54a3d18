"""The code dependencies of every DVC stage, read from the import graph: complete by construction.

A stage's output depends on every module its entry point (``stages/<name>.py``) imports,
directly or not, including the package ``__init__`` files on the way (``pipeline/__init__.py``
holds the version written into the cache). :func:`code_deps` follows the imports with
:mod:`ast` (function-local imports included, nothing is executed). ``pipeline dvc-deps``
writes those lists into ``dvc.yaml`` (keeping each stage's data deps) and ``--check`` fails
when ``dvc.yaml`` misses one; a test runs the check, so a new import cannot be forgotten.
"""
from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Iterable

from .files import atomic_write_bytes
from .project import CHECKOUT as ROOT
from .project import stage_files

PACKAGES = ("pipeline", "stages")


def _module_file(dotted: str) -> Path | None:
    """The file of an in-project module (``a/b.py`` or ``a/b/__init__.py``), else None."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> Iterable[str]:
    """Dotted names a module imports (absolute, relative resolved, ``from a import b`` -> a and a.b)."""
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def code_deps(entry: Path) -> list[str]:
    """Project files (relative, sorted) that ``entry`` runs: it, its imports, their packages."""
    def files_run_by(dotted: str) -> list[Path]:  # importing a.b.c runs a/__init__, a/b/__init__, a/b/c
        parts = dotted.split(".")
        if parts[0] not in PACKAGES:
            return []
        found = (_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1))
        return [f for f in found if f is not None]

    seen: set[Path] = set()
    todo = [entry.resolve()]  # run-stage loads the entry by its path (pipeline.project)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(f for dotted in _imported_modules(path) for f in files_run_by(dotted))
    return sorted(str(p.relative_to(ROOT)) for p in seen)


def stage_entry(stage: str) -> Path:
    return stage_files(ROOT)[stage]


def _is_code(dep: str) -> bool:
    return dep.split("/")[0] in PACKAGES


def sync_dvc_yaml(path: Path = ROOT / "dvc.yaml", write: bool = False) -> dict[str, list[str]]:
    """Per stage, the code files that ``dvc.yaml`` misses or lists without need; with
    ``write``, replace each stage's code deps by :func:`code_deps` (data deps kept, first)."""
    from ruamel.yaml import YAML
    yaml = YAML()
    yaml.width = 100
    doc = yaml.load(path.read_text())
    problems = {}
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        listed = [str(d) for d in body.get("deps", [])]
        wanted = code_deps(stage_entry(name))
        have = [d for d in listed if _is_code(d)]
        if sorted(have) != wanted:
            problems[name] = sorted(set(wanted) ^ set(have))
        if write:
            body["deps"] = [d for d in listed if not _is_code(d)] + wanted
    if write and problems:
        out = io.StringIO()
        yaml.dump(doc, out)
        atomic_write_bytes(path, out.getvalue().encode())
    return problems
