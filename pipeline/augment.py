"""Training augmentations (paper section 4.3), pose-changing ones first.

1. Pose-changing: horizontal flip (p = 0.5) and rotation by U[-rotate, rotate] degrees. Both
   are folded with the crop into ONE affine warp (rotation about the box centre, then the
   stretch of the box to size x size, then the mirror; :func:`pipeline.image.crop_affine`),
   so a rotated crop takes its corners from the image instead of from a second warp's
   black border. Labels are corrected with
   :func:`pipeline.pose.rotate_pose_in_plane` then :func:`pipeline.pose.flip_pose`, the
   same order as the image operations.
   Box jitter (``box_shift``, ``box_scale``; off by default) moves and resizes the box before
   the crop. It is NOT in section 4.3: a convolutional-ensemble teacher (section 3.3) is
   evaluated on shifted boxes, and a network that never saw one degrades quickly off centre
   (measured on the embedded data, issue 11), so the teacher may train on them.
   The three together are a :class:`View`. A student draws none of its own: it replays the
   views its teacher cache was labelled on (:mod:`pipeline.views`), so its target is always
   the teacher's answer on the crop it sees.
2. Pose-preserving, Albumentations, in the paper's order, each group switchable:
   OneOf(HueSaturationValue, CLAHE, Equalize, Solarize) p=0.5; OneOf(ChannelShuffle,
   ChannelDropout) p=0.5; MedianBlur p=0.5; OneOf(RandomShadow, ISONoise) p=0.5;
   CoarseDropout p=0.5.

Randomness comes only from ``sample_rng(seed, epoch, index)``: the same sample in the same
epoch is augmented identically whatever the worker count or process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Sequence

import albumentations as A
import cv2
import numpy as np

from .config import Fraction, InRange, check_fields
from .draw import draw_axes, grid
from .image import crop_box, encode_image, load_rgb
from .manifest import Sample
from .files import atomic_write_bytes
from .pose import flip_pose, rotate_pose_in_plane


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True            # horizontal flip, p = 0.5
    rotate: Annotated[float, InRange(0, 180)] = 15.0   # max |in-plane rotation| in degrees; 0: off
    color: bool = True           # OneOf(HueSaturationValue, CLAHE, Equalize, Solarize)
    channel: bool = True         # OneOf(ChannelShuffle, ChannelDropout)
    median_blur: bool = True
    shadow_noise: bool = True    # OneOf(RandomShadow, ISONoise)
    coarse_dropout: bool = True
    box_shift: Fraction = 0.0    # max |shift| of the box per axis, as a fraction of its side
    box_scale: Fraction = 0.0    # max relative change of the box side (same factor for both)

    def __post_init__(self):
        check_fields(self, "augment")   # also built in code, not only from params


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True)
class View:
    """The pose-changing part of one augmentation, in the order the crop warp applies it: the
    box moved by ``shift`` (fractions of its width and height) and its sides scaled by
    ``scale`` about the moved centre; the image rotated by ``angle_ccw`` degrees about the box
    centre; the crop mirrored if ``flip``. The identity view is the plain crop of the box.
    A teacher cache stores one row per view (:mod:`pipeline.views`), these first."""
    flip: bool = False
    angle_ccw: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0

    def box(self, box) -> np.ndarray:
        """The box this view crops. Jitter does not change the pose label: a translated crop of
        the same head (the ensemble's windows, eq. 5, are such crops)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        if self.shift == (0.0, 0.0) and self.scale == 1.0:
            return np.array([x1, y1, x2, y2])   # exactly the box (no rounding through the centre)
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + self.shift[0] * w, (y1 + y2) / 2 + self.shift[1] * h
        half_w, half_h = w * self.scale / 2, h * self.scale / 2
        return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    def crop(self, image: np.ndarray, box, out_h: int, out_w: int, pad: int = 0) -> np.ndarray:
        """The view's crop (grown by ``pad`` output pixels: the ensemble's Z): one warp."""
        return crop_box(image, self.box(box), out_h, out_w, pad=pad, angle_ccw=self.angle_ccw, flip=self.flip)

    def pose(self, pose) -> np.ndarray:
        """The label of the view's crop: rotated in-plane, then mirrored (the image's order)."""
        out = np.asarray(pose, dtype=np.float64)
        if self.angle_ccw:
            out = rotate_pose_in_plane(out, self.angle_ccw)
        return flip_pose(out) if self.flip else out

    def row(self) -> tuple[float, ...]:
        return (float(self.flip), self.angle_ccw, *self.shift, self.scale)

    @classmethod
    def from_row(cls, row) -> "View":
        """The view of a row that starts with :data:`GEOMETRY_COLUMNS`."""
        flip, angle, shift_x, shift_y, scale = (float(v) for v in row[:len(GEOMETRY_COLUMNS)])
        return cls(flip=bool(flip), angle_ccw=angle, shift=(shift_x, shift_y), scale=scale)


GEOMETRY_COLUMNS = ("flip", "angle_ccw", "shift_x", "shift_y", "scale")   # View.row()


def draw_view(rng: np.random.Generator, flip: bool, rotate: float, box_shift: float, box_scale: float) -> View:
    """A random view: mirrored with p = 0.5, rotated by U[-rotate, rotate], the box moved by
    U[-box_shift, box_shift] of its sides and scaled by U[1 - box_scale, 1 + box_scale]; a
    setting of 0 (False) draws nothing from ``rng``."""
    mirrored = bool(flip and rng.random() < 0.5)
    angle = float(rng.uniform(-rotate, rotate)) if rotate > 0 else 0.0
    shift = tuple(float(v) for v in rng.uniform(-box_shift, box_shift, size=2)) if box_shift > 0 else (0.0, 0.0)
    scale = float(rng.uniform(1 - box_scale, 1 + box_scale)) if box_scale > 0 else 1.0
    return View(mirrored, angle, shift, scale)


def photometric(chain: A.Compose, crop: np.ndarray, seed: int) -> np.ndarray:
    """``crop`` through ``chain`` seeded with ``seed``: the same seed draws the same steps for
    every crop of the same size (the replayed views apply one to each ensemble window)."""
    chain.set_random_seed(seed)
    return chain(image=crop)["image"]


def pose_preserving_chain(cfg: AugmentConfig) -> Optional[A.Compose]:
    """The Albumentations part of section 4.3, in the paper's order (None if all off)."""
    steps = []
    if cfg.color:
        steps.append(A.OneOf([A.HueSaturationValue(p=1), A.CLAHE(p=1), A.Equalize(p=1),
                              A.Solarize(p=1)], p=0.5))
    if cfg.channel:
        steps.append(A.OneOf([A.ChannelShuffle(p=1), A.ChannelDropout(p=1)], p=0.5))
    if cfg.median_blur:
        steps.append(A.MedianBlur(p=0.5))
    if cfg.shadow_noise:
        steps.append(A.OneOf([A.RandomShadow(p=1), A.ISONoise(p=1)], p=0.5))
    if cfg.coarse_dropout:
        steps.append(A.CoarseDropout(p=0.5))
    return A.Compose(steps) if steps else None


@dataclass(frozen=True)
class Augmented:
    """One augmented crop, its corrected pose and the view it was cut with (the pose-changing
    steps, for labels that must follow)."""
    crop: np.ndarray
    pose: np.ndarray
    view: View


class Augmenter:
    """(image, box, pose, rng) -> (size x size RGB crop, corrected pose);
    :meth:`apply` also reports the view."""

    def __init__(self, cfg: AugmentConfig, size: int):
        self.cfg = cfg
        self.size = size
        self.chain = pose_preserving_chain(cfg)

    def __call__(self, image: np.ndarray, box, pose, rng: np.random.Generator):
        out = self.apply(image, box, pose, rng)
        return out.crop, out.pose

    def apply(self, image: np.ndarray, box, pose, rng: np.random.Generator,
              view: Optional[View] = None, photometric_seed: Optional[int] = None) -> Augmented:
        """Cut ``view`` (a replayed one; default: drawn from ``rng`` by the config's pose-changing
        settings), then the pose-preserving chain seeded from ``rng``, or from
        ``photometric_seed`` (a replayed one: :func:`photometric`; a negative seed: no chain)."""
        if view is None:
            view = draw_view(rng, self.cfg.flip, self.cfg.rotate, self.cfg.box_shift, self.cfg.box_scale)
        crop = view.crop(image, box, self.size, self.size)
        if self.chain is not None and photometric_seed is None:
            crop = photometric(self.chain, crop, int(rng.integers(2 ** 31)))
        elif self.chain is not None and photometric_seed >= 0:
            crop = photometric(self.chain, crop, photometric_seed)
        return Augmented(crop, view.pose(pose), view)


def augmentation_grid(samples: Sequence[Sample], cfg: AugmentConfig, size: int, seed: int,
                      path: str | Path, per_sample: int = 5, cell: int = 128) -> None:
    """PNG contact sheet: per row one sample, first the plain crop then ``per_sample``
    augmented crops, each with its (corrected) label's axes drawn, for a person to check."""
    augmenter = Augmenter(cfg, size)
    cells = []
    for index, sample in enumerate(samples):
        image = load_rgb(sample.image)
        plain = crop_box(image, sample.box, size, size)
        views = [(plain, sample.pose)]
        views += [augmenter(image, sample.box, sample.pose, sample_rng(seed, epoch, index))
                  for epoch in range(per_sample)]
        for crop, pose in views:
            big = cv2.resize(crop, (cell, cell), interpolation=cv2.INTER_LINEAR)
            cells.append(draw_axes(big, pose))
    sheet = grid(cells, per_sample + 1, row_labels=[s.key.replace("/", "/\n", 1) for s in samples],
                 column_labels=["no augmentation"] + [f"augmented, epoch {e}" for e in range(per_sample)],
                 legend=["label axes after the augmentation: x red, y green, nose (z) blue"])
    atomic_write_bytes(path, encode_image(sheet))
