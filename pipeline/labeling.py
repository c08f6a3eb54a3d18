"""The convolutional ensemble over many images (paper section 3.3), and the labelling job
(DVC stage ``ensemble-labels``) that writes it into one teacher cache.

:func:`ensemble_batches` is the one loop over a dataset, shared by the labelling job, the
(s, p) grid (:mod:`pipeline.ensemble_grid`) and the evaluation: images are decoded and their
receptive fields Z built in DataLoader workers (one warp per image, with the largest p asked);
the model runs the A windows of each Z as strided views on the device
(:mod:`pipeline.ensemble`), for every (s, p) asked on the centre of Z; it yields the per-head
ensemble distributions of each batch. :func:`ensemble_predictions` turns them into angles.

The labelling job (:func:`label_training_set`, :func:`label_samples`) labels every training
sample with one teacher (stage ``ensemble-labels``: the ensemble; ``base-labels``: the single
crop, A = 1): finished chunks go to :class:`pipeline.cache.CacheBuilder`, so the job resumes after a
crash. Under ``torchrun`` every rank labels every world_size-th chunk and rank 0 merges: the
file equals the single-process one byte for byte. Single process:
``pipeline run-stage ensemble-labels``; several GPUs (or CPU processes):
``torchrun --nproc-per-node N -m pipeline run-stage ensemble-labels``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Iterator, Literal, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import bins, distributed
from .cache import CacheBuilder, CacheError, CacheMeta, open_cache
from .config import FromBlock, FromPaths, NonEmpty, NonNegative, Positive
from .data import load_samples, samples_sha256
from .distributed import DistContext, check_device
from .errors import PipelineError
from .ensemble import check_stride_padding, choose_precision, ensemble_distributions, input_hw, mean_softmax
from .augment import View, photometric
from .image import ImageError, check_box, load_rgb, to_tensor, to_tensor_batch
from .manifest import Sample
from .files import file_sha256
from .model import checkpoint_sha256, load_checkpoint
from .stage_metrics import RATE, write_stage_metrics
from .views import ViewsConfig, draw_views, replayed_chain


@dataclass(frozen=True, kw_only=True)
class EnsembleLabelsConfig:
    """The ``ensemble_labels`` block: teacher "ensemble", the convolutional ensemble."""
    name: str = "ensemble"          # the teacher's name in the cache (attrs ``teacher``)
    role: str = "stronger teacher: the convolutional ensemble of the stage-1 network (eq. 6)"   # attrs ``role``
    s: Positive = 5                 # ensemble stride (eq. 5)
    p: NonNegative = 15             # ensemble padding, a multiple of s (eq. 5)
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]   # relabel boxes CSV; null = the manifest's boxes
    checkpoint: Annotated[Path, FromPaths("teacher")]
    out: Annotated[Path, FromPaths("teachers.ensemble")]
    batch_size: Positive = 16       # images per DataLoader batch
    chunk_size: Positive = 256      # images per resumable part
    max_windows: Positive = 512     # windows per forward pass (whole images)
    num_workers: NonNegative = 2
    device: str = "auto"            # auto|cpu|cuda; auto = cuda:LOCAL_RANK when available, else cpu
    # auto: bf16 autocast where the device has it in hardware (CUDA, AVX512-BF16/AMX CPUs) and it
    # moves no probability by more than 2e-3 against fp32 on the first 32 images; fp32 for comparison
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    heads: Annotated[tuple[Positive, ...], NonEmpty()] = (1,)   # RvC heads stored (students read b1)
    # the R views labelled per image (the params file's `views` block, shared by every teacher and student)
    views: Annotated[ViewsConfig, FromBlock("views")] = field(default_factory=ViewsConfig)
    metrics: Path = Path("metrics/ensemble-labels.json")        # images, precision, rate, bytes, wall time
    force: bool = False             # label even if `out` is complete and current (by hand: --set)

    def __post_init__(self):
        check_stride_padding(self.s, self.p)
        check_device(self.device)


@dataclass(frozen=True, kw_only=True)
class BaseLabelsConfig(EnsembleLabelsConfig):
    """The ``base_labels`` block: teacher "base", the same network on the box alone (s = 1,
    p = 0: A = 1 window, the Base row of table 5). Its own stage and output, so relabelling
    one teacher never rewrites the other; it costs about 1/A of the ensemble's forward passes."""
    name: str = "base"
    role: str = "weaker teacher: the stage-1 network on the box alone (one window)"
    s: Positive = 1
    p: NonNegative = 0
    out: Annotated[Path, FromPaths("teachers.base")]
    metrics: Path = Path("metrics/base-labels.json")


