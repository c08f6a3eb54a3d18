"""The views a teacher labels and a student replays (issue 23: a reinforced cache).

A cache of one crop per image can only teach the un-augmented crop: no rule maps the
teacher's answer onto a rotated crop (``pipeline bench kd-rotation``). So, as FKD and Apple's
dataset reinforcement (ml-dr) do for image classification, every training image gets R views
(:class:`pipeline.augment.View`: flip, in-plane rotation, box jitter: the pose-changing
augmentations the teacher trained with), the labelling stages run each teacher on every view
(still one batch of strided windows per view, :mod:`pipeline.labeling`) and store each view's
parameters beside its distributions, and a student cuts exactly those views
(:mod:`pipeline.distill`): its target is always what the teacher said about the crop it sees.

* View 0 of every image is the identity (the plain crop): R = 1 is the un-augmented cache.
* Views 1 .. R-1 are drawn from ``(seed, key)`` alone (:func:`draw_views`), so every teacher
  labelled with the same ``views`` block sees the same views, whatever the manifest's order,
  its other rows or the number of processes; the student checks it.
* Epoch e of a student shows view ``replayed_view(seed, e, index, R)``: each image runs
  through its R views in a seeded random order, a new order every R epochs, so every view is
  used as often as every other.
* Photometric augmentations (the Albumentations chain of section 4.3): ``photometric: fresh``
  leaves them out of the views, the teacher labels the clean view and the student draws new ones
  every epoch; ``replay`` stores a seed per view (column ``photometric_seed``; -1: none, as for
  view 0), the labelling job puts each of the view's ensemble windows through the full chain
  with that seed and the student its crop, so even then the target is the teacher's answer on
  the exact crop the student sees (README "Views" has the measurement of both).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Literal, Sequence

import numpy as np

from .augment import GEOMETRY_COLUMNS, AugmentConfig, View, draw_view, pose_preserving_chain
from .config import Fraction, InRange, NonNegative, Positive, as_dict, check_fields

VIEW_DTYPE = np.float32    # what the cache stores, and so what teacher and student both cut
VIEW_COLUMNS = GEOMETRY_COLUMNS + ("photometric_seed",)   # the /views dataset of a cache
SEED_LIMIT = 2 ** 24       # photometric seeds below this are exact in float32
REPLAYED_CHAIN = AugmentConfig()   # photometric: replay puts views through all of section 4.3's chain


@dataclass(frozen=True, kw_only=True)
class ViewsConfig:
    """The ``views`` block: read by every labelling stage and by the students."""
    count: Positive = 1              # R views per image; view 0 is the plain crop (1: no others)
    seed: NonNegative = 0
    flip: bool = True                # mirrored with p = 0.5
    rotate: Annotated[float, InRange(0, 180)] = 15.0   # in-plane rotation U[-rotate, rotate] degrees
    box_shift: Fraction = 0.0        # box moved by U[-box_shift, box_shift] of its sides
    box_scale: Fraction = 0.0        # box sides scaled by U[1 - box_scale, 1 + box_scale]
    photometric: Literal["fresh", "replay"] = "fresh"   # see the module docstring

    def __post_init__(self):
        check_fields(self, "views")

    def describe(self) -> str:
        """The block as the cache stores it (attribute ``views_config``): sorted JSON."""
        return json.dumps(as_dict(self), sort_keys=True)


def _key_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")])


def draw_views(cfg: ViewsConfig, keys: Sequence[str]) -> np.ndarray:
    """(N, R, len(VIEW_COLUMNS)) view parameters of the samples ``keys``, stored as VIEW_DTYPE
    (teacher and student cut the rounded values): row 0 the identity, the others drawn."""
    out = np.empty((len(keys), cfg.count, len(VIEW_COLUMNS)), dtype=VIEW_DTYPE)
    identity = (*View().row(), -1)
    for i, key in enumerate(keys):
        rng = _key_rng(cfg.seed, key)
        out[i, 0] = identity
        for r in range(1, cfg.count):
            view = draw_view(rng, cfg.flip, cfg.rotate, cfg.box_shift, cfg.box_scale)
            out[i, r] = (*view.row(), rng.integers(SEED_LIMIT) if cfg.photometric == "replay" else -1)
    return out


def replayed_chain(cfg: ViewsConfig):
    """The photometric chain that replayed views go through (None for ``fresh`` views)."""
    return pose_preserving_chain(REPLAYED_CHAIN) if cfg.photometric == "replay" else None


def replayed_view(seed: int, epoch: int, index: int, count: int) -> int:
    """The view sample ``index`` shows in ``epoch``: its ``count`` views in a random order of
    ``(seed, index, epoch // count)``, so each view comes once every ``count`` epochs."""
    if count == 1:
        return 0
    order = np.random.default_rng([seed, index, epoch // count]).permutation(count)
    return int(order[epoch % count])
