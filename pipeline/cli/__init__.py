"""``pipeline``: every command module is imported here, so ``app`` is complete on import."""
from __future__ import annotations

from . import bench, cache, deploy, stages, synth  # noqa: F401  (each registers its commands)
from .app import app


def main() -> None:
    _quiet_progress_when_piped()
    app()


def _quiet_progress_when_piped(seconds: float = 30) -> None:
    """Progress bars written to a file or a pipe (dvc repro, CI, nohup) redraw every ``seconds``
    instead of several times a second, so a log is lines, not megabytes of carriage returns.
    A TQDM_MININTERVAL set by the user wins (tqdm reads it when it is imported)."""
    import os
    import sys
    from functools import partialmethod

    if sys.stderr.isatty() or "TQDM_MININTERVAL" in os.environ:
        return
    from tqdm import tqdm
    tqdm.__init__ = partialmethod(tqdm.__init__, mininterval=seconds)
