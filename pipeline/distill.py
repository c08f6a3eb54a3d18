"""Distillation data (paper section 3.4): student crops with the teachers' answers read from
their HDF5 caches, for exactly the crop the student sees.

Every teacher cache holds eq. 6 for R views of every training image (:mod:`pipeline.views`:
flip, in-plane rotation, box jitter). In epoch e the student cuts view
``replayed_view(seed, e, index, R)`` of each image (the same warp the labelling job cut the
teacher's receptive field with), its label corrected by the view (:meth:`View.pose`), and its
target is what each teacher said about that view: no rule is applied to a target. The
photometric augmentations of section 4.3 come on top, drawn afresh each epoch, or replayed from
the view's seed (``views.photometric: replay``: what the teacher saw then went through them too).

A student may read several teachers (:mod:`pipeline.teachers`): the dataset holds one
:class:`pipeline.cache.TeacherCache` per teacher its method reads, each opening its file lazily
in each process (pickling them for DataLoader workers sends keys, not arrays). A hard-label
control (``loss: ce``) reads none: it replays the same views, drawn from the same ``views`` block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np
import torch

from .augment import AugmentConfig, View
from .cache import CacheError, Expect, TeacherCache, open_cache
from .data import PoseDataset
from .image import to_tensor
from .manifest import Sample
from .teachers import MethodConfig, filter_noise, senior_weight
from .views import replayed_view

BOX_TOLERANCE = 0.01  # pixels: the manifest stores boxes with 3 decimals, the cache float32


def open_student_cache(path: str | Path, samples: Sequence[Sample], manifest_sha256: str,
                       teacher_sha256: Optional[str] = None, bin_size: int = 1,
                       samples_sha256: Optional[str] = None, teacher: Optional[str] = None,
                       views: Optional[np.ndarray] = None) -> TeacherCache:
    """The cache checked against what the student trains on: manifest, keys, the head, the
    teacher checkpoint (if given), the teacher's name (``teacher``, if given), the boxes the
    teacher saw (a relabel run changes them), the image bytes (``samples_sha256``, if given),
    the views it will replay (``views`` (len(samples), R, len(VIEW_COLUMNS)), if given: what the ``views`` block
    draws), and every row of the head it reads (checksums and distributions: a damaged file
    fails here, not mid-epoch)."""
    cache = open_cache(path, Expect(manifest_sha256=manifest_sha256, keys=[s.key for s in samples],
                                    bin_sizes=(bin_size,), teacher_sha256=teacher_sha256,
                                    samples_sha256=samples_sha256, teacher=teacher))
    cache.verify(bin_sizes=(bin_size,))
    rows = np.array([cache.row(s.key) for s in samples], dtype=np.int64)
    with h5py.File(cache.path, "r") as f:
        cached = f["boxes"][()][rows] if len(rows) else np.zeros((0, 4))
    ours = np.array([s.box for s in samples], dtype=np.float64).reshape(-1, 4)
    bad = np.flatnonzero(np.abs(cached - ours).max(axis=1) > BOX_TOLERANCE)
    if len(bad):
        s = samples[bad[0]]
        raise CacheError(f"{cache.path}: boxes mismatch for {len(bad)} samples, e.g. {s.key}: cache has "
                         f"{cached[bad[0]].tolist()}, the student uses {list(s.box)} (stale cache: "
                         "re-run its labelling stage with the same boxes)")
    if views is not None:
        stored = cache.views()[rows] if len(rows) else np.zeros((0, cache.meta.views, views.shape[-1]))
        if stored.shape != views.shape or not np.array_equal(stored, views):
            raise CacheError(f"{cache.path}: labelled on other views than the student replays ({cache.meta.views} "
                             f"per image, drawn by {cache.meta.views_config}; the student: {views.shape[1]} per "
                             "image; stale cache: the `views` block changed, re-run its labelling stage)")
    return cache


class DistillDataset(PoseDataset):
    """PoseDataset items of the replayed views (:mod:`pipeline.views`) plus the targets of
    ``method`` (:mod:`pipeline.teachers`) for that view: ``"teacher"`` (3, q) float32, the
    distribution of eq. 7 (loss ``kl``: one teacher, or ODKD's epoch-weighted primary and
    senior), or ``"teacher_angles"`` (2, 3) float32, the tough and tolerant teachers' angles
    (loss ``assistive``; with ``eq7_weight`` > 0 also ``"teacher"``, the tolerant one's
    distribution); none for the hard-label control (loss ``ce``). ``teachers``: name ->
    open cache; ``views``: (len(samples), R, 6), the rows of :func:`pipeline.views.draw_views`
    (what the caches hold); ``epochs``: of the training run (ODKD's schedule);
    ``replay_photometric``: the views' photometric seeds are replayed (``views.photometric:
    replay``) instead of drawing fresh steps each epoch."""

    def __init__(self, samples: Sequence[Sample], teachers: dict[str, TeacherCache], views: np.ndarray,
                 size: int, augment: Optional[AugmentConfig] = None, seed: int = 0, bin_size: int = 1,
                 method: MethodConfig = MethodConfig(), epochs: int = 1, replay_photometric: bool = False):
        super().__init__(samples, size, augment, seed)
        absent = [name for name in method.teachers() if name not in teachers]
        if absent:
            raise ValueError(f"method reads teacher {absent[0]!r}, not among {sorted(teachers)}")
        if len(views) != len(self.samples):
            raise ValueError(f"{len(views)} rows of views for {len(self.samples)} samples")
        self.teachers, self.views, self.bin_size = teachers, np.asarray(views), bin_size
        self.method, self.epochs, self.replay_photometric = method, epochs, replay_photometric

    def _distribution(self, name: str, key: str, view: int) -> np.ndarray:
        probs = filter_noise(self.teachers[name].probs(key, self.bin_size, view), self.method.floor)
        return probs / probs.sum(axis=-1, keepdims=True)   # float16 rows do not sum to exactly 1

    def __getitem__(self, item) -> dict:
        epoch, index = item if isinstance(item, tuple) else (0, item)
        v = replayed_view(self.seed, epoch, index, self.views.shape[1])
        row = self.views[index, v]
        _, crop = self.view(item, View.from_row(row), int(row[-1]) if self.replay_photometric else None)
        key = self.samples[index].key
        out = {"image": to_tensor(crop.crop), "pose": torch.as_tensor(crop.pose, dtype=torch.float32),
               "index": index, "view": v}
        method = self.method
        if method.loss == "ce":
            return out
        if method.loss == "assistive":
            angles = [self.teachers[name].expected(key, v) for name in (method.tough, method.tolerant)]
            out["teacher_angles"] = torch.as_tensor(np.stack(angles), dtype=torch.float32)
            if method.eq7_weight > 0:      # eq. 7 beside KD-Loss: the tolerant teacher's distribution
                out["teacher"] = torch.as_tensor(self._distribution(method.tolerant, key, v), dtype=torch.float32)
            return out
        w = senior_weight(method, epoch, self.epochs)
        target = w * self._distribution(method.teacher, key, v)
        if w < 1:
            target = target + (1 - w) * self._distribution(method.primary, key, v)
        out["teacher"] = torch.as_tensor(target, dtype=torch.float32)
        return out