class LabelingError(PipelineError):
    pass


PRECISION_CHECK_IMAGES = 32   # bf16 must pass the 2e-3 check on all of them (the job's first images)


class ReceptiveFieldDataset(Dataset):
    """Item i -> (i, Z tensor (R, 3, h+2p, w+2p) ImageNet-normalised: the receptive field of
    each view of sample i (``views`` (N, R, 6), :mod:`pipeline.views`; None: the plain crop,
    R = 1), error message or ""). With ``chain`` (replayed photometric views) the item holds the
    ensemble's windows instead, (R, A, 3, h, w) at stride ``s``, each put through ``chain`` with
    its view's seed: the same pixels as the student's crop for the centre window."""

    def __init__(self, samples: Sequence[Sample], h: int, w: int, p: int, views: Optional[np.ndarray] = None,
                 chain=None, s: int = 1):
        self.samples, self.h, self.w, self.p, self.chain, self.s = list(samples), h, w, p, chain, s
        if views is not None and len(views) != len(self.samples):
            raise LabelingError(f"{len(views)} rows of views for {len(self.samples)} samples")
        self.views = views

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            image = load_rgb(sample.image)
            box = check_box(sample.box, image.shape[1], image.shape[0], where=sample.key)
        except ImageError as exc:  # reported by the main process, not deep in a worker
            return i, None, f"{sample.key}: {exc}"
        rows = [(*View().row(), -1)] if self.views is None else self.views[i]
        if self.chain is None:
            return i, torch.stack([to_tensor(View.from_row(r).crop(image, box, self.h, self.w, pad=self.p))
                                   for r in rows]), ""
        return i, torch.stack([self._windows(image, box, r) for r in rows]), ""

    def _windows(self, image: np.ndarray, box, row) -> torch.Tensor:
        """(A, 3, h, w): the windows of eq. 5 of one view's Z, each through the photometric chain
        seeded by the view (none for a negative seed)."""
        z = View.from_row(row).crop(image, box, self.h, self.w, pad=self.p)
        n, seed = 2 * self.p // self.s + 1, int(row[-1])
        cut = [z[self.s * i:self.s * i + self.h, self.s * j:self.s * j + self.w] for i in range(n) for j in range(n)]
        if seed >= 0:
            cut = [photometric(self.chain, np.ascontiguousarray(c), seed) for c in cut]
        return to_tensor_batch(np.stack(cut))


def collate_fields(items):
    errors = [err for _, _, err in items if err]
    if errors:
        return None, None, errors
    return (torch.tensor([i for i, _, _ in items]), torch.stack([z for _, z, _ in items]), [])


Point = tuple[int, int]  # (s, p)


