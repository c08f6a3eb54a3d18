"""Stage 2 of the paper (section 3.4): train a student from teacher caches (DVC stage
``distill``, one per student run: dvc.yaml ``matrix`` over ``distill.students``,
``distill.methods`` and ``distill.seeds``; a run is ``<backbone>-<method>-seed<k>``).

Student = a network of the given backbone (:mod:`pipeline.backbones`) with ONE RvC head of bin size 1 (no regression head).
Method (``distill.method.<name>``, :mod:`pipeline.teachers`): eq. 7 against one teacher's
cached distribution (``kd``, the paper), ODKD's ordered primary-then-senior teachers
(``odkd``), KD-Loss with a tough and a tolerant teacher (``kdloss``), or the hard-label
control (``ce``: eq. 7's ground-truth term alone, the same views and schedule). The student
replays its caches' views, each target the teacher's answer on that view (:mod:`pipeline.distill`);
no teacher is ever run. Each cache read is checked against the manifest, the keys, the boxes,
the views, its teacher name and (if ``teacher`` is set) the teacher checkpoint. Training is
:func:`pipeline.train.fit` (validation slice, resume, DVCLive, torchrun); the checkpoint meta
records each cache's sha256 and attributes. Outs per run: ``<checkpoint_dir>/<run>.pt``,
``<state_dir>/<run>/``, ``<report_dir>/<run>.json`` (every number) and ``<metrics_dir>/<run>.json``
(its headline for `dvc metrics show`), ``<live_dir>/<run>/``.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NamedTuple, Optional

import torch

from . import bins
from .augment import AugmentConfig
from .cache import TeacherCache
from .config import FromBlock, FromPaths, ConfigError, NonEmpty, NonNegative, NonNegativeFloat, as_dict
from .data import PoseDataset, holdout_split, load_samples, samples_sha256
from .distill import DistillDataset, open_student_cache
from .distributed import barrier, setup, teardown
from .losses import assistive_distillation_loss, distillation_loss, hard_label_loss
from .files import file_sha256, write_json
from .metrics import evaluate
from .stage_metrics import training_headline, write_stage_metrics
from .backbones import check_backbone
from .model import build_model, checkpoint_meta, load_checkpoint, weights_fingerprint
from .teachers import RUN_SEPARATOR, MethodConfig
from .train import TRAINING_CODE_MODULES, TrainingStageConfig, fit
from .views import REPLAYED_CHAIN, ViewsConfig, draw_views

STUDENT_BIN = 1


@dataclass(frozen=True, kw_only=True)
class DistillConfig(TrainingStageConfig):
    students: tuple[str, ...] = ("resnet18",)      # one DVC stage per (backbone, method, seed) (matrix)
    # the distillation methods run (keys of `method`); a run is <backbone>-<method>-seed<k>
    methods: Annotated[tuple[str, ...], NonEmpty()] = ("kd",)
    # every method the params define: its loss and the teachers it reads (pipeline/teachers.py)
    method: dict[str, MethodConfig] = field(default_factory=lambda: {"kd": MethodConfig()})
    # training seeds of every student; `seed` is set from these per run (the report's statistics
    # need several: issue 11). A run is named <backbone>-<method>-seed<k> (checkpoint, metrics, state).
    seeds: Annotated[tuple[NonNegative, ...], NonEmpty()] = (0,)
    seed: Optional[NonNegative] = None             # set per run from `seeds` (not a params key)
    teachers: Annotated[dict[str, Path], FromPaths("teachers")]   # name -> teacher cache
    teacher: Annotated[Optional[Path], FromPaths("teacher")]   # checked against the caches; null: not checked
    w_cls: NonNegativeFloat = 0.05                 # eq. 7 weight of the ground-truth CE (loss kl)
    # the views replayed (the params file's `views` block: what every teacher cache was labelled on)
    views: Annotated[ViewsConfig, FromBlock("views")] = field(default_factory=ViewsConfig)
    # photometric only: the pose-changing augmentations are the views
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(flip=False, rotate=0.0))
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
        for name in self.methods:
            if name not in self.method:
                raise ValueError(f"methods: {name!r} is not defined in distill.method ({sorted(self.method)})")
        for name, method in self.method.items():
            if not name or RUN_SEPARATOR in name or "/" in name:
                raise ValueError(f"method: bad name {name!r} (a run is <backbone>-<method>-seed<k>: "
                                 f"no {RUN_SEPARATOR!r} or '/')")
            absent = [t for t in method.teachers() if t not in self.teachers]
            if absent:
                raise ValueError(f"method.{name}: reads teacher {absent[0]!r}, which is not in "
                                 f"paths.teachers / distill.teachers ({sorted(self.teachers)})")
        if self.seed is not None and self.seed not in self.seeds:
            raise ValueError(f"seed: {self.seed} is not one of seeds {list(self.seeds)} "
                             "(set distill.seeds; each run takes its seed from it)")
        a = self.augment
        if a.flip or a.rotate or a.box_shift or a.box_scale:
            raise ValueError("augment: flip, rotate, box_shift and box_scale must be off for students: "
                             "their pose-changing augmentations are the views their teacher caches were "
                             "labelled on (the `views` block, pipeline/views.py)")
        if self.views.photometric == "replay" and dataclasses.replace(
                a, flip=REPLAYED_CHAIN.flip, rotate=REPLAYED_CHAIN.rotate) != REPLAYED_CHAIN:
            raise ValueError("augment: with views.photometric replay the student replays the full chain of "
                             "section 4.3 the teacher's windows went through: leave every photometric group on")

    def runs(self) -> list[Run]:
        """(backbone, method, seed) of every student run, backbones first, then methods."""
        return [Run(b, m, k) for b in self.students for m in self.methods for k in self.seeds]

    def checkpoint(self, run: Run) -> Path:
        return self.checkpoint_dir / f"{run.name}.pt"

    def checkpoints(self) -> dict[Run, Path]:
        """Run -> checkpoint of every student run."""
        return {run: self.checkpoint(run) for run in self.runs()}


class Run(NamedTuple):
    """One student run: ``<backbone>-<method>-seed<k>``, also the dvc.yaml matrix item."""
    backbone: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.backbone}{RUN_SEPARATOR}{self.method}{RUN_SEPARATOR}seed{self.seed}"


def parse_run(item: str, cfg: DistillConfig) -> list[Run]:
    """A run-stage item: ``<backbone>-<method>-seed<k>`` (one run), ``<backbone>-<method>``
    (all its seeds) or ``<backbone>`` (all its methods and seeds)."""
    rest, sep, seed = item.rpartition(f"{RUN_SEPARATOR}seed")
    if sep and not seed.isdigit():
        raise ConfigError(f"distill: bad run {item!r}: expected <backbone>[-<method>[-seed<k>]]")
    backbone, _, method = (rest if sep else item).partition(RUN_SEPARATOR)
    if backbone not in cfg.students:
        raise ConfigError(f"distill: student {backbone!r} is not in distill.students {list(cfg.students)}")
    if sep and not method:
        raise ConfigError(f"distill: bad run {item!r}: expected <backbone>-<method>-seed<k>")
    if method and method not in cfg.methods:
        raise ConfigError(f"distill: method {method!r} is not in distill.methods {list(cfg.methods)}")
    if sep and int(seed) not in cfg.seeds:
        raise ConfigError(f"distill: seed {int(seed)} is not in distill.seeds {list(cfg.seeds)}")
    return [Run(backbone, m, k) for m in ([method] if method else cfg.methods)
            for k in ([int(seed)] if sep else cfg.seeds)]


def cache_provenance(cache: TeacherCache) -> dict:
    """What the student checkpoint records about one teacher's labels."""
    m = cache.meta
    return {"path": str(cache.path), "sha256": file_sha256(cache.path), "teacher": m.teacher,
            "role": m.role, "label_kind": m.label_kind, "teacher_sha256": m.teacher_sha256,
            "manifest_sha256": m.manifest_sha256, "s": m.s, "p": m.p, "A": m.A,
            "input_size": list(m.input_size), "bin_sizes": list(m.bin_sizes), "views": m.views,
            "convention": m.convention, "code_version": m.code_version, "schema_version": m.schema_version}


