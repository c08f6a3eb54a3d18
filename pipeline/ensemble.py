"""The convolutional ensemble (paper section 3.3, eqs. 5-6): the one place it lives.

For an image with box (x1, y1, x2, y2) and a network input of h x w:

* Z = the box stretched to h x w and grown by p pixels on every side, the missing pixels taken
  from the image (``pipeline.image.crop_box(image, box, h, w, pad=p)``: one affine warp).
* Eq. 5: the windows R_ij = (s i, s j, s i + w, s j + h), 0 <= i, j <= 2 p / s, i.e.
  A = (2 p / s + 1)^2 crops of Z. They are strided *views* of Z (``Tensor.unfold``); the
  source image is never cropped A times and there is no Python loop over windows.
* Eq. 6: the ensemble distribution is the mean over the A windows of softmax(logits), per
  RvC head and per angle.

Because Z is a single affine warp, window (i, j) of Z equals the crop of the box shifted by
(s j - p, s i - p) network pixels, which is what the paper does; the tests check it.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import numpy as np
import torch

from . import bins
from .errors import PipelineError
from .image import crop_box

# bf16 autocast vs fp32: the largest difference of any ensemble probability that we accept
# (measured with CPU bf16: 1.6e-4 for a random tiny net, 1.4e-4 for ResNet18 at 32 px).
AUTOCAST_PROB_TOL = 2e-3


class EnsembleError(PipelineError):
    pass


def check_stride_padding(s: int, p: int) -> None:
    """s >= 1 and p in {0, s, 2s, ...} (paper: "p in {0, s, 2s, ...}")."""
    if not isinstance(s, (int, np.integer)) or s < 1:
        raise EnsembleError(f"ensemble stride s must be an integer >= 1, got {s!r}")
    if not isinstance(p, (int, np.integer)) or p < 0:
        raise EnsembleError(f"ensemble padding p must be an integer >= 0, got {p!r}")
    if p % s:
        raise EnsembleError(f"ensemble padding p={p} must be a multiple of the stride s={s} "
                            "(paper eq. 5: p in {0, s, 2s, ...})")


def num_windows(s: int, p: int) -> int:
    """A = (2 p / s + 1)^2 (paper, after eq. 5)."""
    check_stride_padding(s, p)
    return (2 * p // s + 1) ** 2


def input_hw(input_size) -> tuple[int, int]:
    """A model's ``input_size`` (int or (h, w)) as (h, w)."""
    if isinstance(input_size, (tuple, list)):
        h, w = input_size
        return int(h), int(w)
    return int(input_size), int(input_size)


