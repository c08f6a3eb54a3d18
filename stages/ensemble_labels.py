"""DVC stage ``ensemble-labels``: the teacher's convolutional ensemble (paper section 3.3) over
every training sample, written to the HDF5 teacher cache (:func:`pipeline.labeling.label_training_set`).
Several GPUs (or CPU processes): ``torchrun --nproc-per-node N -m pipeline run-stage ensemble-labels``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.labeling import EnsembleLabelsConfig, label_training_set


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> Optional[Path]:
    cfg = stage_config("ensemble_labels", EnsembleLabelsConfig, params_path, overrides)
    return label_training_set(cfg)
