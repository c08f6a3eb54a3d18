"""One module per DVC stage. Each exposes ``run(params_path, overrides, item=None)``:
it reads its own params block, calls the library and writes the stage's outs."""
from __future__ import annotations

import importlib

# DVC stage name -> module in this package (dvc.yaml runs `pipeline run-stage <name>`).
STAGES = {
    "synth": "synth",
    "prepare": "prepare",
    "relabel": "relabel",
    "train-teacher": "train_teacher",
    "ensemble-labels": "ensemble_labels",
    "ensemble-grid": "ensemble_grid",
    "distill": "distill",
    "evaluate": "evaluate",
    "report": "report",
}


def get_stage(name: str):
    if name not in STAGES:
        raise KeyError(name)
    return importlib.import_module(f"{__name__}.{STAGES[name]}")
