"""The training engine (Adam, paper section 5.2), shared by stage 1 and by distillation.

``fit(model, loss_fn, train_set, val_set, settings, ...)`` takes any loss with the signature
of :mod:`pipeline.losses` and any dataset whose items are dicts with "image" and "pose"
(plus whatever the loss reads). It gives:

* determinism for a seed: the order of an epoch comes from (seed, epoch); augmentation from
  (seed, epoch, index); the global batch of step k is the same for any number of processes;
* resume: ``<state_dir>/last.pt`` (model, optimizer, epoch, step, best, RNG, history, timing)
  is written atomically every ``checkpoint_every`` steps and at each epoch end. A rerun with
  the same identity (:func:`run_identity`: config less RESUME_FREE, manifest, samples with
  their boxes and image bytes, initial weights, training code) continues from it, or does
  nothing if it is finished; anything else trains afresh and says what changed;
* the best checkpoint by validation MAE of the prediction head: ``<state_dir>/best.pt``,
  copied to ``best_path`` at the end (so a rerun of a finished run re-exports it);
* DDP under ``torchrun`` (:mod:`pipeline.distributed`); rank 0 validates, saves and logs;
* DVCLive metrics per epoch, a tqdm bar (images, loss, MAE, rate, ETA), and the split of
  step time into waiting for data and computing.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from . import bins
from .config import FromPaths, AtLeast, Fraction, NonNegative, Positive, PositiveFloat, check_fields
from .distributed import DistContext, barrier, setup, synchronize
from .errors import PipelineError
from .files import atomic_path, atomic_write_bytes
from .metrics import mae_summary, predict_dataset
from .model import HeadPoseNet

LossFn = Callable[[dict, dict], tuple[torch.Tensor, dict]]
# config keys that may change between an interrupted run and its resumption
RESUME_FREE = frozenset({"epochs", "workers", "device", "checkpoint_every"})  # epochs: see _saved_state
# modules whose change makes an interrupted run's state stale
TRAINING_CODE_MODULES = ("augment", "bins", "data", "image", "losses", "model", "pose", "train")


def code_fingerprint(modules: Sequence[str] = TRAINING_CODE_MODULES) -> str:
    """sha256 over the source of the modules (of this package) that decide what training computes."""
    h = hashlib.sha256()
    for name in modules:
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class TrainingStageConfig:
    """The params keys shared by the train-teacher and distill blocks (each stage subclasses
    it): the data a run reads and the settings :func:`fit` uses."""
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]   # relabel stage's boxes CSV; null: the manifest's boxes
    weights: str = "none"                 # none | imagenet | path of a weights file
    input_size: Annotated[int, AtLeast(16)] = 64   # pixels
    val_fraction: Fraction = 0.1
    val_group: Literal["subject", "key"] = "subject"   # what the held-out slice keeps together
    epochs: Positive = 8
    batch_size: Positive = 32    # global batch, split evenly over the DDP processes
    lr: PositiveFloat = 1e-3
    seed: NonNegative = 0
    workers: NonNegative = 1     # DataLoader worker processes per training process
    checkpoint_every: Positive = 50   # steps between 'last' checkpoints (also at every epoch end)
    device: str = "auto"         # auto | cpu | cuda

    def __post_init__(self):
        check_fields(self)       # the constraints above (also when built in code, not from params)


class EpochBatches(Sampler):
    """Batches of ``(epoch, index)`` for one process. The epoch's permutation comes from
    (seed, epoch); step k's global batch is perm[k*G:(k+1)*G] (G = global batch, last partial
    batch dropped) and rank r takes its r-th slice, so any world size sees the same data.
    Unlike DistributedSampler it can start mid-epoch (resume)."""

    def __init__(self, size: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by {world_size} processes")
        if size < global_batch:
            raise ValueError(f"{size} training samples are fewer than one batch of {global_batch}")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = global_batch // world_size
        self.steps = size // global_batch
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start = epoch, start_step

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        for step in range(self.start, self.steps):
            lo = step * self.global_batch + self.rank * self.per_rank
            yield [(self.epoch, int(i)) for i in perm[lo:lo + self.per_rank]]


class TrainingStateError(PipelineError):
    pass


def _save(path: Path, payload: dict) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def run_identity(meta: dict, code: str) -> dict:
    """Everything that decides a run's weights except the number of epochs: the config (less
    RESUME_FREE), the manifest, the content of the inputs (samples with their boxes and image
    bytes, initial weights: ``meta["inputs"]``) and the training code."""
    return {**{f"config.{k}": v for k, v in meta["config"].items() if k not in RESUME_FREE},
            "manifest_sha256": meta["manifest_sha256"], "inputs": meta.get("inputs"), "code": code}


def _saved_state(state_path: Path, meta: dict, code: str, epochs: int, device
                 ) -> tuple[Optional[dict], str]:
    """(the saved run to continue, or to keep if finished, or None to train afresh; why).

    A saved run is continued only when that is exactly what a fresh run would compute: the
    same identity, and no more epochs done than asked (the learning rate does not depend on
    ``epochs``, so training on from epoch k equals a longer run)."""
    if not state_path.is_file():
        return None, ""
    try:
        last = torch.load(state_path, map_location=device, weights_only=True)
        saved = run_identity(last["meta"], last["code"])
    except Exception as exc:
        raise TrainingStateError(f"{state_path}: unreadable training state ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); delete it to train afresh") from None
    wanted = run_identity(meta, code)
    differs = sorted(k for k in wanted.keys() | saved.keys() if wanted.get(k) != saved.get(k))
    if differs:
        return None, f"{state_path}: the saved run had other {', '.join(differs)}; training afresh"
    if last["epoch"] > epochs:
        return None, f"{state_path}: the saved run trained {last['epoch']} epochs, {epochs} asked; training afresh"
    if last["epoch"] == epochs:
        return last, f"{state_path}: this run is finished ({epochs} epochs, same inputs); nothing to train"
    return last, f"resuming from {state_path}: epoch {last['epoch']}, step {last['step']}"


def _replay(live, history: Sequence[dict]) -> None:
    """Log the epochs of ``history`` to a fresh DVCLive run (its files are outputs that DVC
    removes before a rerun; a resumed or finished run rewrites them whole)."""
    for record in history:
        for key, value in record.items():
            if key != "epoch":
                live.log_metric(key.replace("_", "/", 1), value)
        live.next_step()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def fit(model: HeadPoseNet, loss_fn: LossFn, train_set, val_set, settings: TrainingStageConfig,
        state_dir: str | Path, best_path: str | Path, meta: dict, live_dir: Optional[str | Path] = None,
        ctx: Optional[DistContext] = None, on_step: Optional[Callable[[int], None]] = None,
        code_modules: Sequence[str] = TRAINING_CODE_MODULES) -> dict:
    """Train ``model`` with Adam; returns a summary (best MAE/epoch, history, timing).

    ``meta`` (from :func:`pipeline.model.checkpoint_meta`) goes into every checkpoint and,
    with the source of ``code_modules``, decides whether a saved run is continued
    (:func:`run_identity`). A finished run with the same identity is not trained again: its
    best checkpoint, DVCLive history and timing are written out as they were.
    ``on_step(global_step)`` is called after each optimizer step (tests use it to simulate a kill)."""
    ctx = ctx or setup(settings.device)
    state_path, state_best = Path(state_dir) / "last.pt", Path(state_dir) / "best.pt"
    code = code_fingerprint(code_modules)
    model.to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    state = {"epoch": 0, "step": 0, "global_step": 0, "best_mae": float("inf"), "best_epoch": -1,
             "history": [], "timing": {"data_wait_s": 0.0, "compute_s": 0.0, "images": 0}}
    last, why = _saved_state(state_path, meta, code, settings.epochs, ctx.device)
    if last is not None:
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        torch.set_rng_state(last["torch_rng"].cpu())
        state = {k: last[k] for k in state}
    if why and ctx.is_main:
        print(why)

    def save_last() -> None:
        if ctx.is_main:
            _save(state_path, {"model": model.state_dict(), "meta": meta, "code": code,
                               "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                               **state})

    live = None
    if ctx.is_main and live_dir is not None:
        from dvclive import Live
        live = Live(dir=str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)
        _replay(live, state["history"])
    if state["epoch"] < settings.epochs:
        _train(model, loss_fn, train_set, val_set, settings, optimizer, state, save_last,
               state_best, meta, live, ctx, on_step)
    if live is not None:
        live.end()
    if ctx.is_main and Path(best_path).resolve() != state_best.resolve():
        with atomic_path(best_path) as tmp:
            shutil.copyfile(state_best, tmp)
    timing = state["timing"]
    wall = timing["data_wait_s"] + timing["compute_s"]
    return {"best_val_mae": state["best_mae"], "best_epoch": state["best_epoch"],
            "history": state["history"],
            "timing": {**timing, "train_s": wall, "images_per_s": timing["images"] / wall if wall else 0.0,
                       "data_wait_share": timing["data_wait_s"] / wall if wall else 0.0}}


def _train(model, loss_fn, train_set, val_set, settings, optimizer, state, save_last, state_best,
           meta, live, ctx, on_step) -> None:
    """Epochs ``state["epoch"]`` .. ``settings.epochs - 1``, updating ``state`` in place."""
    net = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) \
        if ctx.world_size > 1 else model
    batches = EpochBatches(len(train_set), settings.batch_size, settings.seed, ctx.rank, ctx.world_size)
    loader = DataLoader(train_set, batch_sampler=batches, num_workers=settings.workers,
                        persistent_workers=settings.workers > 0, pin_memory=ctx.device.type == "cuda")
    head, head_bin = model.prediction_head, model.bin_sizes[0]
    timing = state["timing"]
    steps_this_call = 0
    images_per_step = batches.per_rank * ctx.world_size
    for epoch in range(state["epoch"], settings.epochs):
        batches.set_epoch(epoch, state["step"])
        net.train()
        sums: dict[str, float] = {}  # rank 0's running sums of the loss, its parts and the MAE
        n_steps = 0
        bar = tqdm(total=batches.steps * images_per_step, initial=state["step"] * images_per_step,
                   unit="img", desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not ctx.is_main,
                   dynamic_ncols=True)
        tick = time.perf_counter()
        for batch in loader:
            batch = _to_device(batch, ctx.device)
            synchronize(ctx.device)
            got_data = time.perf_counter()
            outputs = net(batch["image"])
            loss, parts = loss_fn(outputs, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            mae = float((bins.decode_logits(outputs[head].detach(), head_bin) - batch["pose"]).abs().mean())
            synchronize(ctx.device)
            done = time.perf_counter()
            if steps_this_call:  # the first step (worker start-up, allocations) is warm-up
                timing["data_wait_s"] += got_data - tick
                timing["compute_s"] += done - got_data
                timing["images"] += images_per_step
            steps_this_call += 1
            state["step"] += 1
            state["global_step"] += 1
            loss_value = float(loss.detach())
            if not np.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {state['global_step']} "
                                         f"(epoch {epoch + 1}); try a lower lr")
            for key, value in {"loss": loss_value, "mae": mae, **parts}.items():
                sums[key] = sums.get(key, 0.0) + value
            n_steps += 1
            bar.update(images_per_step)
            bar.set_postfix(loss=f"{loss_value:.3f}", mae=f"{mae:.2f}", refresh=False)  # redraw at tqdm's pace
            if state["global_step"] % settings.checkpoint_every == 0:
                state["epoch"] = epoch
                save_last()
            if on_step is not None:
                on_step(state["global_step"])
            tick = time.perf_counter()
        bar.close()
        record = {"epoch": epoch + 1, **{f"train_{k}": v / n_steps for k, v in sums.items()}}
        if ctx.is_main:
            _validate_and_keep_best(model, val_set, record, state, state_best, meta, ctx.device)
            if live is not None:
                _replay(live, [record])
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()
                                                      if k in ("train_loss", "train_mae", f"val_{head}_mae")))
        state["epoch"], state["step"] = epoch + 1, 0
        save_last()
        barrier(ctx)


def _validate_and_keep_best(model, val_set, record: dict, state: dict, state_best: Path, meta: dict,
                            device) -> None:
    """Add the validation MAE per head to ``record``; save the model if it is the best so far
    (without a validation set the last epoch wins)."""
    head = model.prediction_head
    val_mae = float("nan")
    has_val = val_set is not None and len(val_set) > 0
    if has_val:
        preds, poses = predict_dataset(model, val_set, device=device)
        for name, pred in preds.items():
            for angle, value in mae_summary(pred, poses).items():
                record[f"val_{name}_{angle}"] = value
        val_mae = record[f"val_{head}_mae"]
    if not has_val or val_mae <= state["best_mae"]:
        state["best_mae"], state["best_epoch"] = val_mae, record["epoch"]
        _save(state_best, {"model": model.state_dict(),
                           "meta": {**meta, "epoch": record["epoch"], "val_mae": val_mae}})
    state["history"].append(record)
