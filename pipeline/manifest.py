"""Samples and the manifest file that every stage after ``prepare`` reads.

The manifest is a CSV with a fixed column order and fixed float formatting, sorted by key,
so that the same inputs always give the same bytes (its sha256 is provenance for the cache).
Poses follow :mod:`pipeline.pose` (degrees, pitch/yaw/roll); boxes are (x1, y1, x2, y2)
pixels in the source image.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from .errors import PipelineError
from .files import atomic_write_bytes, read_text

COLUMNS = ("key", "dataset", "split", "subject", "image",
           "pitch", "yaw", "roll", "x1", "y1", "x2", "y2")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sample:
    key: str                      # unique, stable: "<dataset>/<relative path without suffix>[#face]"
    dataset: str                  # "300W_LP", "AFLW2000", "BIWI", "AFLW"
    image: str                    # path of the image file
    pose: tuple[float, float, float]
    box: Optional[tuple[float, float, float, float]] = None   # landmark (or published) box
    split: str = "train"
    subject: str = ""             # BIWI subject id, AFLW face id, ...
    landmarks: Optional[np.ndarray] = field(default=None, compare=False, repr=False)  # (K, 2)


class ManifestError(PipelineError):
    pass


def _fmt(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return "0." + "0" * digits if text == "-0." + "0" * digits else text


def manifest_bytes(samples: Iterable[Sample]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = sorted(samples, key=lambda s: s.key)
    keys = [s.key for s in rows]
    dupes = {k for k, n in zip(keys, keys[1:]) if k == n}
    if dupes:
        raise ManifestError(f"duplicate sample keys: {sorted(dupes)[:5]}")
    for s in rows:
        if s.split not in SPLITS:
            raise ManifestError(f"{s.key}: split must be one of {SPLITS}, got {s.split!r}")
        if s.box is None:
            raise ManifestError(f"{s.key}: sample has no box (count and drop it before writing)")
        writer.writerow([s.key, s.dataset, s.split, s.subject, s.image,
                         *(_fmt(a, 6) for a in s.pose), *(_fmt(c, 3) for c in s.box)])
    return buf.getvalue().encode()


def write_manifest(path: str | Path, samples: Iterable[Sample]) -> str:
    """Write the manifest atomically; returns its sha256."""
    data = manifest_bytes(samples)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: str | Path, split: Optional[str] = None,
                  datasets: Optional[Sequence[str]] = None) -> list[Sample]:
    """Read a manifest, optionally only one split and/or some datasets."""
    path = Path(path)
    text = read_text(path, ManifestError, "manifest not found (run the prepare stage)")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if tuple(header or ()) != COLUMNS:
        raise ManifestError(f"{path}: header {header} is not {list(COLUMNS)}")
    out = []
    first_line: dict[str, int] = {}
    for lineno, row in enumerate(reader, start=2):
        if len(row) != len(COLUMNS):
            raise ManifestError(f"{path}:{lineno}: expected {len(COLUMNS)} columns, got {len(row)}")
        if first_line.setdefault(row[0], lineno) != lineno:
            raise ManifestError(f"{path}:{lineno}: duplicate key {row[0]!r} (first on line "
                                f"{first_line[row[0]]})")
        try:
            nums = [float(v) for v in row[5:]]
        except ValueError as exc:
            raise ManifestError(f"{path}:{lineno}: {exc}") from None
        sample = Sample(key=row[0], dataset=row[1], split=row[2], subject=row[3], image=row[4],
                        pose=tuple(nums[:3]), box=tuple(nums[3:]))
        if split is not None and sample.split != split:
            continue
        if datasets is not None and sample.dataset not in datasets:
            continue
        out.append(sample)
    return out


def poses_array(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.pose for s in samples], dtype=np.float64).reshape(-1, 3)
