"""Stage 2 of the paper (section 3.4): train a student from the teacher cache with eq. 7 (DVC
stage ``distill``, one per student run: dvc.yaml ``matrix`` over ``distill.students`` and
``distill.seeds``; a run is ``<backbone>-seed<k>``).

Student = a network of the given backbone (:mod:`pipeline.backbones`) with ONE RvC head of bin size 1 (no regression head).
Target = the cached ensemble distribution, flipped/rotated with the crop
(:mod:`pipeline.distill`); the teacher is never run. The cache is checked against the
manifest, the keys, the boxes and (if ``teacher`` is set) the teacher checkpoint. Training is
:func:`pipeline.train.fit` (validation slice, resume, DVCLive, torchrun); the checkpoint meta
records the cache's sha256 and attributes. Outs per run: ``<checkpoint_dir>/<run>.pt``,
``<state_dir>/<run>/``, ``<report_dir>/<run>.json`` (every number) and ``<metrics_dir>/<run>.json``
(its headline for `dvc metrics show`), ``<live_dir>/<run>/``.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import torch

from .augment import AugmentConfig
from .cache import TeacherCache
from .config import FromPaths, ConfigError, NonEmpty, NonNegative, NonNegativeFloat, as_dict
from .data import PoseDataset, holdout_split, load_samples, samples_sha256
from .distill import DistillDataset, RotationRule, open_student_cache
from .distributed import barrier, setup, teardown
from .losses import distillation_loss
from .files import file_sha256, write_json
from .metrics import evaluate
from .stage_metrics import write_stage_metrics
from .backbones import check_backbone
from .model import build_model, checkpoint_meta, load_checkpoint, weights_fingerprint
from .train import TRAINING_CODE_MODULES, TrainingStageConfig, fit

STUDENT_BIN = 1


@dataclass(frozen=True, kw_only=True)
class DistillConfig(TrainingStageConfig):
    students: tuple[str, ...] = ("resnet18",)      # one DVC stage per (backbone, seed) (matrix)
    # training seeds of every student; `seed` is set from these per run (the report's statistics
    # need several: issue 11). A run is named <backbone>-seed<k> (checkpoint, metrics, state).
    seeds: Annotated[tuple[NonNegative, ...], NonEmpty()] = (0,)
    seed: Optional[NonNegative] = None             # set per run from `seeds` (not a params key)
    cache: Annotated[Path, FromPaths("cache")]
    teacher: Annotated[Optional[Path], FromPaths("teacher")]   # checked against the cache; null: not checked
    w_cls: NonNegativeFloat = 0.05                 # eq. 7 weight of the ground-truth CE
    # how the cached target follows a rotated crop; only used when augment.rotate > 0. Measured
    # (`pipeline bench kd-rotation`, embedded data): the shifted target is further from the
    # teacher's own answer on rotated crops than the unshifted one, so by default the KD stage
    # does not rotate (targets exact up to the flip rule) and "none" is the better fallback.
    teacher_rotation: RotationRule = "none"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(rotate=0.0))
    checkpoint_dir: Annotated[Path, FromPaths("students")]
    state_dir: Path = Path("checkpoints/students-state")
    report_dir: Path = Path("outputs/distill")
    metrics_dir: Path = Path("metrics/distill")
    live_dir: Path = Path("dvclive/distill")

    def __post_init__(self):
        if not self.students:
            raise ValueError("students: expected at least one backbone")
        for backbone in self.students:
            check_backbone(backbone, "students")
        if self.seed is not None and self.seed not in self.seeds:
            raise ValueError(f"seed: {self.seed} is not one of seeds {list(self.seeds)} "
                             "(set distill.seeds; each run takes its seed from it)")
        if self.augment.box_shift or self.augment.box_scale:
            raise ValueError("augment.box_shift / box_scale: must be 0 for students: the cached "
                             "teacher labels are for the exact box (pipeline/augment.py)")

    def runs(self) -> list[tuple[str, int]]:
        """(backbone, seed) of every student run, backbones first."""
        return [(backbone, seed) for backbone in self.students for seed in self.seeds]

    def checkpoint(self, backbone: str, seed: int) -> Path:
        return self.checkpoint_dir / f"{run_name(backbone, seed)}.pt"

    def checkpoints(self) -> dict[tuple[str, int], Path]:
        """(backbone, seed) -> checkpoint of every student run."""
        return {run: self.checkpoint(*run) for run in self.runs()}


def run_name(backbone: str, seed: int) -> str:
    """The name of one student run, also the dvc.yaml matrix item: ``<backbone>-seed<k>``."""
    return f"{backbone}-seed{seed}"


def parse_run(item: str, cfg: DistillConfig) -> list[tuple[str, int]]:
    """A run-stage item: ``<backbone>-seed<k>`` (one run) or ``<backbone>`` (all its seeds)."""
    backbone, sep, seed = item.rpartition("-seed")
    if not sep:
        backbone, runs = item, [(item, k) for k in cfg.seeds]
    elif not seed.isdigit():
        raise ConfigError(f"distill: bad run {item!r}: expected <backbone> or <backbone>-seed<k>")
    else:
        runs = [(backbone, int(seed))]
    if backbone not in cfg.students:
        raise ConfigError(f"distill: student {backbone!r} is not in distill.students {list(cfg.students)}")
    missing = [k for _, k in runs if k not in cfg.seeds]
    if missing:
        raise ConfigError(f"distill: seed {missing[0]} is not in distill.seeds {list(cfg.seeds)}")
    return runs


def cache_provenance(cache: TeacherCache) -> dict:
    """What the student checkpoint records about its teacher labels."""
    m = cache.meta
    return {"path": str(cache.path), "sha256": file_sha256(cache.path), "teacher_sha256": m.teacher_sha256,
            "manifest_sha256": m.manifest_sha256, "s": m.s, "p": m.p, "A": m.A,
            "input_size": list(m.input_size), "bin_sizes": list(m.bin_sizes),
            "convention": m.convention, "code_version": m.code_version, "schema_version": m.schema_version}


def distill(cfg: DistillConfig, backbone: str, seed: Optional[int] = None, on_step=None) -> Optional[dict]:
    """Train one student run (``seed``: one of ``cfg.seeds``, default the first); returns its
    metrics on rank 0 (None on other ranks)."""
    seed = cfg.seeds[0] if seed is None else seed
    (backbone, seed), = parse_run(run_name(backbone, seed), cfg)
    cfg = dataclasses.replace(cfg, seed=seed)
    name = run_name(backbone, seed)
    ctx = setup(cfg.device)
    try:
        manifest_sha = file_sha256(cfg.manifest)
        samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
        teacher_sha = file_sha256(cfg.teacher) if cfg.teacher is not None else None
        samples_sha = samples_sha256(samples)
        cache = open_student_cache(cfg.cache, samples, manifest_sha, teacher_sha, STUDENT_BIN, samples_sha)
        train_samples, val_samples = holdout_split(samples, cfg.val_fraction, cfg.val_group)
        train_set = DistillDataset(train_samples, cache, cfg.input_size, cfg.augment, cfg.seed,
                                   cfg.teacher_rotation, STUDENT_BIN)
        val_set = PoseDataset(val_samples, cfg.input_size)
        provenance = cache_provenance(cache)
        if ctx.is_main:
            print(f"distill {name}: {len(train_samples)} train, {len(val_samples)} validation samples; "
                  f"teacher labels {cfg.cache} (A={provenance['A']}, s={provenance['s']}, p={provenance['p']})")
        torch.manual_seed(cfg.seed)
        model = build_model(backbone, (STUDENT_BIN,), regression=False, weights=cfg.weights,
                            input_size=cfg.input_size)
        # `students` and `seeds` are left out: adding a run must not disturb the others (resume key)
        config = {**{k: v for k, v in as_dict(cfg).items() if k not in ("students", "seeds")},
                  "student": backbone}
        inputs = {"samples_sha256": samples_sha, "weights": weights_fingerprint(cfg.weights),
                  "teacher_cache_sha256": provenance["sha256"]}
        meta = {**checkpoint_meta(model, config, manifest_sha, inputs), "teacher_cache": provenance}
        loss = functools.partial(distillation_loss, w_cls=cfg.w_cls, head=f"b{STUDENT_BIN}")
        # this module wires the student, eq. 7 and the cached targets: its source is part of the run's identity
        summary = fit(model, loss, train_set, val_set, cfg, cfg.state_dir / name,
                      cfg.checkpoint(backbone, seed), meta, cfg.live_dir / name, ctx, on_step,
                      code_modules=TRAINING_CODE_MODULES + ("distill", "cache", "student"))
        barrier(ctx)
        if not ctx.is_main:
            return None
        best, _ = load_checkpoint(cfg.checkpoint(backbone, seed), map_location=ctx.device)
        test_samples = load_samples(cfg.manifest, split="test", boxes=cfg.boxes)
        report = {"student": backbone, "seed": seed, "best_epoch": summary["best_epoch"],
                   "val": {"mae": summary["best_val_mae"]},
                   "test": evaluate(best, test_samples, device=ctx.device) if test_samples else {},
                   "timing": summary["timing"],
                   "checkpoint_sha256": file_sha256(cfg.checkpoint(backbone, seed)),
                   "teacher_cache": provenance}
        write_json(cfg.report_dir / f"{name}.json", report)
        # wall time: the training loop's, kept in the state (a finished run re-run reports the same)
        write_stage_metrics(cfg.metrics_dir / f"{name}.json", report,
                            ("best_epoch", "val.mae", f"test.*.{best.prediction_head}.mae", "timing.images_per_s"),
                            summary["timing"]["train_s"])
        print(f"distill {name}: best epoch {report['best_epoch']}, validation MAE {report['val']['mae']:.2f}")
        return report
    finally:
        teardown(ctx)


def distill_students(cfg: DistillConfig, item: Optional[str] = None) -> Optional[dict] | list:
    """``item`` (the dvc.yaml matrix item ``<backbone>-seed<k>``): that run's metrics;
    ``<backbone>``: all its seeds; None: every run of ``cfg``, in turn (lists of metrics)."""
    runs = cfg.runs() if item is None else parse_run(item, cfg)
    results = [distill(cfg, backbone, seed) for backbone, seed in runs]
    return results[0] if item is not None and len(runs) == 1 else results
