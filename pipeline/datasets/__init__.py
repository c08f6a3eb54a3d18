"""Dataset readers. Each reads one dataset in its real layout into :class:`Record` objects
(a :class:`pipeline.manifest.Sample` with the pose in our convention, plus what box
matching needs) and :class:`BadItem` reports, in a sorted, deterministic order."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import aflw, aflw2000, biwi, w300lp
from .common import BadItem, DatasetError, Record, landmark_box, make_key

Reader = Callable[..., tuple[list[Record], list[BadItem]]]

# dataset -> the folder below the dataset folder that holds its images, where that is not
# the dataset folder itself (the published box files' keys are relative to it)
IMAGE_FOLDERS: dict[str, str] = {aflw.NAME: aflw.IMAGES_DIR, biwi.NAME: biwi.IMAGES_DIR}

READERS: dict[str, Reader] = {
    w300lp.NAME: w300lp.read,
    aflw2000.NAME: aflw2000.read,
    biwi.NAME: biwi.read,
    aflw.NAME: aflw.read,
}


def read_dataset(name: str, data_root: str | Path, workers: int = 1
                 ) -> tuple[list[Record], list[BadItem]]:
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(READERS)})")
    return READERS[name](data_root, workers=workers)


__all__ = ["IMAGE_FOLDERS", "READERS", "BadItem", "DatasetError", "Record", "landmark_box", "make_key",
           "read_dataset"]
