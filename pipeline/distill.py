"""Distillation data (paper section 3.4): student crops with the teacher ensemble's answer
read from the HDF5 cache, made consistent with the augmentation the student sees.

The cache holds eq. 6 for the UN-augmented crop. For an augmented crop the target follows
the steps :class:`pipeline.augment.Augmenter` took, in its order:

* rotation by ``angle_ccw`` (``rotation="shift"``): the new angles are
  :func:`pipeline.pose.rotate_pose_in_plane` of the cached expected angles; each angle's
  distribution is shifted by its change, fractional bins by linear interpolation (mass
  shifted out of [-99, 99] is dropped, the rest renormalised). ``rotation="none"`` keeps the
  cached distribution. ``pipeline bench kd-rotation`` measures both against the teacher run
  on rotated crops (the numbers behind the default);
* horizontal flip: exact, yaw and roll reversed along the bin axis (``bins.flip_distribution``).

A student may read several teachers (:mod:`pipeline.teachers`): the dataset holds one
:class:`pipeline.cache.TeacherCache` per teacher its method reads, each opening its file lazily
in each process (pickling them for DataLoader workers sends keys, not arrays).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence

import h5py
import numpy as np
import torch

from . import bins
from .augment import AugmentConfig
from .cache import CacheError, Expect, TeacherCache, open_cache
from .data import PoseDataset
from .image import to_tensor
from .manifest import Sample
from .pose import rotate_pose_in_plane
from .teachers import MethodConfig, filter_noise, senior_weight, teacher_angles

RotationRule = Literal["shift", "none"]
ROTATION_RULES = ("shift", "none")
BOX_TOLERANCE = 0.01  # pixels: the manifest stores boxes with 3 decimals, the cache float32


def shift_distribution(probs: np.ndarray, delta, bin_size: int = 1) -> np.ndarray:
    """(3, q) distributions moved by ``delta`` (3,) degrees per angle: p'(c) = p(c - delta),
    linear interpolation between bin centres, renormalised."""
    c = bins.centres(bin_size)
    out = np.stack([np.interp(c - d, c, row, left=0.0, right=0.0)
                    for row, d in zip(np.asarray(probs, np.float64), np.asarray(delta, np.float64))])
    mass = out.sum(axis=-1, keepdims=True)
    if np.any(mass <= 1e-12):
        raise ValueError(f"shift by {delta} moves a whole distribution out of [-99, 99]")
    return out / mass


def teacher_target(probs: np.ndarray, expected, flip: bool, angle_ccw: float,
                   rotation: RotationRule = "shift", bin_size: int = 1) -> np.ndarray:
    """The cached (3, q) ensemble distribution made to follow rotate-then-flip (see above)."""
    if rotation not in ROTATION_RULES:
        raise ValueError(f"rotation rule must be one of {ROTATION_RULES}, got {rotation!r}")
    out = np.asarray(probs, dtype=np.float64)
    if angle_ccw and rotation == "shift":
        expected = np.asarray(expected, dtype=np.float64)
        out = shift_distribution(out, rotate_pose_in_plane(expected, angle_ccw) - expected, bin_size)
    if flip:
        out = bins.flip_distribution(out)
    return out / out.sum(axis=-1, keepdims=True)  # float16 rows do not sum to exactly 1


def open_student_cache(path: str | Path, samples: Sequence[Sample], manifest_sha256: str,
                       teacher_sha256: Optional[str] = None, bin_size: int = 1,
                       samples_sha256: Optional[str] = None, teacher: Optional[str] = None) -> TeacherCache:
    """The cache checked against what the student trains on: manifest, keys, the head, the
    teacher checkpoint (if given), the teacher's name (``teacher``, if given), the boxes the
    teacher saw (a relabel run changes them), the image bytes (``samples_sha256``, if given),
    and every row of the head it reads (checksums and distributions: a damaged file fails
    here, not mid-epoch)."""
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
    return cache


class DistillDataset(PoseDataset):
    """PoseDataset items plus the targets of ``method`` (:mod:`pipeline.teachers`) for the crop:
    ``"teacher"`` (3, q) float32, the distribution of eq. 7 (loss ``kl``: one teacher, or ODKD's
    epoch-weighted primary and senior), or ``"teacher_angles"`` (2, 3) float32, the tough and
    tolerant teachers' angles (loss ``assistive``). ``teachers``: name -> open cache; ``epochs``:
    of the training run (ODKD's schedule)."""

    def __init__(self, samples: Sequence[Sample], teachers: dict[str, TeacherCache], size: int,
                 augment: Optional[AugmentConfig] = None, seed: int = 0,
                 rotation: RotationRule = "shift", bin_size: int = 1,
                 method: MethodConfig = MethodConfig(), epochs: int = 1):
        super().__init__(samples, size, augment, seed)
        if rotation not in ROTATION_RULES:
            raise ValueError(f"rotation rule must be one of {ROTATION_RULES}, got {rotation!r}")
        absent = [name for name in method.teachers() if name not in teachers]
        if absent:
            raise ValueError(f"method reads teacher {absent[0]!r}, not among {sorted(teachers)}")
        self.teachers, self.rotation, self.bin_size = teachers, rotation, bin_size
        self.method, self.epochs = method, epochs

    def _distribution(self, name: str, key: str, view) -> np.ndarray:
        cache = self.teachers[name]
        shifts = view.angle_ccw and self.rotation == "shift"  # only the shift rule needs the angles
        probs = filter_noise(cache.probs(key, self.bin_size), self.method.floor)
        return teacher_target(probs, cache.expected(key) if shifts else None, view.flip, view.angle_ccw,
                              self.rotation, self.bin_size)

    def __getitem__(self, item) -> dict:
        index, view = self.view(item)
        epoch = item[0] if isinstance(item, tuple) else 0
        key = self.samples[index].key
        out = {"image": to_tensor(view.crop), "pose": torch.as_tensor(view.pose, dtype=torch.float32),
               "index": index}
        method = self.method
        if method.loss == "assistive":
            angles = [teacher_angles(self.teachers[name].expected(key), view.flip, view.angle_ccw, self.rotation)
                      for name in (method.tough, method.tolerant)]
            out["teacher_angles"] = torch.as_tensor(np.stack(angles), dtype=torch.float32)
            return out
        w = senior_weight(method, epoch, self.epochs)
        target = w * self._distribution(method.teacher, key, view)
        if w < 1:
            target = target + (1 - w) * self._distribution(method.primary, key, view)
        out["teacher"] = torch.as_tensor(target, dtype=torch.float32)
        return out
