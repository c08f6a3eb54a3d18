"""Regression-via-classification (RvC) binning over [-99, 99] degrees (paper section 3.2).

A head with bin size b has q = ceil(198 / b) bins per angle: 198, 99, 66, 50 for b = 1..4.
Centres are symmetric about 0, ``(k - (q - 1) / 2) * b``, so that mirroring an angle
(horizontal flip) is exactly reversing a distribution along the bin axis. For b = 1 the
centres are linspace(-98.5, 98.5, 198). For b = 4 the 50 bins span [-100, 100].
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .pose import ANGLE_LIMIT

BIN_SIZES = (1, 2, 3, 4)
RANGE = 2 * ANGLE_LIMIT  # 198 degrees


def num_bins(bin_size: int) -> int:
    if bin_size not in BIN_SIZES:
        raise ValueError(f"bin size must be one of {BIN_SIZES}, got {bin_size}")
    return math.ceil(RANGE / bin_size)


def centres(bin_size: int) -> np.ndarray:
    """Bin centres (q,) in degrees, float64."""
    q = num_bins(bin_size)
    return (np.arange(q, dtype=np.float64) - (q - 1) / 2.0) * bin_size


def head_name(bin_size: int) -> str:
    """Name of the RvC head with this bin size, as used in models and in the cache."""
    return f"b{bin_size}"


def angle_to_class(angles, bin_size: int):
    """Degrees -> bin index (same shape, int64); angles beyond the range go to the end bins."""
    q = num_bins(bin_size)
    lower = -(q * bin_size) / 2.0
    if isinstance(angles, torch.Tensor):
        idx = torch.floor((angles.double() - lower) / bin_size).long()
        return idx.clamp_(0, q - 1)
    idx = np.floor((np.asarray(angles, dtype=np.float64) - lower) / bin_size).astype(np.int64)
    return np.clip(idx, 0, q - 1)


def expected_angle(probs, bin_size: int):
    """Paper eq. 2: angle = <centres, distribution> along the last axis (probabilities)."""
    if isinstance(probs, torch.Tensor):
        c = torch.as_tensor(centres(bin_size), dtype=probs.dtype, device=probs.device)
        return probs @ c
    return np.asarray(probs, dtype=np.float64) @ centres(bin_size)


def decode_logits(logits: torch.Tensor, bin_size: int) -> torch.Tensor:
    """Eq. 2 on raw head outputs: softmax over bins, then the expectation."""
    return expected_angle(torch.softmax(logits.float(), dim=-1), bin_size)


def decode_regression(outputs: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: angle = 99 * tanh(output)."""
    return ANGLE_LIMIT * torch.tanh(outputs)


def flip_distribution(probs, angle_axis: int = -2):
    """Distribution of the mirrored image: yaw and roll reversed along the bin axis.

    ``probs`` has shape (..., 3, q) with angles in (pitch, yaw, roll) order on ``angle_axis``.
    """
    if isinstance(probs, torch.Tensor):
        out = probs.clone()
        sel = [slice(None)] * probs.dim()
        sel[angle_axis] = slice(1, 3)
        out[tuple(sel)] = torch.flip(probs[tuple(sel)], dims=[-1])
        return out
    arr = np.array(probs, copy=True)
    sel = [slice(None)] * arr.ndim
    sel[angle_axis] = slice(1, 3)
    arr[tuple(sel)] = arr[tuple(sel)][..., ::-1]
    return arr
