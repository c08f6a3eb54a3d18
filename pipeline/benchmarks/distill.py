"""``pipeline bench distill``: student training images/s, in one run, with
(a) the teacher cache (the distill stage's data path and eq. 7),
(b) hard labels only: the control ``ce`` (the same replayed views, CE of the bin-1 head),
(c) the teacher's convolutional ensemble run online on every batch at the cache's (s, p), on
    views drawn afresh with the ``views`` block's flip, rotation and box jitter (what a user
    without a cache would do): the dataset builds each view's receptive field Z and the loss
    runs the A windows.
Targets: a/b >= 0.95 (the cache costs next to nothing), a/c >= 10 at A = 49. The variants run
interleaved ``repeats`` times; medians and the range of the per-round ratios are reported.

All three use the real engine (:func:`pipeline.train.fit`, one epoch of ``steps`` batches, no
validation, the first step left out of the timing) with the distill block's student, input
size, batch, workers and augmentation; the teacher is the distill block's ``teacher``.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from ..config import ConfigError, stage_config
from ..data import PoseDataset, load_samples
from ..distill import DistillDataset, open_student_cache
from ..teachers import ENSEMBLE, MethodConfig
from ..ensemble import ensemble_distributions, num_windows
from ..image import load_rgb, to_tensor
from ..losses import distillation_loss, hard_label_loss
from ..files import file_sha256
from ..labeling import EnsembleLabelsConfig
from ..model import build_model, checkpoint_meta, load_checkpoint
from ..student import DistillConfig
from ..train import fit
from ..views import draw_views


class OnlineTeacherDataset(PoseDataset):
    """PoseDataset items plus ``"z"``: the receptive field of the augmented view (pad p)."""

    def __init__(self, samples, size, augment, seed, p: int):
        super().__init__(samples, size, augment, seed)
        self.p = p

    def __getitem__(self, item) -> dict:
        index, out = self.view(item)
        sample = self.samples[index]  # decoded a second time for Z (small next to A forward passes)
        z = out.view.crop(load_rgb(sample.image), sample.box, self.size, self.size, pad=self.p)
        return {"image": to_tensor(out.crop), "pose": torch.as_tensor(out.pose, dtype=torch.float32),
                "z": to_tensor(z.copy()), "index": index}


def online_loss(teacher, s: int, p: int, w_cls: float):
    def loss_fn(outputs, batch):
        with torch.no_grad():
            teacher.to(batch["z"].device)
            probs = ensemble_distributions(teacher, batch["z"], s, p, (1,))["b1"]  # eq. 6, per batch
        return distillation_loss(outputs, {**batch, "teacher": probs}, w_cls)
    return loss_fn


def _timed_fit(cfg, backbone, loss_fn, dataset, workers) -> dict:
    torch.manual_seed(cfg.seed)
    model = build_model(backbone, (1,), regression=False, weights=None, input_size=cfg.input_size)
    settings = replace(cfg, epochs=1, workers=workers, checkpoint_every=10 ** 9)
    with tempfile.TemporaryDirectory() as tmp:
        return fit(model, loss_fn, dataset, None, settings, tmp, Path(tmp) / "best.pt",
                   checkpoint_meta(model, {}, ""))["timing"]


def run(params: Path = Path("params.yaml"), steps: int = 20, online_steps: int = 4,
        workers: Optional[int] = None, threads: int = 0, online_sp: Optional[tuple[int, int]] = None,
        repeats: int = 3) -> dict:
    """``online_sp``: (s, p) of the online ensemble (c); default the cache's."""
    cfg = stage_config("distill", DistillConfig, params)
    cfg = replace(cfg, seed=cfg.seeds[0])
    if cfg.teacher is None:
        raise ConfigError(f"{params}: distill.teacher must name the teacher checkpoint")
    if threads:
        torch.set_num_threads(threads)
    workers = cfg.workers if workers is None else workers
    backbone = cfg.students[0]
    samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)[: (steps + 1) * cfg.batch_size]
    views = draw_views(cfg.views, [x.key for x in samples])
    cache = open_student_cache(cfg.teachers[ENSEMBLE], samples, file_sha256(cfg.manifest), file_sha256(cfg.teacher),
                               teacher=ENSEMBLE, views=views)
    s, p = online_sp or (cache.meta.s, cache.meta.p)
    a_windows = num_windows(s, p)  # validates (s, p) before any timing
    teacher, _ = load_checkpoint(cfg.teacher)
    v = cfg.views        # without a cache the views' pose augmentations are drawn afresh every step
    online_augment = replace(cfg.augment, flip=v.flip, rotate=v.rotate, box_shift=v.box_shift, box_scale=v.box_scale)
    variants = {
        "a_cache": lambda: _timed_fit(cfg, backbone, lambda o, b: distillation_loss(o, b, cfg.w_cls),
                                      DistillDataset(samples, {ENSEMBLE: cache}, views, cfg.input_size, cfg.augment,
                                                     cfg.seed), workers),
        "b_hard_labels": lambda: _timed_fit(cfg, backbone, hard_label_loss,
                                            DistillDataset(samples, {}, views, cfg.input_size, cfg.augment, cfg.seed,
                                                           method=MethodConfig(loss="ce")), workers),
        "c_online_teacher": lambda: _timed_fit(cfg, backbone, online_loss(teacher, s, p, cfg.w_cls),
                                               OnlineTeacherDataset(samples[: (online_steps + 1) * cfg.batch_size],
                                                                    cfg.input_size, online_augment, cfg.seed, p), workers),
    }
    rates, images = {name: [] for name in variants}, {}
    for _ in range(repeats):                     # interleaved: a slow spell of the machine hits every variant
        for name, fn in variants.items():
            timing = fn()
            rates[name].append(timing["images_per_s"])
            images[name] = timing["images"]
    # per full training: the distill block's epochs over every training image; the cache's one
    # labelling pass is the ensemble-labels stage's own wall time (its metrics), when it has run
    images_per_run = cfg.epochs * len(load_samples(cfg.manifest, split="train", boxes=cfg.boxes))
    labels = stage_config("ensemble_labels", EnsembleLabelsConfig, params).metrics
    labelling_s = json.loads(labels.read_text())["wall_s"] if labels.is_file() else None
    a_over_b = [x / y for x, y in zip(rates["a_cache"], rates["b_hard_labels"])]
    a_over_c = [x / y for x, y in zip(rates["a_cache"], rates["c_online_teacher"])]
    return {"student": backbone, "teacher": teacher.backbone_name, "input_size": cfg.input_size,
            "teacher_input_size": teacher.input_size, "batch_size": cfg.batch_size, "workers": workers,
            "threads": torch.get_num_threads(), "s": s, "p": p, "A": a_windows, "cache_A": cache.meta.A,
            "steps": steps, "online_steps": online_steps, "repeats": repeats,
            "images": images, "images_per_s": {name: statistics.median(v) for name, v in rates.items()},
            "a_over_b": statistics.median(a_over_b), "a_over_b_range": (min(a_over_b), max(a_over_b)),
            "a_over_c": statistics.median(a_over_c), "a_over_c_range": (min(a_over_c), max(a_over_c)),
            "full_training": {"images": images_per_run, "labelling_s": labelling_s,
                              "cache_s": images_per_run / statistics.median(rates["a_cache"]),
                              "online_s": images_per_run / statistics.median(rates["c_online_teacher"])}}


