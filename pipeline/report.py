"""The results report (DVC stage ``report``): the paper's table 5 (section 5.3) and figure 7,
from the evaluate stage's metrics and predictions. Pure presentation: no model runs here.

Table: one block per protocol, rows Base / Ensemble / <METHOD>-<backbone> (KD: the paper's
single teacher; CE: the hard-label control; ODKD, KDLOSS: two teachers), for every test set the
MAE of pitch, yaw, roll and their mean, and the mean's relative change against Base. Below it,
the claims (the paper's Ensemble < Base, KD < Base, KD < Ensemble; KD < CE; each two-teacher row
against Base, Ensemble, CE and single-teacher KD) with the intervals and verdicts of the
evaluate stage; then the ensemble grid chosen on validation and the single
window's error by shift. Figure: test crops with the predicted pose axes bold and the ground
truth thin.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Mapping, Optional, Sequence

import numpy as np

from .config import FromPaths, AtLeast, ConfigError, NonEmpty, Positive
from .data import load_samples
from .draw import caption, draw_axes, grid
from .image import crop_box, encode_image, load_rgb
from .manifest import Sample
from .files import atomic_write_bytes, read_text
from .pose import ANGLE_NAMES
from .stage_metrics import write_stage_metrics

PRED_THICKNESS, TRUTH_THICKNESS = 4, 1


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    results: Annotated[tuple[Path, ...], NonEmpty(), FromPaths("evaluate")]   # one evaluate results JSON per protocol
    metrics: Path = Path("metrics/report.json")   # the report's wall time
    predictions: Annotated[Path, FromPaths("predictions")]    # of the first metrics file
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]
    grid: Optional[Path] = None       # the ensemble-grid stage's grid.json; None: no grid section
    profile: str = "default"          # which params profile produced the results (profiles set it)
    figure_row: str = ""              # predictions row drawn in figure 7; "" = the first student run
    images_per_set: Positive = 4
    cell: Annotated[int, AtLeast(32)] = 160      # pixels
    out_md: Path = Path("reports/results.md")
    out_png: Path = Path("reports/figure7.png")


def relative_change(value: float, base: float) -> float:
    """(value - base) / base in percent; negative = better than Base."""
    return 100.0 * (value - base) / base


FIXED_ROWS = ("Base", "Ensemble")   # the teacher's rows; every other row is a student's


def _row_order(rows: Sequence[str]) -> list[str]:
    fixed = [r for r in FIXED_ROWS if r in rows]
    return fixed + sorted(r for r in rows if r not in fixed)


def results_table(metrics: Mapping) -> str:
    """Markdown table 5 of one protocol's evaluate metrics."""
    test = metrics["test"]
    datasets = list(test)
    rows = _row_order(list(test[datasets[0]]))
    ens = metrics["ensemble"]
    out = [f"## Protocol {metrics['protocol']} (Ensemble: s = {ens['s']}, p = {ens['p']}, A = {ens['A']})", "",
           "| Model | " + " | ".join(f"{d} {a}" for d in datasets for a in (*ANGLE_NAMES, "mean", "vs Base"))
           + " |",
           "|---|" + "---|" * (len(datasets) * (len(ANGLE_NAMES) + 2))]
    for row in rows:
        cells = []
        for d in datasets:
            v, base = test[d][row], test[d]["Base"]["mean"]
            change = "" if row == "Base" else f"{relative_change(v['mean'], base):+.1f}%"
            cells += [f"{v[a]:.3f}" for a in ANGLE_NAMES] + [f"**{v['mean']:.3f}**", change]
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    out += ["", *claims(metrics), ""]
    return "\n".join(out)


