"""DVC stage ``base-labels``: teacher "base", the stage-1 network on the box alone (s = 1, p = 0:
one window, the Base row of table 5), over every training sample into its own teacher cache
(:func:`pipeline.labeling.label_training_set`); the weaker teacher of the dual-teacher methods
(pipeline/teachers.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.labeling import BaseLabelsConfig, label_training_set


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> Optional[Path]:
    cfg = stage_config("base_labels", BaseLabelsConfig, params_path, overrides)
    return label_training_set(cfg)
