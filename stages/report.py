"""DVC stage ``report``: ``results.md`` (paper table 5 shape, with the paper's claims checked)
and ``figure7.png`` (test images, predicted axes bold, ground truth thin) from the evaluate
stage's metrics and predictions (:mod:`pipeline.report`)."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np

from pipeline.config import DEFAULT_PARAMS, AtLeast, ConfigError, NonEmpty, Positive, stage_config
from pipeline.data import load_samples
from pipeline.manifest import atomic_write_bytes
from pipeline.pose import ANGLE_NAMES
from pipeline.report import figure7, report_markdown


@dataclass(frozen=True)
class ReportConfig:
    metrics: Annotated[tuple[Path, ...], NonEmpty()] = (Path("metrics/evaluate.json"),)   # one evaluate JSON per protocol
    predictions: Path = Path("outputs/evaluate/predictions.csv")    # of the first metrics file
    manifest: Path = Path("data/manifest.csv")
    boxes: Optional[Path] = None
    figure_row: str = ""              # row drawn in figure 7; "" = the first KD row
    images_per_set: Positive = 4
    cell: Annotated[int, AtLeast(32)] = 160      # pixels
    out_md: Path = Path("reports/results.md")
    out_png: Path = Path("reports/figure7.png")


def read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: metrics not found (run the evaluate stage)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not {"protocol", "ensemble", "test"} <= set(data) or not data["test"]:
        raise ConfigError(f"{path}: not an evaluate metrics file (needs protocol, ensemble, test)")
    return data


def read_predictions(path: Path, row: str) -> dict[str, tuple[float, float, float]]:
    """key -> predicted pose of ``row``."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            out = {r["key"]: tuple(float(r[a]) for a in ANGLE_NAMES) for r in reader if r["row"] == row}
    except FileNotFoundError:
        raise ConfigError(f"{path}: predictions not found (run the evaluate stage)") from None
    if not out:
        raise ConfigError(f"{path}: no predictions of row {row!r}")
    return out


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> str:
    cfg = stage_config("report", ReportConfig, params_path, overrides)
    all_metrics = [read_metrics(p) for p in cfg.metrics]
    first = all_metrics[0]["test"]
    rows = list(next(iter(first.values())))
    row = cfg.figure_row or next((r for r in sorted(rows) if r.startswith("KD-")), "Base")
    if row not in rows:
        raise ConfigError(f"report.figure_row: {row!r} is not a row of {cfg.metrics[0]} ({rows})")
    predicted = read_predictions(cfg.predictions, row)
    samples = [s for s in load_samples(cfg.manifest, split="test", boxes=cfg.boxes) if s.key in predicted]
    chosen = []
    for dataset in sorted({s.dataset for s in samples}):
        subset = [s for s in samples if s.dataset == dataset]
        picks = np.linspace(0, len(subset) - 1, min(cfg.images_per_set, len(subset))).round().astype(int)
        chosen += [subset[i] for i in picks]
    figure7(chosen, np.array([predicted[s.key] for s in chosen]), cfg.out_png, cell=cfg.cell,
            columns=cfg.images_per_set)
    figure = os.path.relpath(cfg.out_png, cfg.out_md.parent)
    text = report_markdown(all_metrics, figure=f"{figure}") + f"\nFigure 7 shows row {row}.\n"
    atomic_write_bytes(cfg.out_md, text.encode())
    print(text)
    return text
