"""``pipeline bench kd-rotation``: can the teacher's answer on the plain crop stand in for its
answer on a rotated (or flipped) crop? The numbers behind the views of :mod:`pipeline.views`.

For training samples of the cache and each rotation magnitude t (sign alternating over the
samples), the teacher's convolutional ensemble (same s, p as the cache) is run on the
rotated receptive field (the Augmenter's warp: rotation about the box centre, then the
stretch; grown by p image pixels), and compared with a target made from the cached plain crop
(view 0) by a rule:
(a) ``shift``: each angle's distribution moved by the exact change of the pose
    (:func:`pipeline.pose.rotate_pose_in_plane`), fractional bins interpolated, then the flip
    rule (yaw and roll reversed along the bin axis);
(b) ``none``: the cached distribution as it is (flip rule only).
Reported: mean KL(teacher on the view || target), summed over the three angles, and the mean
|difference| of their expected angles (eq. 2) in degrees. t = 0 checks the set-up (only the
float16 rounding of the cache remains); the ``flip`` row checks the flip rule. The last row,
``stored view``, compares the teacher on view 1 of each image with what the cache stores for
it (both rules' columns): the reinforced cache's answer, float16 rounding only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .. import bins
from ..augment import View
from ..cache import TeacherCache
from ..ensemble import ensemble_distributions
from ..image import crop_box, load_rgb, to_tensor_batch
from ..manifest import Sample
from ..pose import rotate_pose_in_plane

KL_FLOOR = 1e-6  # targets are floored here before KL: a float16 zero must not give infinity


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


def rule_target(probs: np.ndarray, expected, flip: bool, angle_ccw: float, rule: str) -> np.ndarray:
    """The cached (3, q) distribution of the plain crop made to follow rotate-then-flip by a
    rule: ``shift`` (moved by the pose change) or ``none`` (kept); then the flip rule."""
    out = np.asarray(probs, dtype=np.float64)
    if angle_ccw and rule == "shift":
        expected = np.asarray(expected, dtype=np.float64)
        out = shift_distribution(out, rotate_pose_in_plane(expected, angle_ccw) - expected)
    if flip:
        out = bins.flip_distribution(out)
    return out / out.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) over the bins, summed over the angles: (..., 3, q) -> (...)."""
    q = np.maximum(q, KL_FLOOR)
    q = q / q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / q), 0.0).sum(axis=(-2, -1))


@torch.no_grad()
def measure(teacher: torch.nn.Module, cache: TeacherCache, samples: Sequence[Sample],
            magnitudes: Sequence[float], batch_size: int = 8, max_windows: int = 512) -> list[dict]:
    """One row per view ("rot 0", "rot ±t", "flip", and "stored view" when the cache holds more
    than the plain crop): KL and angle gaps of both rules."""
    if not isinstance(teacher.input_size, int):
        raise ValueError("kd-rotation needs a square teacher input")
    s, p, size = cache.meta.s, cache.meta.p, teacher.input_size
    views = [(f"rot ±{t:g}", float(t), False) for t in magnitudes] + [("flip", 0.0, True)]
    stored = cache.meta.views > 1
    names = [name for name, _, _ in views] + (["stored view"] if stored else [])
    acc = {name: {"kl_shift": [], "kl_none": [], "deg_shift": [], "deg_none": []} for name in names}
    teacher.eval()
    def add(name, truth, targets):
        for rule, target in zip(("shift", "none"), targets):
            acc[name][f"kl_{rule}"].append(kl(truth, target))
            acc[name][f"deg_{rule}"].append(np.abs(bins.expected_angle(truth, 1) - bins.expected_angle(target, 1)).mean(-1))

    def ensemble(z):
        return ensemble_distributions(teacher, to_tensor_batch(np.stack(z)), s, p, (1,),
                                      max_windows=max_windows)["b1"].double().numpy()

    with tqdm(total=len(samples) * len(names), unit="view", desc="kd-rotation", dynamic_ncols=True) as bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start:start + batch_size]
            images = [load_rgb(x.image) for x in batch]
            cached = np.stack([cache.probs(x.key).astype(np.float64) for x in batch])
            cached /= cached.sum(-1, keepdims=True)
            expected = np.stack([cache.expected(x.key) for x in batch]).astype(np.float64)
            for name, t, flip in views:
                angles = [t if (start + i) % 2 == 0 else -t for i in range(len(batch))]
                truth = ensemble([crop_box(img, x.box, size, size, pad=p, angle_ccw=a, flip=flip)
                                  for img, x, a in zip(images, batch, angles)])
                add(name, truth, [np.stack([rule_target(c, e, flip, a, rule) for c, e, a in zip(cached, expected, angles)])
                                  for rule in ("shift", "none")])
                bar.update(len(batch))
            if stored:
                truth = ensemble([View.from_row(cache.views(cache.row(x.key))[1]).crop(img, x.box, size, size, pad=p)
                                  for img, x in zip(images, batch)])
                target = np.stack([cache.probs(x.key, view=1).astype(np.float64) for x in batch])
                add("stored view", truth, [target / target.sum(-1, keepdims=True)] * 2)
                bar.update(len(batch))
    return [{"view": name, "samples": len(samples),
             **{k: float(np.concatenate(v).mean()) for k, v in acc[name].items()}} for name in names]


def table(rows: list[dict], s: int, p: int) -> str:
    out = [f"teacher ensemble (s={s}, p={p}) on the augmented view vs the target from the cache",
           "| view | KL shift | KL none | |Δangle| shift (deg) | |Δangle| none (deg) |",
           "|---|---|---|---|---|"]
    out += [f"| {r['view']} | {r['kl_shift']:.4f} | {r['kl_none']:.4f} | {r['deg_shift']:.2f} | "
            f"{r['deg_none']:.2f} |" for r in rows]
    return "\n".join(out)


def run(params: Path = Path("params.yaml"), samples: int = 48,
        magnitudes: Sequence[float] = (0, 5, 10, 15, 30)) -> str:
    """The table for ``samples`` training samples (evenly spaced) of the distill block's cache."""
    from ..student import DistillConfig
    from ..config import ConfigError, stage_config
    from ..data import load_samples
    from ..distill import open_student_cache
    from ..files import file_sha256
    from ..model import load_checkpoint
    from ..teachers import ENSEMBLE

    cfg = stage_config("distill", DistillConfig, params)
    if cfg.teacher is None:
        raise ConfigError(f"{params}: distill.teacher must name the teacher checkpoint")
    train = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
    cache = open_student_cache(cfg.teachers[ENSEMBLE], train, file_sha256(cfg.manifest), file_sha256(cfg.teacher),
                               teacher=ENSEMBLE)
    picks = np.linspace(0, len(train) - 1, min(samples, len(train))).round().astype(int)
    teacher, _ = load_checkpoint(cfg.teacher)
    rows = measure(teacher, cache, [train[i] for i in picks], list(magnitudes))
    return table(rows, cache.meta.s, cache.meta.p)
