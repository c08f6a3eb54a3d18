"""DVC stage ``evaluate``: MAE per test set for Base, Ensemble and every student, the rows of the
paper's table 5 (:func:`pipeline.evaluation.evaluate_models`). Besides its own block it reads the
(s, p) of ``ensemble_labels`` and the students of ``distill``."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.evaluation import EvaluateConfig, evaluate_models
from pipeline.labeling import EnsembleLabelsConfig
from pipeline.student import DistillConfig


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> dict:
    cfg = stage_config("evaluate", EvaluateConfig, params_path, overrides)
    ensemble = stage_config("ensemble_labels", EnsembleLabelsConfig, params_path, overrides)
    distill = stage_config("distill", DistillConfig, params_path, overrides)
    return evaluate_models(cfg, ensemble, distill)
