"""The teacher's convolutional ensemble over a grid of (s, p) (paper section 5.2: tables 2-4 and
the heat map of fig. 6; DVC stage ``ensemble-grid``), and the single window's error as a
function of its shift, which is what decides whether averaging windows helps.

Splits: the teacher's *validation* split (the held-out part of the training set, the same
``holdout_split`` as stage 1) is where (s, p) is chosen; the test sets only report what that
choice gives. Never choose (s, p) on the test sets.

One pass per split: Z is built once per image with the largest p and every window of stride
g = gcd(strides) is run once; the ensemble of each (s, p) is the mean of its subset of those
windows (eq. 6), and the same per-window outputs give the error of each single window as a
function of its offset from the box (the measured cause, issue 11). Angles are eq. 2 on the
distribution of the smallest-bin head (b1).

Outputs: ``grid.json`` (rows per split and (s, p), the shift profile, the (s, p) chosen on
validation), ``grid.md``, ``grid.png`` (fig. 6: mean MAE, s by p, each cell labelled, cells where
s does not divide p marked) and ``shift.png`` (single-window MAE against shift).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Annotated, Optional, Sequence

import numpy as np
import torch

from . import bins
from .config import FromPaths, NonEmpty, NonNegative, Positive
from .data import holdout_split, load_samples
from .distributed import check_device, pick_device
from .draw import save_figure
from .ensemble import input_hw, num_windows, window_probabilities
from .files import atomic_write_bytes
from .labeling import LabelingError, index_batches, receptive_fields
from .manifest import Sample, poses_array
from .model import load_checkpoint
from .pose import ANGLE_NAMES
from .stage_metrics import VAL, write_stage_metrics

VALIDATION = "validation"


@dataclass(frozen=True, kw_only=True)
class EnsembleGridConfig:
    strides: Annotated[tuple[Positive, ...], NonEmpty()] = (1, 2, 3, 5)
    paddings: Annotated[tuple[NonNegative, ...], NonEmpty()] = (0, 2, 4, 6)
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]   # relabel boxes CSV; null = the manifest's boxes
    checkpoint: Annotated[Path, FromPaths("teacher")]
    # test sets; None = every dataset with test samples, [] = none (validation only)
    datasets: Optional[tuple[str, ...]] = None
    out_dir: Path = Path("outputs/ensemble-grid")
    metrics: Path = Path("metrics/ensemble-grid.json")   # the (s, p) chosen on validation, wall time
    batch_size: Positive = 8
    max_windows: Positive = 512
    num_workers: NonNegative = 2
    device: str = "auto"                  # auto|cpu|cuda (pipeline.distributed.pick_device)

    def __post_init__(self):
        check_device(self.device)


Point = tuple[int, int]  # (s, p)


def grid_points(strides: Sequence[int], paddings: Sequence[int]) -> list[Point]:
    """(s, p) pairs with p a multiple of s (eq. 5), in table order (p, then s)."""
    return sorted({(s, p) for s in strides for p in paddings if p % s == 0},
                  key=lambda sp: (sp[1], sp[0]))


@dataclass
class GridResult:
    mae: dict[Point, np.ndarray]     # (s, p) -> (3,) MAE of the ensemble, degrees
    shift_mae: np.ndarray            # (n, n, 3): MAE of the single window [i, j], n = 2 p_max / step + 1
    step: int                        # pixels between neighbouring windows of shift_mae
    p_max: int

    def shift_profile(self) -> list[dict]:
        """Single-window mean MAE by shift r = max(|dx|, |dy|) in network pixels (r = 0: the box)."""
        n = self.shift_mae.shape[0]
        offsets = np.arange(n) * self.step - self.p_max
        radius = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :])
        mean = self.shift_mae.mean(axis=2)
        return [{"shift": int(r), "windows": int((radius == r).sum()),
                 "mae": round(float(mean[radius == r].mean()), 4)} for r in sorted(set(radius.ravel()))]


@torch.no_grad()
def evaluate_grid(model, samples: Sequence[Sample], points: Sequence[Point], batch_size: int,
                  num_workers: int, device: torch.device, max_windows: int, desc: str = "") -> GridResult:
    """The ensemble MAE of every (s, p) of ``points`` and every single window's MAE on ``samples``."""
    from tqdm import tqdm

    step = reduce(math.gcd, [s for s, _ in points])
    p_max = max(p for _, p in points)
    n = 2 * p_max // step + 1
    b = min(model.bin_sizes)
    head = bins.head_name(b)
    truth = torch.as_tensor(poses_array(samples))
    abs_err = {sp: torch.zeros(3, dtype=torch.float64) for sp in points}
    window_err = torch.zeros((n, n, 3), dtype=torch.float64)
    model = model.to(device).eval()
    batches = index_batches(len(samples), batch_size)
    with tqdm(total=len(samples), unit="img", desc=desc, dynamic_ncols=True) as bar:
        for idx, z in receptive_fields(samples, input_hw(model.input_size), p_max, batches, device, num_workers):
            prob = window_probabilities(model, z, step, p_max, head, max_windows).double().cpu()
            t = truth[idx]
            window_err += (bins.expected_angle(prob, b) - t[:, None, None]).abs().sum(dim=0)
            for s, p in points:
                keep = torch.arange((p_max - p) // step, (p_max + p) // step + 1, s // step)
                ens = prob[:, keep][:, :, keep].mean(dim=(1, 2))          # eq. 6
                abs_err[(s, p)] += (bins.expected_angle(ens, b) - t).abs().sum(dim=0)
            bar.update(len(idx))
    return GridResult({sp: (e / len(samples)).numpy() for sp, e in abs_err.items()},
                      (window_err / len(samples)).numpy(), step, p_max)


def table_rows(split: str, mae: dict) -> list[dict]:
    return [{"split": split, "p": p, "s": s, "A": num_windows(s, p),
             **{name: round(float(v[a]), 4) for a, name in enumerate(ANGLE_NAMES)},
             "mean": round(float(v.mean()), 4)} for (s, p), v in mae.items()]


def best_point(rows: list[dict], split: str = VALIDATION) -> Optional[dict]:
    """The (s, p) of lowest mean MAE on ``split``; ties go to fewer windows (cheaper)."""
    sub = [r for r in rows if r["split"] == split]
    return min(sub, key=lambda r: (r["mean"], r["A"])) if sub else None


def markdown(rows: list[dict], shift: dict[str, list[dict]]) -> str:
    out = ["# Convolutional ensemble: MAE over (s, p) (paper tables 2-4), lower is better", "",
           "(s, p) is chosen on the validation split (the teacher's held-out training images); "
           "the test sets report that choice.", ""]
    for split in dict.fromkeys(r["split"] for r in rows):
        sub = [r for r in rows if r["split"] == split]
        best = min(r["mean"] for r in sub)
        out += [f"## {split} (p = 0: the plain network)",
                "", "| p | s | A | pitch | yaw | roll | mean |", "|---|---|---|---|---|---|---|"]
        for r in sub:
            mean = f"**{r['mean']:.3f}**" if r["mean"] == best else f"{r['mean']:.3f}"
            out.append(f"| {r['p']} | {r['s']} | {r['A']} | {r['pitch']:.3f} | {r['yaw']:.3f} "
                       f"| {r['roll']:.3f} | {mean} |")
        out += ["", f"Single window, MAE by shift max(|dx|, |dy|) in network pixels ({split}):", "",
                "| shift | windows | MAE |", "|---|---|---|"]
        out += [f"| {r['shift']} | {r['windows']} | {r['mae']:.3f} |" for r in shift[split]]
        out.append("")
    return "\n".join(out)


def heatmap(rows: list[dict], strides, paddings, png: Path) -> None:
    """Fig. 6: mean MAE with s on x and p on y, the value in each cell, "s∤p" where s does not
    divide p (no such ensemble, eq. 5); the best cell of each split framed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strides, paddings = sorted(set(strides)), sorted(set(paddings))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(1.2 + 1.1 * len(strides) * len(splits) + 1.5 * len(splits),
                                                      1.4 + 0.55 * len(paddings)), squeeze=False)
    for ax, split in zip(axes[0], splits):
        grid = np.full((len(paddings), len(strides)), np.nan)
        sub = [r for r in rows if r["split"] == split]
        for r in sub:
            grid[paddings.index(r["p"]), strides.index(r["s"])] = r["mean"]
        im = ax.imshow(grid, origin="lower", cmap="viridis_r", aspect="auto")
        best = min(sub, key=lambda r: (r["mean"], r["A"]))
        for i, p in enumerate(paddings):
            for j, s in enumerate(strides):
                text = "s∤p" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="grey" if np.isnan(grid[i, j]) else "white")
        ax.add_patch(plt.Rectangle((strides.index(best["s"]) - 0.5, paddings.index(best["p"]) - 0.5),
                                   1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_xticks(range(len(strides)), [str(s) for s in strides])
        ax.set_yticks(range(len(paddings)), [str(p) for p in paddings])
        ax.set_xlabel("s (stride, px)")
        ax.set_ylabel("p (padding, px)")
        ax.set_title(f"{split}: mean MAE (°)\nlower is better, best framed", fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    save_figure(fig, png)


def shift_plot(shift: dict[str, list[dict]], input_size: int, png: Path) -> None:
    """Single-window MAE against the window's shift from the box, one line per split."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for split, profile in shift.items():
        ax.plot([r["shift"] for r in profile], [r["mae"] for r in profile], marker="o", label=split)
    ax.set_xlabel(f"window shift max(|dx|, |dy|), px of the {input_size} px input")
    ax.set_ylabel("single-window mean MAE (°)")
    ax.set_title("Teacher error off the box centre (lower is better)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png)


def grid_splits(cfg: EnsembleGridConfig, teacher_config: dict) -> dict[str, list[Sample]]:
    """validation (the teacher's held-out split) then each test set."""
    splits = {}
    if teacher_config.get("val_fraction"):   # a teacher trained with a validation split
        train = load_samples(cfg.manifest, split="train", boxes=cfg.boxes)
        _, validation = holdout_split(train, teacher_config["val_fraction"], teacher_config["val_group"])
        splits = {VALIDATION: validation} if validation else {}
    if cfg.datasets != ():
        test = load_samples(cfg.manifest, split="test", boxes=cfg.boxes, datasets=cfg.datasets)
        for dataset in cfg.datasets or sorted({s.dataset for s in test}):
            subset = [s for s in test if s.dataset == dataset]
            if not subset:
                raise LabelingError(f"{cfg.manifest}: no test samples of dataset {dataset!r}")
            splits[dataset] = subset
    if not splits:
        raise LabelingError(f"{cfg.manifest}: no validation or test samples to evaluate the grid on")
    return splits


def ensemble_grid(cfg: EnsembleGridConfig) -> dict:
    """The ensemble-grid job: tables, shift profiles and figures per split; returns grid.json."""
    start = time.perf_counter()
    points = grid_points(cfg.strides, cfg.paddings)
    model, meta = load_checkpoint(cfg.checkpoint)
    device = pick_device(cfg.device)
    rows, shift = [], {}
    for split, samples in grid_splits(cfg, meta["config"]).items():
        result = evaluate_grid(model, samples, points, cfg.batch_size, cfg.num_workers, device,
                               cfg.max_windows, desc=f"grid {split}")
        rows += table_rows(split, result.mae)
        shift[split] = result.shift_profile()
    best = best_point(rows)
    out = {"chosen_on_validation": best and {k: best[k] for k in ("s", "p", "A", "mean")},
           "rows": rows, "shift": shift}
    atomic_write_bytes(cfg.out_dir / "grid.json", json.dumps(out, indent=1).encode())
    atomic_write_bytes(cfg.out_dir / "grid.md", markdown(rows, shift).encode())
    heatmap(rows, cfg.strides, cfg.paddings, cfg.out_dir / "grid.png")
    shift_plot(shift, model.input_size, cfg.out_dir / "shift.png")
    chosen = {"s": best["s"], "p": best["p"], VAL: best["mean"]} if best else {}
    write_stage_metrics(cfg.metrics, chosen, time.perf_counter() - start)
    print(markdown(rows, shift))
    return out
