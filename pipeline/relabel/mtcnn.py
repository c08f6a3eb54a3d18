"""``mtcnn`` backend: the MTCNN detector of :mod:`pipeline.mtcnn` (pretrained weights from the
`mtcnn` wheel, the ``deploy`` extra), the detector ``pipeline predict`` uses by default, so a
network trained on these boxes sees the same boxes at inference."""
from __future__ import annotations

import numpy as np

from ..boxes import Box
from ..manifest import Sample
from .config import MtcnnConfig


class MtcnnDetector:
    name = "mtcnn"
    needs_image = True

    def __init__(self, config: MtcnnConfig):
        self.config = config
        self._net = None
        self._ensure()          # missing weights fail here, in the parent process

    def __getstate__(self):     # workers build their own networks
        return {"config": self.config, "_net": None}

    def _ensure(self):
        if self._net is None:
            from ..mtcnn import MTCNN
            self._net = MTCNN(min_face=self.config.min_face, min_score=self.config.min_score)
        return self._net

    def detect(self, image: np.ndarray, sample: Sample) -> list[Box]:
        return [box for box, _ in self._ensure()(image)]
