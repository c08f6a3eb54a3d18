"""Errors of the relabel stage; every message names the file (and sample) at fault."""
from __future__ import annotations

from ..errors import PipelineError


class RelabelError(PipelineError):
    """Bad input to the relabel stage (image, manifest box, box file, worker failure)."""


class DetectorError(RelabelError):
    """A detector cannot be built (missing model or cascade file)."""
