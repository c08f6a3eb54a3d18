"""``json`` backend: the published box files of the paper's authors (ref. [73]).

One file per dataset (``relabel.json_files``: dataset -> path), in the authors' format
(:mod:`pipeline.boxes`). A sample is found by its key ``<dataset>/<relative path without
suffix>[#face]``: the file's names are compared without their suffix, first with the key's
relative path, then with the trailing parts of the sample's image path (for files written
against another dataset root). Faces whose ``type`` is absent or equals the sample's split
are preferred, then ``#face`` selects the face with that ``faceid``, then the best IoU with
the landmark box decides: :func:`pipeline.boxes.select_published`, the rule the protocols
use too. The chosen box is the one candidate handed to the runner, which judges its IoU
against ``min_iou`` like a detector's.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Mapping, Optional

import numpy as np

from ..boxes import Box, PublishedBox, read_box_json, select_published
from ..manifest import Sample
from .errors import RelabelError


def _stem_path(name: str) -> str:
    return str(PurePosixPath(name.replace("\\", "/")).with_suffix(""))


def split_key(sample: Sample) -> tuple[str, Optional[int]]:
    """(relative path without suffix, face id or None) of a manifest key."""
    rel = sample.key[len(sample.dataset) + 1:] if sample.key.startswith(sample.dataset + "/") else sample.key
    rel, _, face = rel.partition("#")
    return rel, int(face) if face.isdigit() else None


class PublishedBoxes:
    name = "json"
    needs_image = False

    def __init__(self, files: Mapping[str, Path], datasets: set[str]):
        missing = sorted(datasets - set(files))
        if missing:
            raise RelabelError(f"relabel.json_files: no box file for dataset(s) {missing} "
                               f"(configured: {sorted(files)})")
        self.index: dict[str, dict[str, list[PublishedBox]]] = {}
        for dataset in sorted(datasets):
            entries = read_box_json(files[dataset])        # BoxFileError names the file
            self.index[dataset] = {_stem_path(name): faces for name, faces in entries.items()}

    def _lookup(self, sample: Sample) -> Optional[list[PublishedBox]]:
        table = self.index[sample.dataset]
        rel, _ = split_key(sample)
        if rel in table:
            return table[rel]
        parts = PurePosixPath(_stem_path(sample.image)).parts
        for start in range(len(parts)):
            tail = "/".join(parts[start:])
            if tail in table:
                return table[tail]
        return None

    def detect(self, image: Optional[np.ndarray], sample: Sample) -> Optional[list[Box]]:
        """[the box of this face], [] if the image lists no face, None if it is not listed."""
        faces = self._lookup(sample)
        if faces is None:
            return None
        box = select_published(faces, sample.split, split_key(sample)[1],
                               reference=sample.box, min_iou=None)
        return [box] if box is not None else []
