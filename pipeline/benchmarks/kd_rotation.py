"""``pipeline bench kd-rotation``: how well does the cached teacher answer stand in for the
teacher's answer on a rotated (or flipped) crop? The numbers behind ``distill.teacher_rotation``.

For training samples of the cache and each rotation magnitude t (sign alternating over the
samples), the teacher's convolutional ensemble (same s, p as the cache) is run on the
rotated receptive field (the Augmenter's warp: rotation about the box centre, then the
stretch; grown by p image pixels), and compared with
(a) ``shift``: the cached distribution transformed by :func:`pipeline.distill.teacher_target`,
(b) ``none``: the cached distribution as it is.
Reported: mean KL(teacher on the view || target), summed over the three angles, and the mean
|difference| of their expected angles (eq. 2) in degrees. t = 0 checks the set-up (only the
float16 rounding of the cache remains); the ``flip`` row checks the exact flip rule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .. import bins
from ..cache import TeacherCache
from ..distill import teacher_target
from ..ensemble import ensemble_distributions
from ..image import crop_box, load_rgb, to_tensor_batch
from ..manifest import Sample

KL_FLOOR = 1e-6  # targets are floored here before KL: a float16 zero must not give infinity


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) over the bins, summed over the angles: (..., 3, q) -> (...)."""
    q = np.maximum(q, KL_FLOOR)
    q = q / q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / q), 0.0).sum(axis=(-2, -1))


@torch.no_grad()
def measure(teacher: torch.nn.Module, cache: TeacherCache, samples: Sequence[Sample],
            magnitudes: Sequence[float], batch_size: int = 8, max_windows: int = 512) -> list[dict]:
    """One row per view ("rot 0", "rot ±t", "flip"): KL and angle gaps of both rules."""
    if not isinstance(teacher.input_size, int):
        raise ValueError("kd-rotation needs a square teacher input")
    s, p, size = cache.meta.s, cache.meta.p, teacher.input_size
    views = [(f"rot ±{t:g}", float(t), False) for t in magnitudes] + [("flip", 0.0, True)]
    acc = {name: {"kl_shift": [], "kl_none": [], "deg_shift": [], "deg_none": []} for name, _, _ in views}
    teacher.eval()
    with tqdm(total=len(samples) * len(views), unit="view", desc="kd-rotation", dynamic_ncols=True) as bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start:start + batch_size]
            images = [load_rgb(x.image) for x in batch]
            cached = np.stack([cache.probs(x.key).astype(np.float64) for x in batch])
            cached /= cached.sum(-1, keepdims=True)
            expected = np.stack([cache.expected(x.key) for x in batch]).astype(np.float64)
            for name, t, flip in views:
                angles = [t if (start + i) % 2 == 0 else -t for i in range(len(batch))]
                z = np.stack([crop_box(img, x.box, size, size, pad=p, angle_ccw=a, flip=flip)
                              for img, x, a in zip(images, batch, angles)])
                truth = ensemble_distributions(teacher, to_tensor_batch(z), s, p, (1,),
                                               max_windows=max_windows)["b1"].double().numpy()
                shifted = np.stack([teacher_target(c, e, flip, a, "shift") for c, e, a in zip(cached, expected, angles)])
                for rule, target in (("shift", shifted), ("none", cached)):
                    acc[name][f"kl_{rule}"].append(kl(truth, target))
                    gap = np.abs(bins.expected_angle(truth, 1) - bins.expected_angle(target, 1)).mean(-1)
                    acc[name][f"deg_{rule}"].append(gap)
                bar.update(len(batch))
    return [{"view": name, "samples": len(samples),
             **{k: float(np.concatenate(v).mean()) for k, v in acc[name].items()}} for name, _, _ in views]


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
