"""DVC stage ``synth``: writes the embedded synthetic dataset to ``synth.out_dir``."""
from __future__ import annotations

from pipeline.config import stage_config
from pipeline.synth import SynthConfig, generate


def run(params_path, overrides, item=None):
    generate(stage_config("synth", SynthConfig, params_path, overrides))
