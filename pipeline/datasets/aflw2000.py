"""AFLW2000 reader: ``<root>/AFLW2000/image*.jpg`` with same-stem ``.mat`` files
(``Pose_Para``; ``pt2d`` 2xK with negative coordinates for missing points)."""
from __future__ import annotations

from pathlib import Path

from .common import BadItem, Record, find_images, read_in_order, record_from_mat

NAME = "AFLW2000"


def list_images(data_root: str | Path) -> list[Path]:
    return find_images(Path(data_root) / NAME, "image*.jpg", "AFLW2000")


def read(data_root: str | Path, workers: int = 1) -> tuple[list[Record], list[BadItem]]:
    folder = Path(data_root) / NAME
    return read_in_order(list_images(data_root), lambda p: record_from_mat(NAME, folder, p),
                         str, desc=NAME, workers=workers)