def windows(z: torch.Tensor, h: int, w: int, s: int) -> torch.Tensor:
    """Eq. 5 as views: (B, C, h + 2p, w + 2p) -> (B, n, n, C, h, w), n = 2p/s + 1, no copy.

    Window [i, j] has its top-left corner at (row s i, column s j) of Z.
    """
    if z.dim() != 4:
        raise EnsembleError(f"Z must be (B, C, H, W), got shape {tuple(z.shape)}")
    if (z.shape[2] - h) % s or (z.shape[3] - w) % s:
        raise EnsembleError(f"Z of size {tuple(z.shape[2:])} does not tile into {h}x{w} "
                            f"windows with stride {s}")
    v = z.unfold(2, h, s).unfold(3, w, s)            # (B, C, ni, nj, h, w)
    return v.permute(0, 2, 3, 1, 4, 5)


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def ensemble_distributions(model: torch.nn.Module, z: torch.Tensor, s: int, p: int,
                           bin_sizes: Sequence[int], max_windows: int = 512,
                           autocast_dtype: Optional[torch.dtype] = None,
                           channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Eq. 6 for a batch of receptive fields.

    ``z``: (B, 3, h + 2p, w + 2p) ImageNet-normalised, on the model's device. Returns
    ``{head: (B, 3, q) float32}`` for every RvC head in ``bin_sizes``. Windows are fed to the
    model in forward batches of at most ``max(max_windows, A)`` windows (whole images).
    """
    num_windows(s, p)
    h, w = z.shape[2] - 2 * p, z.shape[3] - 2 * p
    views = windows(z, h, w, s)                              # (B, n, n, 3, h, w) views
    return mean_softmax(model, views, bin_sizes, max_windows, autocast_dtype, channels_last)


@torch.no_grad()
def mean_softmax(model: torch.nn.Module, windows: torch.Tensor, bin_sizes: Sequence[int], max_windows: int = 512,
                 autocast_dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Eq. 6 on given windows: (B, ..., 3, h, w), the A windows of each image in the middle
    dimensions (strided views of Z, or windows made one by one) -> ``{head: (B, 3, q)}``, the
    mean over A of each window's softmax; forward batches of whole images, at most
    ``max(max_windows, A)`` windows."""
    a = int(np.prod(windows.shape[1:-3]))
    per_forward = max(1, max_windows // a)
    heads = [bins.head_name(b) for b in bin_sizes]
    sums = {head: [] for head in heads}
    for start in range(0, windows.shape[0], per_forward):
        batch = windows[start:start + per_forward].flatten(0, windows.dim() - 4)   # one copy: (b*A, 3, h, w)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(windows.device, autocast_dtype):
            out = model(batch)
        for head in heads:
            if head not in out:
                raise EnsembleError(f"model output has no head {head!r} (has {sorted(out)})")
            prob = torch.softmax(out[head].float(), dim=-1)      # (b*A, 3, q)
            sums[head].append(prob.unflatten(0, (-1, a)).mean(dim=1))
    return {head: torch.cat(parts) for head, parts in sums.items()}


@torch.no_grad()
def window_probabilities(model: torch.nn.Module, z: torch.Tensor, s: int, p: int, head: str,
                         max_windows: int = 512) -> torch.Tensor:
    """softmax(``head``) of every window of eq. 5 without the mean of eq. 6:
    (B, n, n, 3, q) float32, window [i, j] = the box shifted by (s j - p, s i - p) pixels."""
    a = num_windows(s, p)
    n = 2 * p // s + 1
    h, w = z.shape[2] - 2 * p, z.shape[3] - 2 * p
    views = windows(z, h, w, s)
    parts = []
    for start in range(0, z.shape[0], max(1, max_windows // a)):
        batch = views[start:start + max(1, max_windows // a)].flatten(0, 2)
        prob = torch.softmax(model(batch)[head].float(), dim=-1)
        parts.append(prob.unflatten(0, (-1, n, n)))
    return torch.cat(parts)


def autocast_difference(model: torch.nn.Module, z: torch.Tensor, s: int, p: int,
                        bin_sizes: Sequence[int], dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest |prob(autocast dtype, channels_last) - prob(fp32)| over heads, angles, bins.

    Runs on any device (bf16 autocast works on CPU too); compare with AUTOCAST_PROB_TOL.
    """
    exact = ensemble_distributions(model, z, s, p, bin_sizes)
    fast = ensemble_distributions(model, z, s, p, bin_sizes, autocast_dtype=dtype,
                                  channels_last=True)
    return max(float((exact[k] - fast[k]).abs().max()) for k in exact)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions in hardware (CUDA from Ampere on; CPUs with
    AVX512-BF16 or AMX, through oneDNN). Elsewhere bf16 autocast is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def choose_precision(model: torch.nn.Module, z: torch.Tensor, s: int, p: int, bin_sizes: Sequence[int],
                     requested: str = "auto", tol: float = AUTOCAST_PROB_TOL) -> tuple[str, str]:
    """("bf16" or "fp32", why) for the ensemble of ``model`` on ``z``'s device.

    ``requested``: "fp32"; "bf16" (an EnsembleError if bf16 autocast moves a probability of the
    ensemble of any image of ``z`` by more than ``tol`` against fp32); "auto": bf16 where the
    device has it in hardware (:func:`native_bf16`) and it passes that check, else fp32."""
    if requested == "fp32":
        return "fp32", "fp32 (asked)"
    if requested == "auto" and not native_bf16(z.device):
        return "fp32", f"fp32 ({z.device.type} has no hardware bf16)"
    diff = autocast_difference(model, z, s, p, bin_sizes, torch.bfloat16)
    if diff <= tol:
        return "bf16", f"bf16 autocast (largest probability change {diff:.1e} <= {tol:.0e} against fp32)"
    if requested == "bf16":
        raise EnsembleError(f"bf16 autocast changes ensemble probabilities by {diff:.2e} > {tol:.0e} "
                            "(fp32 reference); use precision fp32 or auto")
    return "fp32", f"fp32 (bf16 autocast moved a probability by {diff:.1e} > {tol:.0e})"
