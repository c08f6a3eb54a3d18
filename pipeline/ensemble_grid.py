"""The teacher's convolutional ensemble on the test sets over a grid of (s, p) (paper section
5.2: tables 2-4 and the heat map of fig. 6; DVC stage ``ensemble-grid``).

Z is built once per image with the largest p; the Z of a smaller p is its centre (one affine
warp, so the crops agree exactly: :func:`pipeline.labeling.ensemble_batches`). Angles are eq. 2
on the ensemble distribution of the smallest-bin head (b1). Outputs: ``grid.json``, ``grid.md``
(one table per test set: p, s, A, pitch, yaw, roll, mean) and ``grid.png`` (mean MAE, s by p,
blank where s does not divide p).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Sequence

import numpy as np
import torch

from .config import FromPaths, NonEmpty, NonNegative, Positive
from .data import load_samples
from .distributed import check_device, pick_device
from .ensemble import num_windows
from .labeling import LabelingError, ensemble_predictions
from .manifest import Sample, poses_array
from .draw import save_figure
from .files import atomic_write_bytes
from .model import load_checkpoint
from .pose import ANGLE_NAMES


@dataclass(frozen=True, kw_only=True)
class EnsembleGridConfig:
    strides: Annotated[tuple[Positive, ...], NonEmpty()] = (1, 2, 3, 5)
    paddings: Annotated[tuple[NonNegative, ...], NonEmpty()] = (0, 2, 4, 6)
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]   # relabel boxes CSV; null = the manifest's boxes
    checkpoint: Annotated[Path, FromPaths("teacher")]
    # test sets; None = every dataset with test samples
    datasets: Optional[Annotated[tuple[str, ...], NonEmpty()]] = None
    out_dir: Path = Path("outputs/ensemble-grid")
    batch_size: Positive = 8
    max_windows: Positive = 512
    num_workers: NonNegative = 2
    device: str = "auto"                  # auto|cpu|cuda (pipeline.distributed.pick_device)

    def __post_init__(self):
        check_device(self.device)


def grid_points(strides: Sequence[int], paddings: Sequence[int]) -> list[tuple[int, int]]:
    """(s, p) pairs with p a multiple of s (eq. 5), in table order (p, then s)."""
    return sorted({(s, p) for s in strides for p in paddings if p % s == 0},
                  key=lambda sp: (sp[1], sp[0]))


def evaluate_grid(model, samples: Sequence[Sample], points, batch_size: int, num_workers: int,
                  device: torch.device, max_windows: int, desc: str = "") -> dict:
    """(s, p) -> (3,) MAE in degrees of the ensemble on ``samples``."""
    truth = poses_array(samples)
    preds = ensemble_predictions(model, samples, points, batch_size, num_workers, device, max_windows, desc)
    return {sp: np.abs(pred - truth).mean(axis=0) for sp, pred in preds.items()}


def table_rows(dataset: str, mae: dict) -> list[dict]:
    return [{"dataset": dataset, "p": p, "s": s, "A": num_windows(s, p),
             **{name: round(float(v[a]), 4) for a, name in enumerate(ANGLE_NAMES)},
             "mean": round(float(v.mean()), 4)} for (s, p), v in mae.items()]


def markdown(rows: list[dict]) -> str:
    out = ["# Convolutional ensemble: MAE over (s, p) (paper tables 2-4)", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        best = min(r["mean"] for r in sub)
        out += [f"## {dataset} (p = 0: the plain network)",
                "", "| p | s | A | pitch | yaw | roll | mean |", "|---|---|---|---|---|---|---|"]
        for r in sub:
            mean = f"**{r['mean']:.3f}**" if r["mean"] == best else f"{r['mean']:.3f}"
            out.append(f"| {r['p']} | {r['s']} | {r['A']} | {r['pitch']:.3f} | {r['yaw']:.3f} "
                       f"| {r['roll']:.3f} | {mean} |")
        out.append("")
    return "\n".join(out)


def heatmap(rows: list[dict], strides, paddings, png: Path) -> None:
    """Fig. 6: mean MAE with s on x and p on y, NaN (blank) where s does not divide p."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strides, paddings = sorted(set(strides)), sorted(set(paddings))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        grid = np.full((len(paddings), len(strides)), np.nan)
        for r in rows:
            if r["dataset"] == dataset:
                grid[paddings.index(r["p"]), strides.index(r["s"])] = r["mean"]
        im = ax.imshow(grid, origin="lower", cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(strides)), [str(s) for s in strides])
        ax.set_yticks(range(len(paddings)), [str(p) for p in paddings])
        ax.set_xlabel("s (stride)")
        ax.set_ylabel("p (padding)")
        ax.set_title(f"{dataset}: mean MAE")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    save_figure(fig, png)


def ensemble_grid(cfg: EnsembleGridConfig) -> list[dict]:
    """The ensemble-grid job: the tables and the heat map of every test set; returns the rows."""
    samples = load_samples(cfg.manifest, split="test", boxes=cfg.boxes, datasets=cfg.datasets)
    datasets = cfg.datasets or tuple(sorted({s.dataset for s in samples}))
    points = grid_points(cfg.strides, cfg.paddings)
    model, _ = load_checkpoint(cfg.checkpoint)
    device = pick_device(cfg.device)
    rows = []
    for dataset in datasets:
        subset = [s for s in samples if s.dataset == dataset]
        if not subset:
            raise LabelingError(f"{cfg.manifest}: no test samples of dataset {dataset!r}")
        mae = evaluate_grid(model, subset, points, cfg.batch_size, cfg.num_workers, device,
                            cfg.max_windows, desc=f"grid {dataset}")
        rows += table_rows(dataset, mae)
    atomic_write_bytes(cfg.out_dir / "grid.json", json.dumps(rows, indent=1).encode())
    atomic_write_bytes(cfg.out_dir / "grid.md", markdown(rows).encode())
    heatmap(rows, cfg.strides, cfg.paddings, cfg.out_dir / "grid.png")
    print(markdown(rows))
    return rows
