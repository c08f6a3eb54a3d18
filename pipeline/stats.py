"""The statistics behind the report's claims: is row A's MAE below row B's on a test set, beyond
what the choice of test images and of training seeds could do?

Input per row: per-image errors, shape (seeds, images), each image's error being the mean of
|prediction - truth| over (pitch, yaw, roll); rows trained once (Base, Ensemble: one teacher)
have one seed. The two rows of a claim are paired: the same test images in the same order.

Method: a paired, hierarchical percentile bootstrap of the relative change of the mean MAE,
100 (MAE_A - MAE_B) / MAE_B. Each resample draws the test images with replacement (the same
draw for both rows, so per-image difficulty cancels) and, independently per row, that row's
seeds with replacement (so seed-to-seed spread widens the interval). The interval is the
(1 - level)/2 and (1 + level)/2 percentiles. Verdict on the claim "A < B": "holds" if the
whole interval is below 0, "fails" if it is above 0, "within noise" otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BLOCK = 200   # resamples per vectorised block (memory: BLOCK x seeds x images floats per row)


def per_image_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 3) predictions and truths in degrees -> (N,) mean absolute error over the angles."""
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 2 or pred.shape[1] != 3:
        raise ValueError(f"expected two (N, 3) arrays, got {pred.shape} and {truth.shape}")
    return np.abs(pred - truth).mean(axis=1)


def verdict(low: float, high: float) -> str:
    """The claim "row < baseline": holds (interval below 0), fails (above 0) or within noise."""
    return "holds" if high < 0 else "fails" if low > 0 else "within noise"


@dataclass(frozen=True)
class Comparison:
    """One claim "``row`` < ``baseline``" on one test set: the MAEs, the change and its interval."""
    row: str
    baseline: str
    mae_row: float             # mean over seeds and images
    mae_baseline: float
    difference: float          # mae_row - mae_baseline, degrees
    relative: float            # percent of mae_baseline; negative = row better
    low: float                 # interval of `relative`, percent
    high: float
    level: float
    seeds_row: int
    seeds_baseline: int
    per_seed_relative: tuple[float, ...]   # each row seed against the baseline mean
    verdict: str

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else
                    [round(x, 4) for x in v] if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def _check(errors, name: str) -> np.ndarray:
    """``errors`` as a float (seeds, images) array, or a ValueError naming the row."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 1:
        raise ValueError(f"{name}: expected per-image errors of shape (seeds, images), got {e.shape}")
    if e.shape[1] < 2:
        raise ValueError(f"{name}: at least 2 test images are needed, got {e.shape[1]}")
    if not np.isfinite(e).all() or (e < 0).any():
        raise ValueError(f"{name}: errors must be finite and non-negative (absolute errors)")
    return e


def _resampled_means(errors: np.ndarray, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean error of each resample: (R, N) image draws, the row's seeds drawn per resample."""
    per_seed = errors[:, images].mean(axis=2)                    # (seeds, R)
    k, r = per_seed.shape
    if k == 1:
        return per_seed[0]
    seeds = rng.integers(0, k, size=(r, k))                      # k seeds drawn with replacement
    return per_seed[seeds, np.arange(r)[:, None]].mean(axis=1)


def compare(errors_row, errors_baseline, row: str = "row", baseline: str = "baseline",
            resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Comparison:
    """The paired hierarchical bootstrap of the module docstring for "``row`` < ``baseline``".

    ``errors_row`` and ``errors_baseline``: per-image errors, shape (seeds, images), same images
    in the same order. Resamples are drawn in blocks of ``BLOCK`` (memory stays at
    BLOCK x seeds x images floats per row); the same ``seed`` gives the same result.
    """
    a, b = _check(errors_row, row), _check(errors_baseline, baseline)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{row} and {baseline} must be measured on the same images, "
                         f"got {a.shape[1]} and {b.shape[1]}")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples >= 1, got {level}, {resamples}")
    mae_a, mae_b = float(a.mean()), float(b.mean())
    if mae_b <= 0:
        raise ValueError(f"{baseline}: mean error must be positive to compare relatively, got {mae_b}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    stats = []
    for start in range(0, resamples, BLOCK):
        images = rng.integers(0, n, size=(min(BLOCK, resamples - start), n))
        mean_a, mean_b = _resampled_means(a, images, rng), _resampled_means(b, images, rng)
        stats.append(100.0 * (mean_a - mean_b) / mean_b)
    low, high = np.percentile(np.concatenate(stats), [50 * (1 - level), 50 * (1 + level)])
    return Comparison(row=row, baseline=baseline, mae_row=mae_a, mae_baseline=mae_b,
                      difference=mae_a - mae_b, relative=100.0 * (mae_a - mae_b) / mae_b,
                      low=float(low), high=float(high), level=level,
                      seeds_row=a.shape[0], seeds_baseline=b.shape[0],
                      per_seed_relative=tuple(float(100.0 * (m - mae_b) / mae_b) for m in a.mean(axis=1)),
                      verdict=verdict(float(low), float(high)))
