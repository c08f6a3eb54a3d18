"""The landmarks box rule: how a tight landmark box becomes a face box.

Rule (used by the ``landmarks`` backend and as every detector's fallback): take the
sample's landmark box (x1, y1, x2, y2), keep its centre, and grow it to a **square** whose
side is ``scale * max(x2 - x1, y2 - y1)``. The box is not clipped to the image: the crop
(:func:`pipeline.image.crop_box`) takes what lies outside as black, so the face keeps its
scale near the border. With the default scale 1.2 the square leaves ~10 % margin around the
landmarks on the long side, close to the paper's "bounding rectangle around the facial
landmarks, slightly enlarged" (section 4.2).
"""
from __future__ import annotations

from typing import Sequence

from ..boxes import Box


def enlarge_box(box: Sequence[float], scale: float) -> Box:
    """Square of side ``scale * max(w, h)`` about the centre of ``box``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {tuple(box)} is empty (need x2 > x1 and y2 > y1)")
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = scale * max(x2 - x1, y2 - y1) / 2
    return (cx - half, cy - half, cx + half, cy + half)
