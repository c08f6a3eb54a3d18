"""BIWI Kinect head pose reader: ``<root>/BIWI/hpdb/NN/frame_XXXXX_rgb.png`` with
``frame_XXXXX_pose.txt`` beside it.

``_pose.txt`` layout (as in the real database): three lines with the rows of the 3x3
rotation, a blank line, one line with the head centre translation (mm); numbers are space
separated, lines may have trailing spaces. Subject = the folder name ``NN``. BIWI has no
landmarks: its boxes come from a box file only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import pose as posemod
from ..files import read_text
from ..manifest import Sample
from .common import (BadItem, DatasetError, Record, find_images, checked_pose, image_size, make_key,
                     read_in_order)

NAME = "BIWI"
IMAGES_DIR = "hpdb"


def list_images(data_root: str | Path) -> list[Path]:
    return find_images(Path(data_root) / NAME / IMAGES_DIR, "[0-9]*/frame_*_rgb.png", "BIWI hpdb")


def read_pose_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 rotation as stored, translation) from a ``_pose.txt`` file."""
    text = read_text(path, DatasetError, "pose file not found")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if len(rows) != 4 or any(len(r) != 3 for r in rows):
        raise DatasetError(f"{path}: malformed pose file: expected 3 rotation rows and 1 "
                           f"translation row of 3 numbers, got rows of {[len(r) for r in rows]}")
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        raise DatasetError(f"{path}: malformed pose file: non-numeric value") from None
    return values[:3], values[3]


def read_frame(dataset_dir: Path, image: Path) -> Record:
    size = image_size(image)
    pose_path = image.with_name(image.name.replace("_rgb.png", "_pose.txt"))
    matrix, _ = read_pose_txt(pose_path)
    try:
        pose = posemod.pose_from_biwi_matrix(matrix)
    except ValueError as exc:
        raise DatasetError(f"{pose_path}: {exc}") from None
    rel = image.relative_to(dataset_dir).as_posix()
    sample = Sample(key=make_key(NAME, rel), dataset=NAME, image=str(image),
                    pose=checked_pose(pose, pose_path), box=None, subject=image.parent.name)
    return Record(sample, rel, size)


def read(data_root: str | Path, workers: int = 1) -> tuple[list[Record], list[BadItem]]:
    folder = Path(data_root) / NAME
    return read_in_order(list_images(data_root), lambda p: read_frame(folder, p),
                         str, desc=NAME, workers=workers)
