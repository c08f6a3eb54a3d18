"""``json`` backend: the published box files of the paper's authors (ref. [73]).

One file per dataset (``relabel.json_files``: dataset -> path), in the authors' format and
key layout (:mod:`pipeline.boxes`). A sample is found under :func:`pipeline.boxes.published_key`,
the rule the protocols use too; a file that lists almost none of its dataset's samples is an
error (:func:`pipeline.boxes.check_listed`). Faces whose ``type`` is absent or equals the
sample's split are preferred, then the key's ``#face`` selects the face with that ``faceid``,
then the best IoU with the landmark box decides (:func:`pipeline.boxes.select_published`). The
chosen box is the one candidate handed to the runner, which judges its IoU against
``min_iou`` like a detector's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ..boxes import Box, PublishedBox, check_listed, published_key, read_box_json, select_published
from ..manifest import Sample
from .errors import RelabelError


class PublishedBoxes:
    name = "json"
    needs_image = False

    def __init__(self, files: Mapping[str, Path], samples: Sequence[Sample]):
        datasets = {s.dataset for s in samples}
        missing = sorted(datasets - set(files))
        if missing:
            raise RelabelError(f"relabel.json_files: no box file for dataset(s) {missing} "
                               f"(configured: {sorted(files)})")
        self.index: dict[str, dict[str, list[PublishedBox]]] = {}
        for dataset in sorted(datasets):
            self.index[dataset] = read_box_json(files[dataset])   # BoxFileError names the file
            check_listed(files[dataset], dataset, self.index[dataset],
                         (s for s in samples if s.dataset == dataset))

    def detect(self, image: Optional[np.ndarray], sample: Sample) -> Optional[list[Box]]:
        """[the box of this face], [] if the image lists no face, None if it is not listed."""
        name, faceid = published_key(sample)
        faces = self.index[sample.dataset].get(name)
        if faces is None:
            return None
        box = select_published(faces, sample.split, faceid, reference=sample.box, min_iou=None)
        return [box] if box is not None else []
