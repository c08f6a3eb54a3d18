"""The embedded synthetic dataset: procedurally rendered heads with exact pose labels,
written in the real formats of 300W-LP, AFLW2000 and BIWI (``pipeline synth``)."""
from .build import SynthConfig, generate

__all__ = ["SynthConfig", "generate"]
