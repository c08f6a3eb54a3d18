"""DVC stage ``train-teacher``: stage 1 of the paper, the teacher network
(:func:`pipeline.teacher.train_teacher`). Under ``torchrun --nproc_per_node N`` it trains with DDP."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.teacher import TrainTeacherConfig, train_teacher


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> Optional[dict]:
    cfg = stage_config("train_teacher", TrainTeacherConfig, params_path, overrides)
    return train_teacher(cfg)
