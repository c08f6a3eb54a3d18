"""``pipeline``: every command module is imported here, so ``app`` is complete on import."""
from __future__ import annotations

from . import bench, cache, stages, synth  # noqa: F401  (each registers its commands)
from .app import app


def main() -> None:
    app()