def student_loss(method: MethodConfig, w_cls: float):
    """The training loss of a method: eq. 7 (``kl``) or KD-Loss on the expected angles (``assistive``)."""
    head = bins.head_name(STUDENT_BIN)
    if method.loss == "assistive":
        return functools.partial(assistive_distillation_loss, method=method, head=head, w_cls=w_cls)
    if method.loss == "ce":
        return functools.partial(hard_label_loss, head=head)
    return functools.partial(distillation_loss, w_cls=w_cls, head=head)


def distill(cfg: DistillConfig, run: Run, on_step=None) -> Optional[dict]:
    """Train one student run; returns its metrics on rank 0 (None on other ranks)."""
    if parse_run(run.name, cfg) != [run]:
        raise ConfigError(f"distill: {run.name} is not a run of these params")
    cfg = dataclasses.replace(cfg, seed=run.seed)
    method, name = cfg.method[run.method], run.name
    ctx = setup(cfg.device)
    try:
        manifest_sha = file_sha256(cfg.manifest)
        samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
        teacher_sha = file_sha256(cfg.teacher) if cfg.teacher is not None else None
        samples_sha = samples_sha256(samples)
        views = draw_views(cfg.views, [s.key for s in samples])
        caches = {t: open_student_cache(cfg.teachers[t], samples, manifest_sha, teacher_sha, STUDENT_BIN,
                                        samples_sha, teacher=t, views=views) for t in dict.fromkeys(method.teachers())}
        train_samples, val_samples = holdout_split(samples, cfg.val_fraction, cfg.val_group)
        train_set = DistillDataset(train_samples, caches, draw_views(cfg.views, [s.key for s in train_samples]),
                                   cfg.input_size, cfg.augment, cfg.seed, STUDENT_BIN, method, cfg.epochs,
                                   replay_photometric=cfg.views.photometric == "replay")
        val_set = PoseDataset(val_samples, cfg.input_size)
        provenance = {t: cache_provenance(c) for t, c in caches.items()}
        if ctx.is_main:
            print(f"distill {name}: {len(train_samples)} train, {len(val_samples)} validation samples, "
                  f"{cfg.views.count} views each; {method.loss} loss, teachers " + (", ".join(
                      f"{t} ({cfg.teachers[t]}, A={p['A']})" for t, p in provenance.items()) or "none"))
        torch.manual_seed(cfg.seed)
        model = build_model(run.backbone, (STUDENT_BIN,), regression=False, weights=cfg.weights,
                            input_size=cfg.input_size)
        # the run's own method and teachers only: adding a student, method, seed or teacher must
        # not disturb the other runs (the resume identity)
        config = {**{k: v for k, v in as_dict(cfg).items()
                     if k not in ("students", "seeds", "methods", "method", "teachers")},
                  "student": run.backbone, "method": run.method, "method_config": as_dict(method),
                  "teachers": {t: str(cfg.teachers[t]) for t in caches}}
        inputs = {"samples_sha256": samples_sha, "weights": weights_fingerprint(cfg.weights),
                  "teacher_caches_sha256": {t: p["sha256"] for t, p in provenance.items()}}
        meta = {**checkpoint_meta(model, config, manifest_sha, inputs), "teacher_caches": provenance}
        # this module wires the student, the losses and the cached targets: its source is part of the run's identity
        summary = fit(model, student_loss(method, cfg.w_cls), train_set, val_set, cfg, cfg.state_dir / name,
                      cfg.checkpoint(run), meta, cfg.live_dir / name, ctx, on_step,
                      code_modules=TRAINING_CODE_MODULES + ("distill", "cache", "student", "teachers", "views"))
        barrier(ctx)
        if not ctx.is_main:
            return None
        best, _ = load_checkpoint(cfg.checkpoint(run), map_location=ctx.device)
        test_samples = load_samples(cfg.manifest, split="test", boxes=cfg.boxes)
        report = {"student": run.backbone, "method": run.method, "seed": run.seed,
                  "best_epoch": summary["best_epoch"],
                  "val": {"mae": summary["best_val_mae"]},
                  "test": evaluate(best, test_samples, device=ctx.device) if test_samples else {},
                  "timing": summary["timing"],
                  "checkpoint_sha256": file_sha256(cfg.checkpoint(run)),
                  "method_config": as_dict(method),
                  "teacher_caches": provenance}
        write_json(cfg.report_dir / f"{name}.json", report)
        # wall time: the training loop's, kept in the state (a finished run re-run reports the same)
        write_stage_metrics(cfg.metrics_dir / f"{name}.json", training_headline(report, best.prediction_head),
                            summary["timing"]["train_s"])
        print(f"distill {name}: best epoch {report['best_epoch']}, validation MAE {report['val']['mae']:.2f}")
        return report
    finally:
        teardown(ctx)


def distill_students(cfg: DistillConfig, item: Optional[str] = None) -> Optional[dict] | list:
    """``item`` (the dvc.yaml matrix item ``<backbone>-<method>-seed<k>``): that run's metrics;
    ``<backbone>-<method>`` or ``<backbone>``: all its runs; None: every run of ``cfg``, in turn
    (lists of metrics)."""
    runs = cfg.runs() if item is None else parse_run(item, cfg)
    results = [distill(cfg, run) for run in runs]
    return results[0] if item is not None and len(runs) == 1 else results
