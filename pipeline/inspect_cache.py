"""``pipeline inspect-cache PATH [--key KEY] [--png out.png]``: what the teacher said.

Prints the schema, provenance, N and bytes per image; for a key, the teacher's expected
angles next to the ground truth of the manifest, and optionally a PNG of the three b1
ensemble distributions (pitch, yaw, roll) with both marked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import bins
from .cache import open_cache
from .manifest import ManifestError, read_manifest
from .draw import save_figure
from .pose import ANGLE_NAMES


def plot_distributions(png: Path, key: str, probs: np.ndarray, bin_size: int,
                       expected: np.ndarray, truth: Optional[np.ndarray]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = bins.centres(bin_size)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
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
                  manifest: Optional[Path] = None, verify: bool = False) -> list[str]:
    """Lines describing a cache (schema, provenance, size); with ``verify``, every row is
    checked first; with ``key``, the teacher's angles beside the manifest's ground truth and,
    with ``png``, its distributions drawn. Raises CacheError for a bad file or key."""
    cache = open_cache(path)
    if verify:
        cache.verify()
    meta = cache.meta
    n = len(cache)
    size = Path(path).stat().st_size
    lines = [f"{path}: schema {meta.schema_version}, {n} samples, {size / max(n, 1):.0f} bytes/image "
             f"(b1 head: {3 * bins.num_bins(1) * 2} bytes/image as float16)",
             f"  ensemble s={meta.s} p={meta.p} A={meta.A}, input {meta.input_size[0]}x"
             f"{meta.input_size[1]}, heads {[bins.head_name(b) for b in meta.bin_sizes]}",
             f"  teacher sha256 {meta.teacher_sha256}", f"  manifest sha256 {meta.manifest_sha256}",
             f"  samples sha256 {meta.samples_sha256}; precision {meta.precision}",
             f"  angles {meta.angle_order}; convention {meta.convention}; code {meta.code_version}"]
    if verify:
        lines.append(f"  verified: {n} rows of {len(meta.bin_sizes)} heads, checksums and distributions")
    if key is None:
        return lines
    expected = cache.expected(key)
    b = meta.expected_bin_size
    probs = cache.probs(key, b)
    truth = None
    try:
        match = [s for s in read_manifest(manifest) if s.key == key] if manifest else []
        truth = np.array(match[0].pose) if match else None
    except ManifestError as exc:
        lines.append(f"  (no ground truth: {exc})")
    for a, name in enumerate(ANGLE_NAMES):
        gt = f", truth {truth[a]:7.2f}" if truth is not None else ""
        lines.append(f"  {name:5s} teacher {expected[a]:7.2f}{gt}")
    if png is not None:
        plot_distributions(png, key, probs, b, expected, truth)
        lines.append(f"  wrote {png}")
    return lines
