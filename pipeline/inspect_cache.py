"""``pipeline inspect-cache PATH [--keys GLOB] [--key KEY] [--png out.png]``: what the teacher said.

Prints the schema, provenance, N and bytes per image; the keys matching a glob; for a key, the
teacher's expected angles next to the ground truth of the manifest, and optionally a PNG of
the face crop the teacher saw (the cached box, at its input size) next to the three b1
ensemble distributions (pitch, yaw, roll) with both angles marked.
"""
from __future__ import annotations

from pathlib import Path
from fnmatch import fnmatchcase
from typing import Optional

import numpy as np

from . import bins
from .cache import open_cache
from .image import ImageError, crop_box, load_rgb
from .manifest import ManifestError, read_manifest
from .draw import save_figure
from .pose import ANGLE_NAMES


def plot_distributions(png: Path, key: str, probs: np.ndarray, bin_size: int,
                       expected: np.ndarray, truth: Optional[np.ndarray],
                       crop: Optional[np.ndarray] = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = bins.centres(bin_size)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), gridspec_kw={"width_ratios": [0.8, 1, 1, 1]})
    axes[0].axis("off")
    if crop is not None:
        axes[0].imshow(crop)
        axes[0].set_title("crop the teacher saw", fontsize=9)
    axes = axes[1:]
    for a, (ax, name) in enumerate(zip(axes, ANGLE_NAMES)):
        ax.bar(centres, probs[a], width=bin_size, color="tab:blue", label="teacher (eq. 6)")
        ax.axvline(expected[a], color="tab:orange", label=f"teacher {expected[a]:.1f}")
        if truth is not None:
            ax.axvline(truth[a], color="black", linestyle="--", label=f"truth {truth[a]:.1f}")
        ax.set_title(name)
        ax.set_xlabel("degrees")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"probability (b{bin_size})")
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
             f"(b1 head: {3 * bins.num_bins(1) * 2} bytes/image as float16)",
             f"  {meta.role or 'role not given'}",
             f"  ensemble s={meta.s} p={meta.p} A={meta.A}, input {meta.input_size[0]}x"
             f"{meta.input_size[1]}, heads {[bins.head_name(b) for b in meta.bin_sizes]}",
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
    expected = cache.expected(key)
    b = meta.expected_bin_size
    probs = cache.probs(key, b)
    truth, crop = None, None
    try:
        match = [s for s in read_manifest(manifest) if s.key == key] if manifest else []
    except ManifestError as exc:
        match = []
        lines.append(f"  (no ground truth: {exc})")
    if match:
        truth = np.array(match[0].pose)
        try:
            h, w = meta.input_size
            crop = crop_box(load_rgb(match[0].image), cache.box(key), h, w)
        except ImageError as exc:
            lines.append(f"  (no crop: {exc})")
    for a, name in enumerate(ANGLE_NAMES):
        gt = f", truth {truth[a]:7.2f}" if truth is not None else ""
        lines.append(f"  {name:5s} teacher {expected[a]:7.2f}{gt}")
    if png is not None:
        plot_distributions(png, key, probs, b, expected, truth, crop)
        lines.append(f"  wrote {png}")
    return lines
