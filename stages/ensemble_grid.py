"""DVC stage ``ensemble-grid``: MAE of the teacher's convolutional ensemble on the test sets over
a grid of (s, p), paper tables 2-4 and fig. 6 (:func:`pipeline.ensemble_grid.ensemble_grid`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.ensemble_grid import EnsembleGridConfig, ensemble_grid


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> list[dict]:
    cfg = stage_config("ensemble_grid", EnsembleGridConfig, params_path, overrides)
    return ensemble_grid(cfg)