def report(r: dict) -> str:
    lines = [f"student {r['student']} @ {r['input_size']} px (fp32), teacher {r['teacher']} @ {r['teacher_input_size']} px, "
             f"online A = {r['A']} (s={r['s']}, p={r['p']}; cache A = {r['cache_A']}), batch {r['batch_size']}, "
             f"{r['workers']} workers, {r['threads']} torch threads, cpu; {r['steps']} steps ((c): "
             f"{r['online_steps']}), medians of {r['repeats']} interleaved runs"]
    lines += [f"  {name}: {rate:.1f} img/s" for name, rate in r["images_per_s"].items()]
    lo, hi = r["a_over_b_range"]
    lines.append(f"  a/b = {r['a_over_b']:.3f} (runs {lo:.3f}-{hi:.3f}; target >= 0.95)")
    lo, hi = r["a_over_c_range"]
    lines.append(f"  a/c = {r['a_over_c']:.1f}x (runs {lo:.1f}-{hi:.1f}): the cache against the online teacher, per "
                 "training step")
    full = r["full_training"]
    if full["labelling_s"] is not None:
        cache = full["labelling_s"] + full["cache_s"]
        lines.append(f"  per full training ({full['images']} images: distill.epochs x the training set): online "
                     f"teacher {full['online_s'] / 60:.1f} min; cache {cache / 60:.1f} min (labelling once "
                     f"{full['labelling_s'] / 60:.1f} min: the stage's wall_s, + training) = "
                     f"{full['online_s'] / cache:.1f}x, and every further student reuses the cache")
    return "\n".join(lines)
