"""``pipeline bench train``: training throughput of the train-teacher config and the share of
step time spent waiting for data (target < 10%), for 0 workers and the configured count.

It runs the real engine (:func:`pipeline.train.fit`, one epoch over ``steps`` batches of the
manifest's train split, no validation) so the numbers are those of the stage; the first step
(worker start-up) is left out of the timing.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from ..config import stage_config
from ..data import PoseDataset, load_samples
from ..losses import teacher_loss
from ..model import build_model, checkpoint_meta
from ..teacher import TrainTeacherConfig
from ..train import fit


def run(params: Path = Path("params.yaml"), steps: int = 20, workers: Optional[int] = None,
        threads: int = 0) -> dict:
    cfg = stage_config("train_teacher", TrainTeacherConfig, params)
    if threads:
        torch.set_num_threads(threads)
    samples = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)[: (steps + 1) * cfg.batch_size]
    train_set = PoseDataset(samples, cfg.input_size, cfg.augment, seed=cfg.seed)
    results = {}
    for count in sorted({0, cfg.workers if workers is None else workers}):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.backbone, cfg.bin_sizes, cfg.regression, None, cfg.input_size)
        settings = replace(cfg, epochs=1, workers=count, checkpoint_every=10 ** 9)
        with tempfile.TemporaryDirectory() as tmp:
            summary = fit(model, teacher_loss, train_set, None, settings, tmp, Path(tmp) / "best.pt",
                          checkpoint_meta(model, {}, ""))
        results[f"workers={count}"] = summary["timing"]
    return {"backbone": cfg.backbone, "input_size": cfg.input_size, "batch_size": cfg.batch_size,
            "threads": torch.get_num_threads(), "runs": results}


def report(result: dict) -> str:
    lines = [f"{result['backbone']} @ {result['input_size']} px, batch {result['batch_size']}, "
             f"{result['threads']} torch threads"]
    lines += [f"  {name}: {t['images_per_s']:.1f} img/s, data wait {100 * t['data_wait_share']:.1f}% "
              f"of step time ({t['data_wait_s']:.2f} s wait, {t['compute_s']:.2f} s compute, "
              f"{t['images']} images)" for name, t in result["runs"].items()]
    return "\n".join(lines)