def index_batches(n: int, batch_size: int) -> list[list[int]]:
    """0..n-1 in order, in batches of ``batch_size`` (the last one shorter)."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def receptive_fields(samples: Sequence[Sample], hw: tuple[int, int], p: int,
                     batches: Sequence[Sequence[int]], device: torch.device, num_workers: int = 0,
                     views: Optional[np.ndarray] = None, chain=None, s: int = 1
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(idx, Z on device)`` for every batch of ``batches``: Z (B R, 3, h + 2p, w + 2p), the R
    views of each sample in turn (``views``, ``chain``, ``s``: see :class:`ReceptiveFieldDataset`;
    with a chain, the windows (B R, A, 3, h, w)), decoded and warped in DataLoader workers; a
    sample whose image cannot be decoded is a LabelingError naming it."""
    h, w = hw
    loader = DataLoader(ReceptiveFieldDataset(samples, h, w, p, views, chain, s), batch_sampler=batches,
                        num_workers=num_workers, collate_fn=collate_fields,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    for idx, z, errors in loader:
        if errors:
            raise LabelingError(f"{len(errors)} bad samples in a batch, e.g. {errors[0]}")
        yield idx, z.flatten(0, 1).to(device, non_blocking=True)


def ensemble_batches(model: torch.nn.Module, samples: Sequence[Sample], points: Sequence[Point],
                     bin_sizes: Sequence[int], batches: Sequence[Sequence[int]], hw: tuple[int, int],
                     device: torch.device, num_workers: int = 0, max_windows: int = 512,
                     bf16: bool = False, channels_last: bool = False, desc: str = "", progress: bool = True,
                     views: Optional[np.ndarray] = None, chain=None
                     ) -> Iterator[tuple[torch.Tensor, dict[Point, dict[str, torch.Tensor]]]]:
    """The ensemble (eq. 6) of ``model`` (ready on ``device``, eval mode) over the views of ``samples``.

    Yields, for every batch of ``batches`` (lists of indices into ``samples``), in order:
    ``(idx, {(s, p): {"bK": (B, R, 3, q) float32 on device}})`` for each point and head of
    ``bin_sizes``, R the views per sample (``views`` (N, R, 6), :mod:`pipeline.views`; None:
    the plain crop, R = 1). Z is built once per view with the largest p of ``points`` (input ``hw``);
    the Z of a smaller p is its centre. With ``chain`` (views with replayed photometric seeds:
    one point only) the windows are made one by one, each through the chain (see
    :class:`ReceptiveFieldDataset`). A sample whose image cannot be decoded is a
    LabelingError naming it. ``bf16``: bf16 autocast (chosen and checked by the caller:
    :func:`pipeline.ensemble.choose_precision`); ``channels_last``: windows in the memory
    layout of a channels_last model (2x faster on CPU, measured)."""
    h, w = hw
    p_max = max(p for _, p in points)
    r = 1 if views is None else views.shape[1]
    if chain is not None and len(points) != 1:
        raise LabelingError("replayed photometric views are labelled at one (s, p) at a time")
    autocast = torch.bfloat16 if bf16 else None
    with tqdm(total=sum(len(b) for b in batches), unit="img", desc=desc,
              disable=not progress, dynamic_ncols=True) as bar:
        for idx, z in receptive_fields(samples, hw, p_max, batches, device, num_workers, views, chain,
                                       points[0][0]):
            probs = {}
            for s, p in points:
                if chain is not None:          # z: the windows, already cut
                    out = mean_softmax(model, z, bin_sizes, max_windows, autocast, channels_last)
                else:
                    centre = z[:, :, p_max - p:p_max + p + h, p_max - p:p_max + p + w]
                    out = ensemble_distributions(model, centre, s, p, bin_sizes, max_windows=max_windows,
                                                 autocast_dtype=autocast, channels_last=channels_last)
                probs[(s, p)] = {head: prob.unflatten(0, (-1, r)) for head, prob in out.items()}
            bar.update(len(idx))
            yield idx, probs


@torch.no_grad()
def ensemble_predictions(model, samples: Sequence[Sample], points: Sequence[Point], batch_size: int,
                         num_workers: int, device: torch.device, max_windows: int, desc: str = "") -> dict:
    """(s, p) -> (N, 3) degrees: eq. 2 on the ensemble distribution (eq. 6) of the b1 head."""
    b = min(model.bin_sizes)
    head = bins.head_name(b)
    preds = {sp: torch.zeros((len(samples), 3), dtype=torch.float64) for sp in points}
    model = model.to(device).eval()
    for idx, probs in ensemble_batches(model, samples, points, (b,), index_batches(len(samples), batch_size),
                                       input_hw(model.input_size), device, num_workers, max_windows,
                                       desc=desc):
        for sp in points:
            preds[sp][idx] = bins.expected_angle(probs[sp][head][:, 0].double().cpu(), b)
    return {sp: pred.numpy() for sp, pred in preds.items()}


def _all_ok(ok: bool, ctx: DistContext) -> bool:
    """True on every rank when ``ok`` is true on every rank (the flag lives on ``ctx.device``:
    nccl only reduces tensors on this rank's own GPU)."""
    if ctx.world_size == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class Labelled(NamedTuple):
    path: Optional[Path]      # the cache (rank 0; None on the other ranks)
    labelled: int             # images labelled by this call (0: the cache was complete and current)
    seconds: float
    precision: str


def label_training_set(cfg: EnsembleLabelsConfig) -> Optional[Path]:
    """The ensemble-labels job: every training sample of the manifest (with its box from
    ``cfg.boxes`` when set) through the teacher checkpoint into ``cfg.out``, and ``cfg.metrics``;
    returns the path on rank 0 (None on the other ranks)."""
    samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
    model, _ = load_checkpoint(cfg.checkpoint)
    absent = sorted(set(cfg.heads) - set(model.bin_sizes))
    if absent:
        raise LabelingError(f"ensemble_labels.heads: {cfg.checkpoint} has no head b{absent[0]} "
                            f"(its heads: {[bins.head_name(b) for b in model.bin_sizes]})")
    meta = CacheMeta(teacher=cfg.name, role=cfg.role, teacher_sha256=checkpoint_sha256(cfg.checkpoint),
                     manifest_sha256=file_sha256(cfg.manifest), samples_sha256=samples_sha256(samples),
                     s=cfg.s, p=cfg.p,
                     input_size=input_hw(model.input_size), bin_sizes=tuple(sorted(cfg.heads)))
    done = label_samples(samples, model, cfg.out, meta, batch_size=cfg.batch_size,
                         chunk_size=cfg.chunk_size, num_workers=cfg.num_workers,
                         device=cfg.device, precision=cfg.precision, max_windows=cfg.max_windows,
                         force=cfg.force, views=cfg.views)
    if done.path is None:
        return None
    if done.labelled or not cfg.metrics.is_file():   # a cache kept as it was keeps its metrics
        rate = done.labelled / done.seconds if done.labelled and done.seconds else 0.0
        write_stage_metrics(cfg.metrics, {RATE: rate}, done.seconds)   # precision, bytes: the cache's attrs
    print(f"{done.path}: teacher {cfg.name!r}, {len(samples)} training samples, {cfg.views.count} views each, "
          f"A={meta.A} windows per view, {done.precision}")
    return done.path


def _is_current(path: Path, meta: CacheMeta, keys: Sequence[str]) -> bool:
    if not path.is_file():
        return False
    try:
        cache = open_cache(path)
    except CacheError:  # damaged or foreign: label it again
        return False
    return cache.meta == meta and cache.keys == list(keys)


def _first_fields(samples: Sequence[Sample], meta: CacheMeta, dev: torch.device) -> torch.Tensor:
    """Z (B, 3, h + 2p, w + 2p) of the plain crops of the first PRECISION_CHECK_IMAGES samples
    (the precision check: one image is not enough, bf16's error varies from image to image)."""
    h, w = meta.input_size
    fields = ReceptiveFieldDataset(samples[:PRECISION_CHECK_IMAGES], h, w, meta.p)
    items = [fields[i] for i in range(len(fields))]
    errors = [error for _, _, error in items if error]
    if errors:
        raise LabelingError(errors[0])
    return torch.cat([z for _, z, _ in items]).to(dev)


def label_samples(samples: Sequence[Sample], model: torch.nn.Module, out_path: str | Path,
                  meta: CacheMeta, batch_size: int = 16, chunk_size: int = 256,
                  num_workers: int = 0, device: str = "cpu", precision: str = "auto",
                  max_windows: int = 512, progress: bool = True, force: bool = False,
                  views: ViewsConfig = ViewsConfig()) -> Labelled:
    """Label every view (:func:`pipeline.views.draw_views` of ``views``) of every sample (sorted
    by key, each with a box) into the cache at ``out_path``;
    unless ``force``, a complete cache at ``out_path`` with the same provenance (teacher,
    manifest, samples with their boxes and image bytes, s, p, input size, views, precision, code
    version) and keys is kept as it is, as DVC would (a stage run by hand).

    ``samples`` should come from :func:`pipeline.data.load_samples` (which checks that the
    images exist); an image that cannot be decoded is reported by key and path.
    ``device`` is "auto", "cpu" or "cuda" (:func:`pipeline.distributed.pick_device`); under
    torchrun each rank uses cuda:LOCAL_RANK.

    ``precision`` ("auto", "fp32", "bf16") is decided on the first PRECISION_CHECK_IMAGES images
    (:func:`pipeline.ensemble.choose_precision`; under torchrun bf16 only if every rank chose
    it), recorded in the cache (``precision``) and part of the job's identity. The model runs
    channels_last in both precisions.
    """
    check_stride_padding(meta.s, meta.p)
    samples = sorted(samples, key=lambda s: s.key)
    if not samples:
        raise LabelingError(f"{out_path}: no samples to label")
    meta = dataclasses.replace(meta, views=views.count, views_config=views.describe())
    view_rows = draw_views(views, [s.key for s in samples])
    start = time.perf_counter()
    ctx = distributed.setup(device)
    rank, world, dev = ctx.rank, ctx.world_size, ctx.device
    model = model.to(dev).eval().to(memory_format=torch.channels_last)
    chosen, why = choose_precision(model, _first_fields(samples, meta, dev), meta.s, meta.p, meta.bin_sizes,
                                   precision)
    bf16 = _all_ok(chosen == "bf16", ctx)
    meta = dataclasses.replace(meta, precision="bf16" if bf16 else "fp32")
    if rank == 0:
        print(f"{meta.teacher} labels: " + (why if bf16 or chosen == "fp32" else "fp32 (another rank failed the bf16 check)"))
    if not force and _is_current(Path(out_path), meta, [s.key for s in samples]):
        if rank == 0:
            print(f"{out_path}: complete and current (same teacher, samples, boxes, images, s, p, "
                  "precision); nothing to label (to relabel: --set ensemble_labels.force=true)")
        return Labelled(Path(out_path) if rank == 0 else None, 0, time.perf_counter() - start, meta.precision)
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
        labelled = sum(len(builder.chunk_keys(c)) for c in builder.pending())   # by all ranks (counted before any starts)
        distributed.barrier(ctx)
        _label_chunks(builder, samples, view_rows, replayed_chain(views), builder.pending(rank, world), model,
                      dev, meta, batch_size, num_workers, bf16, max_windows, progress and rank == 0)
        distributed.barrier(ctx)
        path = builder.finish() if rank == 0 else None
        return Labelled(path, labelled, time.perf_counter() - start, meta.precision)
    finally:
        builder.release()
        distributed.barrier(ctx)


def _label_chunks(builder: CacheBuilder, samples, view_rows, chain, pending, model, dev, meta, batch_size,
                  num_workers, bf16, max_windows, show_progress) -> None:
    # batches never cross a chunk boundary, so a chunk is written as soon as it is done
    batches, chunk_of_batch = [], []
    for c in pending:
        start, stop = c * builder.chunk_size, min((c + 1) * builder.chunk_size, len(samples))
        for b in range(start, stop, batch_size):
            batches.append(list(range(b, min(b + batch_size, stop))))
            chunk_of_batch.append(c)
    heads = [bins.head_name(b) for b in meta.bin_sizes]
    point = (meta.s, meta.p)
    current, acc, done = None, None, 0
    for (idx, probs), chunk in zip(ensemble_batches(model, samples, [point], meta.bin_sizes, batches,
                                                    meta.input_size, dev, num_workers, max_windows,
                                                    bf16=bf16, channels_last=True,
                                                    desc=f"ensemble A={meta.A} x {meta.views} views {meta.precision}",
                                                    progress=show_progress, views=view_rows, chain=chain),
                                   chunk_of_batch):
        if chunk != current:
            current, acc, done = chunk, {"idx": [], **{k: [] for k in heads}}, 0
        acc["idx"].append(idx.numpy())
        for k in heads:
            acc[k].append(probs[point][k].cpu().numpy())
        done += len(idx)
        if done == len(builder.chunk_keys(chunk)):
            idx_all = np.concatenate(acc["idx"])
            boxes = np.array([samples[i].box for i in idx_all], dtype=np.float32)
            builder.write_part(chunk, boxes, view_rows[idx_all], {k: np.concatenate(acc[k]) for k in heads})
