"""What every dataset reader shares: records, bad-input reports, cheap file checks, and the
ordered (optionally threaded) read loop.

A reader lists its items in sorted order and reads each one independently into a
:class:`Record` or a :class:`BadItem`; :func:`read_in_order` keeps that order whatever the
number of workers, so the outcome is the same for every run.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np
import scipy.io
from tqdm import tqdm

from .. import pose as posemod
from ..image import ImageError, load_rgb
from ..manifest import Sample
from ..errors import PipelineError

T = TypeVar("T")


class DatasetError(PipelineError):
    """Bad input in a dataset; the message starts with the offending file."""


@dataclass(frozen=True)
class Record:
    sample: Sample                 # pose in our convention; box = landmark box (or FaceRect)
    rel: str                       # image path relative to the dataset folder ("AFW/x.jpg")
    size: tuple[int, int]          # (width, height) of the decoded image


@dataclass(frozen=True)
class BadItem:
    item: str                      # the image (or AFLW face) that could not be read
    message: str                   # starts with the offending file: "<path>: <problem>"


def find_images(folder: Path, pattern: str, what: str) -> list[Path]:
    """Sorted ``folder.glob(pattern)``; a missing folder or no match is an error naming it."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} folder not found")
    images = sorted(folder.glob(pattern))
    if not images:
        raise DatasetError(f"{folder}: no {pattern} files found")
    return images


def make_key(dataset: str, rel: str, face: Optional[int] = None) -> str:
    """``<DATASET>/<path relative to the dataset folder without extension>[#face]``."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return f"{dataset}/{stem}" + (f"#{face}" if face is not None else "")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image, fully decoded by the loader training uses
    (:func:`pipeline.image.load_rgb`), so an image that prepare keeps also loads in training;
    missing, unreadable or truncated files raise DatasetError naming them."""
    try:
        height, width = load_rgb(path).shape[:2]
    except ImageError as exc:
        raise DatasetError(str(exc)) from None
    return width, height


def load_mat(path: Path, names: Sequence[str]) -> dict:
    """The named variables of a MATLAB file (absent ones are left out)."""
    if not path.is_file():
        raise DatasetError(f"{path}: .mat file not found")
    try:
        data = scipy.io.loadmat(str(path), variable_names=list(names))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DatasetError(f"{path}: not a readable .mat file ({exc})") from None
    return {k: data[k] for k in names if k in data}


def checked_pose(pose: np.ndarray, where: Path | str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in np.asarray(pose, dtype=np.float64).reshape(-1))
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise DatasetError(f"{where}: pose {values} is not three finite angles")
    return values


def landmark_box(points: Optional[np.ndarray]) -> Optional[tuple[float, float, float, float]]:
    """Tight box (x1, y1, x2, y2) of the valid landmarks: finite and both coordinates >= 0
    (AFLW2000 and AFLW mark missing points with negative values). None if none is valid."""
    if points is None:
        return None
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    valid = pts[np.all(np.isfinite(pts), axis=1) & np.all(pts >= 0, axis=1)]
    if len(valid) == 0:
        return None
    x1, y1 = valid.min(axis=0)
    x2, y2 = valid.max(axis=0)
    if x2 <= x1 or y2 <= y1:
        return None
    return float(x1), float(y1), float(x2), float(y2)


def read_in_order(items: Sequence[T], read_one: Callable[[T], Record],
                  name: Callable[[T], str], desc: str, workers: int = 1
                  ) -> tuple[list[Record], list[BadItem]]:
    """Read every item (threads when ``workers`` > 1); results keep the order of ``items``.
    A DatasetError of one item becomes a BadItem; the caller decides to raise or skip."""
    def guarded(item: T) -> Record | BadItem:
        try:
            return read_one(item)
        except DatasetError as exc:
            return BadItem(name(item), str(exc))

    records: list[Record] = []
    bad: list[BadItem] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(guarded, items) if workers > 1 else map(guarded, items)
        for result in tqdm(results, total=len(items), desc=desc, unit="item", mininterval=1.0):
            (bad if isinstance(result, BadItem) else records).append(result)
    return records, bad


def record_from_mat(dataset: str, dataset_dir: Path, image: Path, subject: str = "") -> Record:
    """One 300W-LP / AFLW2000 image and its same-stem ``.mat`` (3DDFA fit):
    ``Pose_Para`` 1x7 (pitch, yaw, roll radians first), ``pt2d`` 2xK landmarks."""
    size = image_size(image)
    mat_path = image.with_suffix(".mat")
    mat = load_mat(mat_path, ["Pose_Para", "pt2d"])
    if "Pose_Para" not in mat:
        raise DatasetError(f"{mat_path}: no 'Pose_Para' variable")
    para = np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1)
    if para.size < 3:
        raise DatasetError(f"{mat_path}: Pose_Para has {para.size} values, need at least 3")
    pose = checked_pose(posemod.pose_from_pose_para(para), mat_path)
    landmarks = None
    if "pt2d" in mat:
        pt2d = np.asarray(mat["pt2d"], dtype=np.float64)
        if pt2d.ndim != 2 or pt2d.shape[0] != 2:
            raise DatasetError(f"{mat_path}: pt2d must be 2xK, got shape {pt2d.shape}")
        landmarks = pt2d.T.copy()
    rel = image.relative_to(dataset_dir).as_posix()
    sample = Sample(key=make_key(dataset, rel), dataset=dataset, image=str(image), pose=pose,
                    box=landmark_box(landmarks), subject=subject, landmarks=landmarks)
    return Record(sample, rel, size)
