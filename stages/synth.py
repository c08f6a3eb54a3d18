"""DVC stage ``synth``: writes the embedded synthetic dataset to ``synth.out_dir``
(:func:`pipeline.synth.generate`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.synth import SynthConfig, generate


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> dict:
    cfg = stage_config("synth", SynthConfig, params_path, overrides)
    return generate(cfg)
