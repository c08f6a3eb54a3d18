"""300W-LP reader: ``<root>/300W_LP/<sub>/*.jpg`` with same-stem ``.mat`` files.

Sub-folders are AFW, HELEN, IBUG, LFPW and their ``_Flip`` twins; the ``landmarks/``
folder (no images of its own) is skipped. Subject = the source face, i.e. the file stem
without the trailing pose-variant index (``AFW_134212_1_3`` -> ``AFW_134212_1``), so the
synthesised variants and the flips of one face share it.
"""
from __future__ import annotations

from pathlib import Path

from .common import BadItem, DatasetError, Record, read_in_order, record_from_mat

NAME = "300W_LP"
SKIPPED_FOLDERS = ("landmarks",)


def list_images(data_root: str | Path) -> list[Path]:
    folder = Path(data_root) / NAME
    if not folder.is_dir():
        raise DatasetError(f"{folder}: 300W-LP folder not found")
    images = sorted(p for sub in sorted(folder.iterdir())
                    if sub.is_dir() and sub.name not in SKIPPED_FOLDERS
                    for p in sub.glob("*.jpg"))
    if not images:
        raise DatasetError(f"{folder}: no <sub>/*.jpg images found")
    return images


def source_face(stem: str) -> str:
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else stem


def read(data_root: str | Path, workers: int = 1) -> tuple[list[Record], list[BadItem]]:
    folder = Path(data_root) / NAME
    return read_in_order(
        list_images(data_root),
        lambda p: record_from_mat(NAME, folder, p, subject=source_face(p.stem)),
        str, desc=NAME, workers=workers)
