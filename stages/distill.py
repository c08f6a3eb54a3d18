"""DVC stage ``distill`` (one per student run, dvc.yaml ``matrix`` of students and seeds):
stage 2 of the paper, a student trained from the teacher cache with eq. 7
(:func:`pipeline.student.distill_students`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.student import DistillConfig, distill_students


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> Optional[dict] | list:
    """``item`` = a run ``<backbone>-seed<k>`` or a backbone (all its seeds); without it every run."""
    cfg = stage_config("distill", DistillConfig, params_path, overrides)
    return distill_students(cfg, item)
