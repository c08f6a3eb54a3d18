"""DVC stage ``relabel``: one face box per manifest sample from the configured detector
(:func:`pipeline.relabel.relabel`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.relabel import RelabelConfig, relabel


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> dict:
    cfg = stage_config("relabel", RelabelConfig, params_path, overrides)
    return relabel(cfg)
