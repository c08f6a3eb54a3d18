"""Choosing one face among a detector's candidates.

With a reference (the sample's landmark box) the candidate with the highest IoU wins; it is
accepted only if that IoU reaches ``min_iou``. Without a reference (``predict`` on a new
image) the largest candidate wins. Ties keep the first candidate, so the result is
deterministic for a deterministic detector.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..boxes import Box, best_iou


def choose_box(candidates: Sequence[Box], reference: Optional[Sequence[float]] = None
               ) -> tuple[Optional[Box], Optional[float]]:
    """(best box, its IoU with ``reference``); (None, None) when there is no candidate."""
    if not candidates:
        return None, None
    if reference is None:
        return max(candidates, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])), None
    best, score = best_iou(candidates, reference)
    return tuple(float(v) for v in candidates[best]), score
