"""``pipeline bench labeling``: the convolutional ensemble, three ways, same images and model.

(a) naive: crop every window's shifted box from the image with OpenCV, forward the windows
    (``--naive-batch 1``: one window per forward; 0: the A windows of an image together);
(b) the project's path: Z once per image, windows as strided views, batched across images;
(c) pure model forward on ready-made windows (the floor for (b)).
Prints a/b (target >= 5x), b/c - 1 (target <= 10%), the cache's bytes per image for the b1
head (target <= 2 KB) and KL(fp32 || fp16 as stored) (target <= 1e-4 nats).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from .. import bins
from ..cache import CacheMeta, write_cache
from ..distributed import synchronize
from ..ensemble import ensemble_distributions, num_windows, windows
from ..image import crop_box, to_tensor
from ..model import build_model

FP16_FLOOR = 2.0 ** -24  # smallest float16 subnormal: stored zeros are read as this in the KL


def _timed(fn, device, repeats):
    fn()  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def kl_fp16(probs: np.ndarray) -> tuple[float, float]:
    """Mean and max over (sample, angle) of KL(p || fp16(p)) in nats."""
    p = np.asarray(probs, np.float64)
    q = np.maximum(p.astype(np.float16).astype(np.float64), FP16_FLOOR)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0).sum(-1)
    return float(terms.mean()), float(terms.max())


def peaked(n: int, sigma: float, seed: int) -> np.ndarray:
    """Teacher-like distributions: a discretised Gaussian of width ``sigma`` degrees."""
    rng = np.random.default_rng(seed)
    c = bins.centres(1)
    mu = rng.uniform(-80, 80, (n, 3, 1))
    logits = -((c - mu) ** 2) / (2 * sigma ** 2)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def run(images: int = 8, size: int = 64, s: int = 5, p: int = 10, backbone: str = "resnet18",
        naive_batch: int = 1, max_windows: int = 256, device: str = "cpu", amp: bool = False,
        repeats: int = 2, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    model = build_model(backbone, input_size=size).eval().to(dev)
    use_amp = amp and dev.type == "cuda"
    if use_amp:
        model = model.to(memory_format=torch.channels_last)
    a = num_windows(s, p)
    imgs = [rng.integers(0, 256, (3 * size, 3 * size, 3), dtype=np.uint8) for _ in range(images)]
    boxes = [(x, y, x + size * 1.3, y + size * 1.1) for x, y in rng.uniform(size * 0.5, size, (images, 2))]
    heads = model.bin_sizes
    dtype = torch.bfloat16 if use_amp else None

    def forward(batch):
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            return model(batch.contiguous(memory_format=torch.channels_last) if use_amp else batch)

    def naive():
        out = []
        for image, (x1, y1, x2, y2) in zip(imgs, boxes):
            rx, ry = size / (x2 - x1), size / (y2 - y1)
            crops = [to_tensor(crop_box(image, (x1 + (s * j - p) / rx, y1 + (s * i - p) / ry,
                                                x2 + (s * j - p) / rx, y2 + (s * i - p) / ry),
                                        size, size))
                     for i in range(2 * p // s + 1) for j in range(2 * p // s + 1)]
            step = naive_batch or a
            acc = 0
            for k in range(0, a, step):
                logits = forward(torch.stack(crops[k:k + step]).to(dev))["b1"]
                acc = acc + torch.softmax(logits.float(), -1).sum(0)
            out.append(acc / a)
        return torch.stack(out)

    def project():
        z = torch.stack([to_tensor(crop_box(im, b, size, size, p))
                         for im, b in zip(imgs, boxes)]).to(dev)
        return ensemble_distributions(model, z, s, p, heads, max_windows=max_windows,
                                      autocast_dtype=dtype, channels_last=use_amp)

    z = torch.stack([to_tensor(crop_box(im, b, size, size, p)) for im, b in zip(imgs, boxes)])
    ready = windows(z.to(dev), size, size, s).flatten(0, 2).contiguous()
    per = max(1, max_windows // a) * a

    def pure():
        return [forward(ready[k:k + per]) for k in range(0, len(ready), per)]

    t_naive, naive_out = _timed(naive, dev, repeats)
    t_project, project_out = _timed(project, dev, repeats)
    t_pure, _ = _timed(pure, dev, repeats)
    b1 = project_out["b1"].cpu().numpy()
    agree = float((naive_out.cpu() - project_out["b1"].cpu()).abs().max())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        meta = CacheMeta("0" * 64, "0" * 64, s, p, (size, size), tuple(heads))
        write_cache(path, meta, [f"k{i:05d}" for i in range(images)], np.array(boxes),
                    bins.expected_angle(b1, 1), {bins.head_name(b): project_out[bins.head_name(b)].cpu().numpy()
                                                  for b in heads})
        with h5py.File(path, "r") as f:
            b1_bytes = f["heads/b1/prob"].id.get_storage_size() / images
        file_bytes = path.stat().st_size / images
    return {"images": images, "A": a, "size": size, "backbone": backbone, "device": str(dev),
            "amp": use_amp, "naive_batch": naive_batch or a,
            "naive_s": t_naive, "project_s": t_project, "pure_forward_s": t_pure,
            "images_per_s": images / t_project, "a_over_b": t_naive / t_project,
            "b_over_c_minus_1": t_project / t_pure - 1, "max_abs_diff_naive_vs_project": agree,
            "b1_bytes_per_image": b1_bytes, "file_bytes_per_image": file_bytes,
            "kl_fp16_model": kl_fp16(b1), "kl_fp16_peaked_sigma2": kl_fp16(peaked(256, 2.0, seed))}


def report(r: dict) -> str:
    return "\n".join([
        f"{r['images']} images x A={r['A']} windows, {r['backbone']} at {r['size']} px on "
        f"{r['device']} (amp={r['amp']}), naive batch {r['naive_batch']}",
        f"  (a) naive        {r['naive_s']:.3f} s",
        f"  (b) project      {r['project_s']:.3f} s  ({r['images_per_s']:.1f} images/s)",
        f"  (c) pure forward {r['pure_forward_s']:.3f} s",
        f"  a/b = {r['a_over_b']:.2f}x (target >= 5x); b/c - 1 = {100 * r['b_over_c_minus_1']:.1f}% "
        f"(target <= 10%); max |a - b| = {r['max_abs_diff_naive_vs_project']:.1e}",
        f"  b1 bytes/image {r['b1_bytes_per_image']:.0f} (target <= 2048); whole file "
        f"{r['file_bytes_per_image']:.0f} bytes/image (all heads)",
        f"  KL(fp32||fp16) mean/max: model {r['kl_fp16_model'][0]:.1e}/{r['kl_fp16_model'][1]:.1e}, "
        f"peaked sigma=2deg {r['kl_fp16_peaked_sigma2'][0]:.1e}/{r['kl_fp16_peaked_sigma2'][1]:.1e} "
        "nats (target <= 1e-4)"])
