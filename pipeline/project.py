"""The project checkout: the folder that holds ``dvc.yaml``, ``params.yaml`` and ``stages/``.

``stages/`` is not an installed package (a generic top-level ``stages`` would collide with
other installs): ``pipeline run-stage NAME`` loads ``stages/<name>.py`` from the project, the
file of DVC stage ``name`` with ``-`` written ``_``. The project is the nearest folder at or
above the working directory with both ``dvc.yaml`` and ``stages/`` (DVC runs every stage command
there), else the checkout this package was installed from in editable mode.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import PipelineError

CHECKOUT = Path(__file__).resolve().parents[1]


class ProjectError(PipelineError):
    pass


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, CHECKOUT):
        if (folder / "dvc.yaml").is_file() and (folder / "stages").is_dir():
            return folder
    raise ProjectError(f"{here}: no project here (a folder with dvc.yaml and stages/); "
                       "run from the project checkout")


def stage_files(root: Path | None = None) -> dict[str, Path]:
    """DVC stage name -> its entry point, e.g. ``train-teacher`` -> ``stages/train_teacher.py``."""
    folder = (root or project_root()) / "stages"
    return {p.stem.replace("_", "-"): p for p in sorted(folder.glob("*.py")) if p.stem != "__init__"}


def load_stage(name: str, root: Path | None = None) -> ModuleType:
    files = stage_files(root)
    if name not in files:
        raise ProjectError(f"unknown stage {name!r}; known stages: {', '.join(files)}")
    spec = importlib.util.spec_from_file_location(f"stages.{files[name].stem}", files[name])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickle look a class's module up here
    spec.loader.exec_module(module)
    return module
