"""``pipeline bench labeling``: the labelling job against what it must cost at least, on the
trained teacher and real training images (run ``dvc repro`` first).

Same teacher, images, windows per forward pass (the job's: ``ensemble_labels.batch_size``
images, at most ``max_windows`` windows), threads and device, in each precision the device offers (fp32; bf16 where native), the model channels_last:

(a) crops: what a user would write: each of the A shifted boxes cropped from the decoded image
    with the training crop code, the windows of several images forwarded together (same
    batches as (b));
(b) views: Z warped once per image, the A windows as strided views (:mod:`pipeline.ensemble`);
(c) forward: the model alone on ready-made windows, the floor of (b) and (d);
(d) job: the ensemble-labels job end to end on the same images (decoded from disk in DataLoader
    workers, precision check, cache written).

The variants run interleaved ``repeats`` times; medians and (min, max) are reported. The cache:
bytes per image of what a student reads (b1 float16, byte shuffle + gzip) against the same rows
uncompressed and against all four heads, the random-row read time of each through the
project's reader, and KL(fp32 || stored) on these real teacher outputs, renormalised as the
student reads them. All per view (R = 1 here); the stage's file holds R views per image.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import h5py
import numpy as np
import torch

from .. import bins
from ..cache import CacheMeta, open_cache, write_cache
from ..config import ConfigError, stage_config
from ..data import load_samples
from ..ensemble import (AUTOCAST_PROB_TOL, autocast_difference, ensemble_distributions, input_hw, native_bf16,
                        num_windows, windows)
from ..image import crop_box, load_rgb, to_tensor
from ..labeling import PRECISION_CHECK_IMAGES, EnsembleLabelsConfig, label_samples
from ..model import load_checkpoint
from ..views import ViewsConfig, draw_views

READ_ROWS = 4096          # rows of the read-time files (real rows tiled): 16 chunks, as on real data
READS = 512               # random rows read per timing


def _median(times: Sequence[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def _shifted_box(box, s: int, p: int, i: int, j: int, h: int, w: int) -> tuple:
    """The box of window [i, j] of eq. 5: shifted by (s j - p, s i - p) crop pixels."""
    x1, y1, x2, y2 = box
    dx, dy = (s * j - p) * (x2 - x1) / w, (s * i - p) * (y2 - y1) / h
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def _kl(exact: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """KL(exact || stored) per (sample, angle), nats; a probability float16 stored as zero is
    floored at 1e-12 (the KL stays finite and still shows the loss)."""
    p, q = np.asarray(exact, np.float64), np.maximum(np.asarray(stored, np.float64), 1e-12)
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0).sum(-1)


def _read_time(path: Path, keys: Sequence[str], rng: np.random.Generator) -> float:
    cache = open_cache(path)
    picks = rng.choice(len(keys), READS, replace=False)
    start = time.perf_counter()
    for i in picks:
        cache.probs(keys[i], 1)
    return (time.perf_counter() - start) / READS


def _row_bytes(path: Path) -> int:
    """Stored bytes of the per-row datasets (keys, distributions, angles, boxes): the file less
    its fixed part (header, attributes, bin centres)."""
    sizes = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: sizes.append(obj.id.get_storage_size())
                     if isinstance(obj, h5py.Dataset) and not name.endswith("centres") else None)
    return sum(sizes)


def _write(path: Path, meta: CacheMeta, rows: dict[str, np.ndarray], compress: bool) -> list[str]:
    n = len(next(iter(rows.values())))
    keys = [f"300W_LP/HELEN/HELEN_{i:06d}" for i in range(n)]      # key length of the real datasets
    m = CacheMeta(meta.teacher_sha256, meta.manifest_sha256, meta.s, meta.p, meta.input_size,
                  tuple(int(h[1:]) for h in rows))
    plain = draw_views(ViewsConfig(count=1), keys)                  # R = 1: the plain crop
    write_cache(path, m, keys, np.zeros((n, 4), np.float32), plain, bins.expected_angle(rows["b1"], 1)[:, None],
                {h: v[:, None] for h, v in rows.items()}, compress=compress)
    return keys


def cache_measures(probs: dict[str, np.ndarray], meta: CacheMeta, repeats: int, seed: int = 0) -> dict:
    """Bytes per image (of the real rows ``probs``) and random-row read time (``probs`` tiled to
    READ_ROWS rows: with at least CHUNK_ROWS images no chunk holds a copy of another row) of the
    b1 head compressed / uncompressed and of all heads; KL(fp32 || stored) of ``probs["b1"]``."""
    rng = np.random.default_rng(seed)
    n = len(probs["b1"])
    layouts = {"b1 gzip": (("b1",), True), "b1 uncompressed": (("b1",), False),
               "all heads gzip": (tuple(probs), True)}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (heads, compress) in layouts.items():
            path = Path(tmp) / f"{name.replace(' ', '-')}.h5"
            _write(path, meta, {h: probs[h] for h in heads}, compress)
            out[name] = {"bytes_per_image": _row_bytes(path) / n}
        cache = open_cache(Path(tmp) / "b1-gzip.h5")
        stored = np.stack([cache.probs(k, 1) for k in cache.keys]).astype(np.float64)
        stored /= stored.sum(-1, keepdims=True)                    # as the student reads them
        tiled = np.tile(probs["b1"], (-(-READ_ROWS // n), 1, 1))[:READ_ROWS]
        times = {name: [] for name in ("b1 gzip", "b1 uncompressed")}
        keys = {name: _write(Path(tmp) / f"read-{name.replace(' ', '-')}.h5", meta, {"b1": tiled},
                             layouts[name][1]) for name in times}
        for _ in range(repeats):                  # interleaved
            for name in times:
                times[name].append(_read_time(Path(tmp) / f"read-{name.replace(' ', '-')}.h5", keys[name], rng))
        for name, t in times.items():
            out[name]["read_s"] = _median(t)
    kl = _kl(probs["b1"], stored)
    return {"files": out, "kl_mean": float(kl.mean()), "kl_max": float(kl.max())}


def run(params: Path = Path("params.yaml"), images: int = 768, s: Optional[int] = None,
        p: Optional[int] = None, repeats: int = 3, device: str = "cpu") -> dict:
    cfg = stage_config("ensemble_labels", EnsembleLabelsConfig, params)
    s, p = s or cfg.s, p if p is not None else cfg.p
    a = num_windows(s, p)                                    # checks (s, p)
    if not cfg.checkpoint.is_file():
        raise ConfigError(f"{cfg.checkpoint}: no teacher checkpoint; run `dvc repro` first "
                          "(the benchmark measures the trained teacher on the training images)")
    samples = sorted(load_samples(cfg.manifest, split="train", boxes=cfg.boxes), key=lambda x: x.key)[:images]
    dev = torch.device(device)
    model, _ = load_checkpoint(cfg.checkpoint, map_location=dev)
    model = model.eval().to(memory_format=torch.channels_last)
    h, w = input_hw(model.input_size)
    decoded = [load_rgb(x.image) for x in samples]
    # images per forward pass, as the job runs them: its DataLoader batches, split by max_windows
    per_forward = min(cfg.batch_size, max(1, cfg.max_windows // a))
    groups = [range(i, min(i + per_forward, len(samples))) for i in range(0, len(samples), per_forward)]
    z_all = torch.stack([to_tensor(crop_box(im, x.box, h, w, pad=p)) for im, x in zip(decoded, samples)])
    ready = windows(z_all, h, w, s).flatten(0, 2).contiguous(memory_format=torch.channels_last)
    precisions = ["fp32", "bf16"] if native_bf16(dev) else ["fp32"]

    def forward(batch: torch.Tensor, bf16: bool) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return torch.softmax(model(batch.contiguous(memory_format=torch.channels_last).to(dev))["b1"].float(), -1)

    def crops(bf16: bool) -> torch.Tensor:
        out = []
        for group in groups:
            batch = torch.stack([to_tensor(crop_box(decoded[k], _shifted_box(samples[k].box, s, p, i, j, h, w), h, w))
                                 for k in group for i in range(2 * p // s + 1) for j in range(2 * p // s + 1)])
            out.append(forward(batch, bf16).unflatten(0, (-1, a)).mean(1))
        return torch.cat(out)

    def views(bf16: bool) -> torch.Tensor:
        out = []
        for group in groups:
            z = torch.stack([to_tensor(crop_box(decoded[k], samples[k].box, h, w, pad=p)) for k in group]).to(dev)
            out.append(ensemble_distributions(model, z, s, p, (1,), max_windows=cfg.max_windows,
                                              autocast_dtype=torch.bfloat16 if bf16 else None,
                                              channels_last=True)["b1"])
        return torch.cat(out)

    def pure(bf16: bool) -> None:
        for k in range(0, len(ready), per_forward * a):
            forward(ready[k:k + per_forward * a], bf16)

    tmp = tempfile.TemporaryDirectory()
    meta = CacheMeta("0" * 64, "0" * 64, s, p, (h, w), (1,))

    def job(precision: str) -> Callable[[], None]:
        def labelled() -> None:
            with contextlib.redirect_stdout(io.StringIO()):   # the job's own log lines
                label_samples(samples, model, Path(tmp.name) / "job.h5", meta, batch_size=cfg.batch_size,
                              chunk_size=cfg.chunk_size, num_workers=cfg.num_workers, device=device,
                              precision=precision, max_windows=cfg.max_windows, progress=False, force=True)
        return labelled

    # the job refuses bf16 where it fails its check (auto falls back to fp32): time what it would run
    bf16_change = (autocast_difference(model, z_all[:PRECISION_CHECK_IMAGES], s, p, (1,))
                   if "bf16" in precisions else None)
    variants = {(prec, name): fn for prec in precisions for name, fn in
                (("a_crops", lambda b=prec == "bf16": crops(b)), ("b_views", lambda b=prec == "bf16": views(b)),
                 ("c_forward", lambda b=prec == "bf16": pure(b)), ("d_job", job(prec)))
                if name != "d_job" or prec == "fp32" or bf16_change <= AUTOCAST_PROB_TOL}
    for fn in variants.values():
        fn()                                                 # warm-up
    times = {key: [] for key in variants}
    for _ in range(repeats):                                 # interleaved
        for key, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    tmp.cleanup()
    with torch.no_grad():
        exact = {f"b{b}": ensemble_distributions(model, z_all, s, p, (b,), max_windows=cfg.max_windows,
                                                 channels_last=True)[bins.head_name(b)].cpu().numpy()
                 for b in model.bin_sizes}
        agree = float((crops(False) - views(False)).abs().max())
    timing = {f"{prec} {name}": _median(t) for (prec, name), t in times.items()}
    windows_total = len(samples) * a
    return {"images": len(samples), "A": a, "s": s, "p": p, "input_size": [h, w],
            "backbone": model.backbone_name, "device": str(dev), "threads": torch.get_num_threads(),
            "workers": cfg.num_workers, "windows_per_forward": per_forward * a, "repeats": repeats,
            "precisions": precisions, "timing": timing,
            "windows_per_s": {k: windows_total / v["median"] for k, v in timing.items()},
            "max_abs_diff_crops_vs_views": agree, "bf16_max_prob_change": bf16_change,
            "cache": cache_measures(exact, meta, repeats),
            "stage_cache_bytes_per_image": (cfg.out.stat().st_size / len(load_samples(cfg.manifest, split="train"))
                                            if cfg.out.is_file() else None)}


def report(r: dict) -> str:
    lines = [f"{r['images']} training images x A={r['A']} (s={r['s']}, p={r['p']}), teacher {r['backbone']} at "
             f"{r['input_size'][0]} px, {r['device']}, {r['threads']} torch threads, {r['workers']} DataLoader "
             f"workers (job), {r['windows_per_forward']} windows per forward pass, channels_last; "
             f"medians of {r['repeats']} interleaved runs (min-max)"]
    for prec in r["precisions"]:
        t = {name: r["timing"][f"{prec} {name}"] for name in ("a_crops", "b_views", "c_forward", "d_job")
             if f"{prec} {name}" in r["timing"]}
        lines.append(f"  {prec}:")
        for name, v in t.items():
            lines.append(f"    ({name[0]}) {name[2:]:<8} {v['median']:.3f} s ({v['min']:.3f}-{v['max']:.3f}), "
                         f"{r['windows_per_s'][f'{prec} {name}']:.0f} windows/s")
        job = (f"job / forward - 1 = {100 * (t['d_job']['median'] / t['c_forward']['median'] - 1):+.1f}% "
               "(target <= +10%)" if "d_job" in t else "(d) not run: this teacher fails the job's bf16 check")
        lines.append(f"    crops / views (a/b) = {t['a_crops']['median'] / t['b_views']['median']:.2f}x; "
                     f"views / forward - 1 = {100 * (t['b_views']['median'] / t['c_forward']['median'] - 1):+.1f}%; "
                     + job)
    if "bf16" in r["precisions"]:
        f, b = r["timing"]["fp32 c_forward"]["median"], r["timing"]["bf16 c_forward"]["median"]
        lines.append(f"  bf16 forward / fp32 forward speed = {f / b:.2f}x; largest probability change on the "
                     f"first {PRECISION_CHECK_IMAGES} images {r['bf16_max_prob_change']:.1e} (the job's check: "
                     f"<= {AUTOCAST_PROB_TOL:.0e})")
    lines.append(f"  crops and views agree to {r['max_abs_diff_crops_vs_views']:.1e} (fp32)")
    c = r["cache"]
    for name, v in c["files"].items():
        read = f", random-row read {1e6 * v['read_s']['median']:.0f} us" if "read_s" in v else ""
        lines.append(f"  cache {name}: {v['bytes_per_image']:.0f} bytes/image{read}")
    if r["stage_cache_bytes_per_image"]:
        lines.append(f"  the stage's cache file: {r['stage_cache_bytes_per_image']:.0f} bytes/image")
    lines.append(f"  KL(fp32 || stored, renormalised) on the teacher's outputs: mean {c['kl_mean']:.1e}, "
                 f"max {c['kl_max']:.1e} nats (target <= 1e-6)")
    return "\n".join(lines)