def claims(metrics: Mapping) -> list[str]:
    """The paper's three claims per test set with their intervals and verdicts (computed by the
    evaluate stage, :mod:`pipeline.stats`)."""
    found = metrics.get("claims") or {}
    if not found:
        return ["(no claims in these metrics: re-run the evaluate stage)"]
    level = round(100 * next(iter(next(iter(found.values())).values()))["level"])
    lines = [f"| Test set | Claim | MAE | vs | Change | {level} % interval | Change per student seed | Verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for d, comparisons in found.items():
        for c in comparisons.values():
            per_seed = ", ".join(f"{v:+.1f}%" for v in c["per_seed_relative"]) if c["seeds_row"] > 1 else "(1 seed)"
            lines.append(f"| {d} | {c['row']} < {c['baseline']} | {c['mae_row']:.3f} | {c['mae_baseline']:.3f} "
                         f"| {c['relative']:+.2f}% | [{c['low']:+.2f}%, {c['high']:+.2f}%] | {per_seed} "
                         f"| **{c['verdict']}** |")
    student_seeds = {c["seeds_row"] for cs in found.values() for c in cs.values() if c["row"] not in FIXED_ROWS}
    lines += ["", "Each interval is a paired bootstrap over the test images (the same images for both "
              "rows) and, for students, over their training seeds (pipeline/stats.py). \"holds\": the "
              "whole interval is below 0; \"fails\": above 0; otherwise \"within noise\". "
              "Base and Ensemble come from one teacher training run: the teacher's seed-to-seed "
              "spread is not in these intervals."
              + ("" if student_seeds - {1} else " The students have one seed here, so their "
                 "seed-to-seed spread is not in the intervals either (the benchmark profile trains several).")]
    return lines


def grid_section(grid: Mapping, figure_dir: str) -> list[str]:
    """The ensemble grid (tables 2-4, fig. 6): the (s, p) chosen on validation, what it gives on
    each split, and the single window's error against its shift."""
    rows, chosen = grid["rows"], grid.get("chosen_on_validation")
    out = ["## Convolutional ensemble: (s, p) chosen on validation, single window by shift", ""]
    if chosen:
        out += [f"Best on the validation split: s = {chosen['s']}, p = {chosen['p']} (A = {chosen['A']}).", ""]
    out += ["| Split | p = 0 (one window) | best (s, p) of this split | validation's choice |",
            "|---|---|---|---|"]
    for split in dict.fromkeys(r["split"] for r in rows):
        sub = [r for r in rows if r["split"] == split]
        base = next((r["mean"] for r in sub if r["p"] == 0), float("nan"))
        best = min(sub, key=lambda r: (r["mean"], r["A"]))
        pick = next((r["mean"] for r in sub if chosen and (r["s"], r["p"]) == (chosen["s"], chosen["p"])),
                    float("nan"))
        out.append(f"| {split} | {base:.3f} | {best['mean']:.3f} (s = {best['s']}, p = {best['p']}) | {pick:.3f} |")
    shifts = [r["shift"] for r in next(iter(grid["shift"].values()))]
    out += ["", "Single window, mean MAE by its shift from the box (pixels of the network input):", "",
            "| Split | " + " | ".join(f"{r} px" for r in shifts) + " |", "|---|" + "---|" * len(shifts)]
    out += [f"| {split} | " + " | ".join(f"{r['mae']:.3f}" for r in profile) + " |"
            for split, profile in grid["shift"].items()]
    out += ["", f"![(s, p) heat map]({figure_dir}/grid.png)", "",
            f"![single-window error by shift]({figure_dir}/shift.png)", ""]
    return out


def report_markdown(all_metrics: Sequence[Mapping], figure: str | None = None, profile: str = "",
                    grid: Optional[Mapping] = None, grid_dir: str = "") -> str:
    out = ["# Results (paper table 5 shape): MAE in degrees, lower is better", "",
           (f"Produced by the `{profile}` profile (params.yaml `report.profile`). " if profile else "")
           + "Relative change of the mean MAE against Base per test set (negative = better); "
           "a student row (KD: one teacher, the paper; CE: the same student, schedule and views on the "
           "ground truth alone, the control; ODKD, KDLOSS: two teachers, pipeline/teachers.py) "
           "is the mean over its student seeds.", ""]
    for metrics in sorted(all_metrics, key=lambda m: m["protocol"]):
        out.append(results_table(metrics))
    if grid:
        out += grid_section(grid, grid_dir)
    if figure:
        out += ["## Figure 7", "", f"![predicted (bold) and ground-truth (thin) axes]({figure})", ""]
    return "\n".join(out)


def figure7(samples: Sequence[Sample], predicted: np.ndarray, path: str | Path, cell: int = 160,
            columns: int = 4, margin: float = 0.25, row: str = "") -> None:
    """PNG: each sample's box grown by ``margin`` (stretched to cell x cell), predicted axes
    bold and ground-truth axes thin (same colours: x red, y green, nose blue), its error below
    it, its dataset left of each row, and a legend naming the predictions' ``row``."""
    if len(samples) != len(predicted) or not samples:
        raise ValueError(f"figure 7 needs one prediction per sample, got {len(samples)} and {len(predicted)}")
    cells = []
    for sample, pred in zip(samples, predicted):
        x1, y1, x2, y2 = sample.box
        grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
        crop = crop_box(load_rgb(sample.image), (x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y), cell, cell)
        crop = draw_axes(crop, sample.pose, thickness=TRUTH_THICKNESS)
        error = float(np.mean(np.abs(np.asarray(pred) - np.asarray(sample.pose))))
        cells.append(caption(draw_axes(crop, pred, thickness=PRED_THICKNESS), f"error {error:.1f} deg"))
    columns = min(columns, len(cells))
    datasets = [samples[i].dataset for i in range(0, len(samples), columns)]
    legend = [f"Figure 7: {row or 'predictions'} (bold axes) against the ground truth (thin axes)",
              "axes: x red, y green, nose (z) blue; error: mean |predicted - true| of pitch, yaw, roll"]
    atomic_write_bytes(path, encode_image(grid(cells, columns, row_labels=datasets, legend=legend)))


def _read_json(path: Path, what: str, stage: str, needs: set[str]) -> dict:
    """A JSON output of ``stage`` with at least the keys ``needs``; errors name the file."""
    text = read_text(path, ConfigError, f"{what} not found (run the {stage} stage)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not needs <= set(data) or not all(data[k] for k in needs):
        raise ConfigError(f"{path}: not an {stage} file (needs {', '.join(sorted(needs))})")
    return data


def read_metrics(path: Path) -> dict:
    return _read_json(path, "metrics", "evaluate", {"protocol", "ensemble", "test"})


def read_grid(path: Path) -> dict:
    return _read_json(path, "ensemble grid", "ensemble-grid", {"rows", "shift"})


def prediction_rows(path: Path) -> list[str]:
    """The rows of a predictions CSV, in file order."""
    try:
        with open(path, newline="") as fh:
            return list(dict.fromkeys(r["row"] for r in csv.DictReader(fh)))
    except FileNotFoundError:
        raise ConfigError(f"{path}: predictions not found (run the evaluate stage)") from None


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


def write_report(cfg: ReportConfig) -> str:
    """The report job: ``cfg.out_md`` (table 5 of every metrics file) and ``cfg.out_png``
    (figure 7: ``images_per_set`` test images per test set, of row ``figure_row``); returns the
    markdown."""
    start = time.perf_counter()
    all_metrics = [read_metrics(p) for p in cfg.results]
    rows = prediction_rows(cfg.predictions)
    row = cfg.figure_row or next((r for r in rows if r not in FIXED_ROWS), "Base")
    if row not in rows:
        raise ConfigError(f"report.figure_row: {row!r} is not a row of {cfg.predictions} ({rows})")
    predicted = read_predictions(cfg.predictions, row)
    samples = [s for s in load_samples(cfg.manifest, split="test", boxes=cfg.boxes) if s.key in predicted]
    chosen = []
    for dataset in sorted({s.dataset for s in samples}):
        subset = [s for s in samples if s.dataset == dataset]
        picks = np.linspace(0, len(subset) - 1, min(cfg.images_per_set, len(subset))).round().astype(int)
        chosen += [subset[i] for i in picks]
    figure7(chosen, np.array([predicted[s.key] for s in chosen]), cfg.out_png, cell=cfg.cell,
            columns=cfg.images_per_set, row=row)
    figure = os.path.relpath(cfg.out_png, cfg.out_md.parent)
    grid = read_grid(cfg.grid) if cfg.grid else None
    grid_dir = os.path.relpath(cfg.grid.parent, cfg.out_md.parent) if cfg.grid else ""
    text = (report_markdown(all_metrics, figure=f"{figure}", profile=cfg.profile, grid=grid, grid_dir=grid_dir)
            + f"\nFigure 7 shows row {row}.\n")
    atomic_write_bytes(cfg.out_md, text.encode())
    write_stage_metrics(cfg.metrics, {}, time.perf_counter() - start)
    print(text)
    return text
