"""The labelling job: the convolutional ensemble over many images into one teacher cache.

Images are decoded and their receptive fields Z built in DataLoader workers (one warp per
image); the model runs the A windows of each Z as strided views on the device
(:mod:`pipeline.ensemble`); finished chunks go to :class:`pipeline.cache.CacheBuilder`, so
the job resumes after a crash. Under ``torchrun`` every rank labels every world_size-th
chunk and rank 0 merges: the file equals the single-process one byte for byte.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import bins, distributed
from .cache import CacheBuilder, CacheError, CacheMeta
from .distributed import DistContext
from .errors import PipelineError
from .ensemble import check_autocast, check_stride_padding, ensemble_distributions
from .image import ImageError, check_box, crop_box, load_rgb, to_tensor
from .manifest import Sample


class LabelingError(PipelineError):
    pass


class ReceptiveFieldDataset(Dataset):
    """Item i -> (i, Z tensor (3, h+2p, w+2p) ImageNet-normalised, error message or "")."""

    def __init__(self, samples: Sequence[Sample], h: int, w: int, p: int):
        self.samples, self.h, self.w, self.p = list(samples), h, w, p

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            image = load_rgb(sample.image)
            box = check_box(sample.box, image.shape[1], image.shape[0], where=sample.key)
        except ImageError as exc:  # reported by the main process, not deep in a worker
            return i, None, f"{sample.key}: {exc}"
        return i, to_tensor(crop_box(image, box, self.h, self.w, pad=self.p)), ""


def collate_fields(items):
    errors = [err for _, _, err in items if err]
    if errors:
        return None, None, errors
    return (torch.tensor([i for i, _, _ in items]), torch.stack([z for _, z, _ in items]), [])


def _all_ok(ok: bool, ctx: DistContext) -> bool:
    """True on every rank when ``ok`` is true on every rank (the flag lives on ``ctx.device``:
    nccl only reduces tensors on this rank's own GPU)."""
    if ctx.world_size == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def label_samples(samples: Sequence[Sample], model: torch.nn.Module, out_path: str | Path,
                  meta: CacheMeta, batch_size: int = 16, chunk_size: int = 256,
                  num_workers: int = 0, device: str = "cpu", amp: bool = True,
                  max_windows: int = 512, progress: bool = True) -> Optional[Path]:
    """Label every sample (sorted by key, each with a box) into the cache at ``out_path``.

    ``samples`` should come from :func:`pipeline.data.load_samples` (which checks that the
    images exist); an image that cannot be decoded is reported by key and path.
    ``device`` is "auto", "cpu" or "cuda" (:func:`pipeline.distributed.pick_device`); under
    torchrun each rank uses cuda:LOCAL_RANK.

    Returns the path on rank 0 (None on other ranks). ``amp`` means bf16 autocast and
    channels_last on CUDA, checked against fp32 on the first batch; ignored on CPU. The
    precision used is recorded in the cache (``precision``) and is part of the job's identity.
    """
    check_stride_padding(meta.s, meta.p)
    samples = sorted(samples, key=lambda s: s.key)
    if not samples:
        raise LabelingError(f"{out_path}: no samples to label")
    ctx = distributed.setup(device)
    rank, world, dev = ctx.rank, ctx.world_size, ctx.device
    use_amp = amp and dev.type == "cuda"
    meta = dataclasses.replace(meta, precision="bf16" if use_amp else "fp32")
    model = model.to(dev).eval()
    if use_amp:
        model = model.to(memory_format=torch.channels_last)
    h, w = meta.input_size
    builder = CacheBuilder(out_path, meta, [s.key for s in samples], chunk_size, lock=False)
    error = None
    if rank == 0:
        try:
            builder.acquire()
        except CacheError as exc:
            error = exc
    if not _all_ok(error is None, ctx):
        raise error or LabelingError(f"{out_path}: rank 0 could not take the cache lock")
    try:
        distributed.barrier(ctx)
        pending = builder.pending(rank, world)
        _label_chunks(builder, samples, pending, model, dev, h, w, meta, batch_size,
                      num_workers, use_amp, max_windows, progress and rank == 0)
        distributed.barrier(ctx)
        return builder.finish() if rank == 0 else None
    finally:
        builder.release()
        distributed.barrier(ctx)


def _label_chunks(builder: CacheBuilder, samples, pending, model, dev, h, w, meta, batch_size,
                  num_workers, use_amp, max_windows, show_progress) -> None:
    # batches never cross a chunk boundary, so a chunk is written as soon as it is done
    batches, chunk_of_batch = [], []
    for c in pending:
        start, stop = c * builder.chunk_size, min((c + 1) * builder.chunk_size, len(samples))
        for b in range(start, stop, batch_size):
            batches.append(list(range(b, min(b + batch_size, stop))))
            chunk_of_batch.append(c)
    loader = DataLoader(ReceptiveFieldDataset(samples, h, w, meta.p), batch_sampler=batches,
                        num_workers=num_workers, collate_fn=collate_fields,
                        pin_memory=dev.type == "cuda", persistent_workers=False)
    heads = [bins.head_name(b) for b in meta.bin_sizes]
    total = sum(len(b) for b in batches)
    checked = not use_amp
    current, acc, done = None, None, 0
    with tqdm(total=total, unit="img", desc=f"ensemble A={meta.A}",
              disable=not show_progress, dynamic_ncols=True) as bar:
        for (idx, z, errors), chunk in zip(loader, chunk_of_batch):
            if errors:
                raise LabelingError(f"{len(errors)} bad samples in a batch, e.g. {errors[0]}")
            if chunk != current:
                current, acc, done = chunk, {"idx": [], **{k: [] for k in heads}}, 0
            z = z.to(dev, non_blocking=True)
            if not checked:
                check_autocast(model, z[:1], meta.s, meta.p, meta.bin_sizes)
                checked = True
            probs = ensemble_distributions(model, z, meta.s, meta.p, meta.bin_sizes,
                                           max_windows=max_windows,
                                           autocast_dtype=torch.bfloat16 if use_amp else None,
                                           channels_last=use_amp)
            acc["idx"].append(idx.numpy())
            for k in heads:
                acc[k].append(probs[k].cpu().numpy())
            bar.update(len(idx))
            done += len(idx)
            if done == len(builder.chunk_keys(chunk)):
                idx_all = np.concatenate(acc["idx"])
                boxes = np.array([samples[i].box for i in idx_all], dtype=np.float32)
                builder.write_part(chunk, boxes, {k: np.concatenate(acc[k]) for k in heads})
