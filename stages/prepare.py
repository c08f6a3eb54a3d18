"""DVC stage ``prepare``: the protocol's datasets (or the embedded synthetic one) -> manifest +
report (:func:`pipeline.prepare.prepare`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.prepare import PrepareConfig, prepare


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> dict:
    cfg = stage_config("prepare", PrepareConfig, params_path, overrides)
    return prepare(cfg)
