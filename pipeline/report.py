"""The results report: the paper's table 5 (section 5.3) and figure 7, from the evaluate
stage's metrics and predictions. Pure presentation: no model runs here.

Table: one block per protocol, rows Base / Ensemble / KD-<backbone>, for every test set the
MAE of pitch, yaw, roll and their mean, and the mean's relative change against Base. Below
it, the paper's three claims checked on the numbers (Ensemble < Base, KD < Base, KD < Ensemble).
Figure: test crops with the predicted pose axes bold and the ground truth thin.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .draw import draw_axes, grid
from .image import crop_box, encode_image, load_rgb
from .manifest import Sample, atomic_write_bytes
from .pose import ANGLE_NAMES

PRED_THICKNESS, TRUTH_THICKNESS = 4, 1


def relative_change(value: float, base: float) -> float:
    """(value - base) / base in percent; negative = better than Base."""
    return 100.0 * (value - base) / base


def _row_order(rows: Sequence[str]) -> list[str]:
    fixed = [r for r in ("Base", "Ensemble") if r in rows]
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
    """The paper's effects, each stated as holding or not, with the mean MAEs."""
    lines = []
    for d, table in metrics["test"].items():
        base, ens = table["Base"]["mean"], table["Ensemble"]["mean"]
        checks = [("Ensemble", "Base", ens, base)]
        for kd in (r for r in _row_order(list(table)) if r.startswith("KD-")):
            checks += [(kd, "Base", table[kd]["mean"], base), (kd, "Ensemble", table[kd]["mean"], ens)]
        for name, other, a, b in checks:
            verdict = "yes" if a < b else "NO"
            lines.append(f"- {d}: {name} below {other}? {verdict} ({a:.3f} vs {b:.3f}, "
                         f"{relative_change(a, b):+.1f}%)")
    return lines


def report_markdown(all_metrics: Sequence[Mapping], figure: str | None = None) -> str:
    out = ["# Results (paper table 5 shape): MAE in degrees, lower is better", "",
           "Relative change of the mean MAE against Base per test set (negative = better).", ""]
    for metrics in sorted(all_metrics, key=lambda m: m["protocol"]):
        out.append(results_table(metrics))
    if figure:
        out += ["## Figure 7", "", f"![predicted (bold) and ground-truth (thin) axes]({figure})", ""]
    return "\n".join(out)


def figure7(samples: Sequence[Sample], predicted: np.ndarray, path: str | Path, cell: int = 160,
            columns: int = 4, margin: float = 0.25) -> None:
    """PNG: each sample's box grown by ``margin`` (stretched to cell x cell), predicted axes
    bold and ground-truth axes thin (same colours: x red, y green, nose blue)."""
    if len(samples) != len(predicted) or not samples:
        raise ValueError(f"figure 7 needs one prediction per sample, got {len(samples)} and {len(predicted)}")
    cells = []
    for sample, pred in zip(samples, predicted):
        x1, y1, x2, y2 = sample.box
        grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
        crop = crop_box(load_rgb(sample.image), (x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y), cell, cell)
        crop = draw_axes(crop, sample.pose, thickness=TRUTH_THICKNESS)
        cells.append(draw_axes(crop, pred, thickness=PRED_THICKNESS))
    sheet = grid(cells, min(columns, len(cells)))
    atomic_write_bytes(path, encode_image(sheet))
