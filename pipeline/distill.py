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

The dataset holds a :class:`pipeline.cache.TeacherCache`, which opens the file lazily in
each process: pickling it for DataLoader workers sends keys, not arrays.
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
                       samples_sha256: Optional[str] = None) -> TeacherCache:
    """The cache checked against what the student trains on: manifest, keys, the head, the
    teacher (if given), the boxes the teacher saw (a relabel run changes them), the image
    bytes (``samples_sha256``, if given), and every row of the head it reads (checksums and
    distributions: a damaged file fails here, not mid-epoch)."""
    cache = open_cache(path, Expect(manifest_sha256=manifest_sha256, keys=[s.key for s in samples],
                                    bin_sizes=(bin_size,), teacher_sha256=teacher_sha256,
                                    samples_sha256=samples_sha256))
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
                         "re-run ensemble-labels with the same boxes)")
    return cache


class DistillDataset(PoseDataset):
    """PoseDataset items plus ``"teacher"``: (3, q) float32 ensemble distribution of the crop."""

    def __init__(self, samples: Sequence[Sample], cache: TeacherCache, size: int,
                 augment: Optional[AugmentConfig] = None, seed: int = 0,
                 rotation: RotationRule = "shift", bin_size: int = 1):
        super().__init__(samples, size, augment, seed)
        if rotation not in ROTATION_RULES:
            raise ValueError(f"rotation rule must be one of {ROTATION_RULES}, got {rotation!r}")
        self.cache, self.rotation, self.bin_size = cache, rotation, bin_size

    def __getitem__(self, item) -> dict:
        index, view = self.view(item)
        key = self.samples[index].key
        shifts = view.angle_ccw and self.rotation == "shift"  # only the shift rule needs the angles
        expected = self.cache.expected(key) if shifts else None
        target = teacher_target(self.cache.probs(key, self.bin_size), expected,
                                view.flip, view.angle_ccw, self.rotation, self.bin_size)
        return {"image": to_tensor(view.crop), "pose": torch.as_tensor(view.pose, dtype=torch.float32),
                "teacher": torch.as_tensor(target, dtype=torch.float32), "index": index}
