"""Stage ``ensemble-labels``: the teacher's convolutional ensemble (paper section 3.3) over
every training sample, written to the HDF5 teacher cache (:mod:`pipeline.cache`).

Single process: ``pipeline run-stage ensemble-labels``. Several GPUs (or CPU processes):
``torchrun --nproc-per-node N -m pipeline run-stage ensemble-labels``; the ranks label
their shards and the merged file equals the single-process one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pipeline.cache import CacheMeta
from pipeline.config import NonNegative, Positive, stage_config
from pipeline.data import load_samples, samples_sha256
from pipeline.distributed import check_device
from pipeline.ensemble import check_stride_padding, input_hw
from pipeline.labeling import label_samples
from pipeline.manifest import Sample, file_sha256
from pipeline.model import checkpoint_sha256, load_checkpoint


@dataclass(frozen=True)
class EnsembleLabelsConfig:
    s: Positive = 5                 # ensemble stride (eq. 5)
    p: NonNegative = 15             # ensemble padding, a multiple of s (eq. 5)
    manifest: Path = Path("data/manifest.csv")
    boxes: Optional[Path] = None    # relabel boxes CSV; None = the manifest's boxes
    checkpoint: Path = Path("checkpoints/teacher/best.pt")
    out: Path = Path("cache/teacher-labels.h5")
    batch_size: Positive = 16       # images per DataLoader batch
    chunk_size: Positive = 256      # images per resumable part
    max_windows: Positive = 512     # windows per forward pass (whole images)
    num_workers: NonNegative = 2
    device: str = "auto"            # auto|cpu|cuda; auto = cuda:LOCAL_RANK when available, else cpu
    amp: bool = True                # bf16 autocast + channels_last on CUDA (checked vs fp32)

    def __post_init__(self):
        check_stride_padding(self.s, self.p)
        check_device(self.device)


def training_samples(manifest: Path, boxes: Optional[Path]) -> list[Sample]:
    return load_samples(manifest, split="train", boxes=boxes)


def run(params_path, overrides, item=None):
    cfg = stage_config("ensemble_labels", EnsembleLabelsConfig, params_path, overrides)
    samples = training_samples(cfg.manifest, cfg.boxes)
    model, _ = load_checkpoint(cfg.checkpoint)
    meta = CacheMeta(teacher_sha256=checkpoint_sha256(cfg.checkpoint),
                     manifest_sha256=file_sha256(cfg.manifest), samples_sha256=samples_sha256(samples),
                     s=cfg.s, p=cfg.p,
                     input_size=input_hw(model.input_size), bin_sizes=tuple(model.bin_sizes))
    out = label_samples(samples, model, cfg.out, meta, batch_size=cfg.batch_size,
                        chunk_size=cfg.chunk_size, num_workers=cfg.num_workers,
                        device=cfg.device, amp=cfg.amp, max_windows=cfg.max_windows)
    if out is not None:
        print(f"{out}: {len(samples)} training samples, A={meta.A} windows each")
