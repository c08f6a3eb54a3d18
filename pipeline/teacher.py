"""Stage 1 of the paper (section 3.2, recipe of section 5.2): train the teacher (DVC stage
``train-teacher``).

Teacher = a ResNet with a regression head and RvC heads b = 1, 2, 3, 4, trained with eq. 4
(:func:`pipeline.losses.teacher_loss`) and the augmentations of section 4.3. Train = the
manifest's train split minus a held-out validation slice (``val_fraction`` of the subjects,
or of the keys with ``val_group: key``, chosen by hash: :func:`pipeline.data.holdout_split`).
The best epoch by validation MAE of the bin-1 head is kept; the protocol's test sets are never
used for the choice, only evaluated at the end (with the trivial mean-pose predictor beside them).

Outs: ``checkpoint`` (best), ``state_dir``/last.pt (resume; a persistent out),
``report`` (JSON: every number), ``metrics`` (its headline for `dvc metrics show`), ``live_dir`` (DVCLive plots), ``grid`` (augmented samples with labels).
Under ``torchrun --nproc_per_node N`` it trains with DDP (batch_size stays the global batch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import torch

from . import bins
from .augment import AugmentConfig, augmentation_grid
from .config import FromPaths, Positive, as_dict
from .data import PoseDataset, holdout_split, load_samples, samples_sha256
from .distributed import barrier, setup, teardown
from .losses import teacher_loss
from .files import file_sha256, write_json
from .metrics import evaluate, trivial_mae
from .stage_metrics import training_headline, write_stage_metrics
from .backbones import check_backbone
from .model import build_model, checkpoint_meta, load_checkpoint, weights_fingerprint
from .train import TRAINING_CODE_MODULES, TrainingStageConfig, fit


@dataclass(frozen=True, kw_only=True)
class TrainTeacherConfig(TrainingStageConfig):
    backbone: str = "resnet18"
    bin_sizes: tuple[int, ...] = bins.BIN_SIZES
    regression: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    grid_samples: Positive = 6
    checkpoint: Annotated[Path, FromPaths("teacher")]
    state_dir: Path = Path("checkpoints/teacher-state")
    report: Path = Path("outputs/train-teacher/report.json")   # every number (per head, trivial predictor)
    metrics: Path = Path("metrics/train-teacher.json")         # the headline of the report
    live_dir: Path = Path("dvclive/train-teacher")
    grid: Path = Path("plots/train-teacher-augment.png")

    def __post_init__(self):
        check_backbone(self.backbone)
        if not self.bin_sizes or not set(self.bin_sizes) <= set(bins.BIN_SIZES):
            raise ValueError(f"bin_sizes: expected a non-empty subset of {list(bins.BIN_SIZES)}, "
                             f"got {list(self.bin_sizes)}")


def train_teacher(cfg: TrainTeacherConfig, on_step=None) -> Optional[dict]:
    """Train, keep the best checkpoint, evaluate it; returns the metrics (rank 0) or None."""
    ctx = setup(cfg.device)
    try:
        samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
        train_samples, val_samples = holdout_split(samples, cfg.val_fraction, cfg.val_group)
        train_set = PoseDataset(train_samples, cfg.input_size, cfg.augment, seed=cfg.seed)
        val_set = PoseDataset(val_samples, cfg.input_size)
        if ctx.is_main:
            print(f"train-teacher: {len(train_samples)} train, {len(val_samples)} validation samples")
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.backbone, cfg.bin_sizes, cfg.regression, cfg.weights, cfg.input_size)
        inputs = {"samples_sha256": samples_sha256(samples), "weights": weights_fingerprint(cfg.weights)}
        meta = checkpoint_meta(model, as_dict(cfg), file_sha256(cfg.manifest), inputs)
        # this module wires the model, loss and data of stage 1: its source is part of the run's identity
        summary = fit(model, teacher_loss, train_set, val_set, cfg, cfg.state_dir,
                      cfg.checkpoint, meta, cfg.live_dir, ctx, on_step,
                      code_modules=TRAINING_CODE_MODULES + ("teacher",))
        barrier(ctx)
        if not ctx.is_main:
            return None
        augmentation_grid(train_samples[:cfg.grid_samples], cfg.augment, cfg.input_size, cfg.seed, cfg.grid)
        best, _ = load_checkpoint(cfg.checkpoint, map_location=ctx.device)
        test_samples = load_samples(cfg.manifest, split="test", boxes=cfg.boxes)
        train_poses = train_set.poses()
        report = {
            "best_epoch": summary["best_epoch"],
            "val": {"mae": summary["best_val_mae"], "trivial_mae": trivial_mae(train_poses, val_set.poses())["mae"]},
            "test": evaluate(best, test_samples, device=ctx.device) if test_samples else {},
            "test_trivial": {name: trivial_mae(train_poses, [s.pose for s in test_samples if s.dataset == name])
                             for name in sorted({s.dataset for s in test_samples})},
            "timing": summary["timing"],
            "checkpoint_sha256": file_sha256(cfg.checkpoint),
        }
        write_json(cfg.report, report)
        # wall time: the training loop's, kept in the state (a finished run re-run reports the same)
        write_stage_metrics(cfg.metrics, training_headline(report, best.prediction_head), summary["timing"]["train_s"])
        print(f"best epoch {report['best_epoch']}: validation MAE {report['val']['mae']:.2f} "
              f"(mean-pose predictor {report['val']['trivial_mae']:.2f})")
        return report
    finally:
        teardown(ctx)
