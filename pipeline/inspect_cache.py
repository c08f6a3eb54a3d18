"""``pipeline inspect-cache PATH [--keys GLOB] [--key KEY] [--png out.png]``: what the teacher said.

Prints the schema, provenance, N, views and bytes per image; the keys matching a glob; for a
key, each view's parameters and the teacher's expected angles on it next to the ground truth of
the manifest corrected by the view, and optionally a PNG with one row per view: the crop the
teacher saw (the view cut from the cached box, at its input size) next to its three b1
ensemble distributions (pitch, yaw, roll) with both angles marked.
"""
from __future__ import annotations

from pathlib import Path
from fnmatch import fnmatchcase
from typing import Optional, Sequence

import numpy as np

from . import bins
from .augment import View
from .cache import open_cache
from .image import ImageError, load_rgb
from .manifest import ManifestError, read_manifest
from .draw import save_figure
from .pose import ANGLE_NAMES


def describe_view(view: View) -> str:
    if view == View():
        return "plain crop"
    return (f"{'mirrored, ' if view.flip else ''}rotated {view.angle_ccw:+.1f} deg, box moved "
            f"({view.shift[0]:+.3f}, {view.shift[1]:+.3f}) x {view.scale:.3f}")


def plot_distributions(png: Path, key: str, rows: Sequence[dict], bin_size: int) -> None:
    """One row per view: ``crop`` (or None), ``probs`` (3, q), ``expected`` (3,), ``truth``
    (3,) or None, ``title``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = bins.centres(bin_size)
    fig, grid = plt.subplots(len(rows), 4, figsize=(15, 3.2 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [0.8, 1, 1, 1]})
    for row, axes in zip(rows, grid):
        axes[0].axis("off")
        if row["crop"] is not None:
            axes[0].imshow(row["crop"])
        axes[0].set_title(row["title"], fontsize=8)
        for a, (ax, name) in enumerate(zip(axes[1:], ANGLE_NAMES)):
            ax.bar(centres, row["probs"][a], width=bin_size, color="tab:blue", label="teacher (eq. 6)")
            ax.axvline(row["expected"][a], color="tab:orange", label=f"teacher {row['expected'][a]:.1f}")
            if row["truth"] is not None:
                ax.axvline(row["truth"][a], color="black", linestyle="--", label=f"truth {row['truth'][a]:.1f}")
            ax.set_title(name)
            ax.set_xlabel("degrees")
            ax.legend(fontsize=7)
        axes[1].set_ylabel(f"probability (b{bin_size})")
    fig.suptitle(key)
    fig.tight_layout()
    save_figure(fig, png)


def inspect_cache(path: Path, key: Optional[str] = None, png: Optional[Path] = None,
                  manifest: Optional[Path] = None, verify: bool = False,
                  keys: Optional[str] = None) -> list[str]:
    """Lines describing a cache (schema, provenance, size); with ``verify``, every row is
    checked first; with ``keys``, the keys matching that glob (``"*"``: all); with ``key``, the
    teacher's angles beside the manifest's ground truth and, with ``png``, the crop and its
    distributions drawn. Raises CacheError for a bad file or key."""
    cache = open_cache(path)
    if verify:
        cache.verify()
    meta = cache.meta
    n = len(cache)
    size = Path(path).stat().st_size
    lines = [f"{path}: teacher {meta.teacher!r} ({meta.label_kind} labels), schema {meta.schema_version}, "
             f"{n} samples, {size / max(n, 1):.0f} bytes/image "
             f"(b1 head: {3 * bins.num_bins(1) * 2} bytes/view as float16)",
             f"  {meta.role or 'role not given'}",
             f"  ensemble s={meta.s} p={meta.p} A={meta.A}, input {meta.input_size[0]}x"
             f"{meta.input_size[1]}, heads {[bins.head_name(b) for b in meta.bin_sizes]}",
             f"  {meta.views} views per image, drawn by {meta.views_config or '(no views block)'}",
             f"  teacher sha256 {meta.teacher_sha256}", f"  manifest sha256 {meta.manifest_sha256}",
             f"  samples sha256 {meta.samples_sha256}; precision {meta.precision}",
             f"  angles {meta.angle_order}; convention {meta.convention}; code {meta.code_version}"]
    if verify:
        lines.append(f"  verified: {n} rows of {len(meta.bin_sizes)} heads, checksums and distributions")
    if keys is not None:
        found = [k for k in cache.keys if fnmatchcase(k, keys)]
        lines += [f"  {len(found)} keys match {keys!r}:"] + [f"    {k}" for k in found]
    if key is None:
        return lines
    b = meta.expected_bin_size
    truth, image = None, None
    try:
        match = [s for s in read_manifest(manifest) if s.key == key] if manifest else []
    except ManifestError as exc:
        match = []
        lines.append(f"  (no ground truth: {exc})")
    if match:
        truth = np.array(match[0].pose)
        try:
            image = load_rgb(match[0].image)
        except ImageError as exc:
            lines.append(f"  (no crop: {exc})")
    rows = []
    for r, params in enumerate(cache.views(cache.row(key))):
        view = View.from_row(params)
        expected, want = cache.expected(key, r), None if truth is None else view.pose(truth)
        lines.append(f"  view {r}: {describe_view(view)}")
        for a, name in enumerate(ANGLE_NAMES):
            gt = f", truth {want[a]:7.2f}" if want is not None else ""
            lines.append(f"    {name:5s} teacher {expected[a]:7.2f}{gt}")
        crop = None if image is None else view.crop(image, cache.box(key), *meta.input_size)
        rows.append({"crop": crop, "probs": cache.probs(key, b, r), "expected": expected, "truth": want,
                     "title": f"view {r}: {describe_view(view)}"})
    if png is not None:
        plot_distributions(png, key, rows, b)
        lines.append(f"  wrote {png}")
    return lines
