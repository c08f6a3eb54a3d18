"""``haar`` backend: OpenCV's bundled Haar cascades (``cv2.data.haarcascades``, offline).

The frontal cascade runs on the image; the profile cascade, trained on one side only, runs
on the image and on its mirror (boxes mapped back), so faces turned either way are found.
All candidates go to :func:`pipeline.relabel.matching.choose_box`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..boxes import Box
from ..manifest import Sample
from .config import HaarConfig
from .errors import DetectorError

FRONTAL = "haarcascade_frontalface_default.xml"
PROFILE = "haarcascade_profileface.xml"


def mirror_boxes(boxes: list[Box], width: int) -> list[Box]:
    """Boxes found on the horizontally flipped image, in the original image's pixels."""
    return [(width - x2, y1, width - x1, y2) for x1, y1, x2, y2 in boxes]


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DetectorError(f"{path}: cannot load the Haar cascade (opencv-python-headless 4.x "
                            "ships it; OpenCV 5 dropped the cascades)")
    return cascade


class HaarDetector:
    name = "haar"
    needs_image = True

    def __init__(self, config: HaarConfig):
        self.config = config
        self._cascades: Optional[tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]] = None
        self._ensure()          # fail early, in the parent process, if a cascade is missing

    def __getstate__(self):     # cascades cannot be pickled: workers load their own
        return {"config": self.config, "_cascades": None}

    def _ensure(self):
        if self._cascades is None:
            self._cascades = (_load_cascade(FRONTAL), _load_cascade(PROFILE))
        return self._cascades

    def _run(self, cascade, gray: np.ndarray) -> list[tuple[Box, int]]:
        c = self.config
        found, counts = cascade.detectMultiScale2(gray, scaleFactor=c.scale_factor, minNeighbors=c.min_neighbors,
                                                  minSize=(c.min_size, c.min_size))
        return [((float(x), float(y), float(x + w), float(y + h)), int(n) - 1) for (x, y, w, h), n in zip(found, counts)]

    def detect_scored(self, image: np.ndarray) -> list[tuple[Box, int]]:
        """(box, neighbours): the detections the cascade merged into the box, less itself; a box
        is kept with at least ``min_neighbors`` (OpenCV's rule), so that is its score threshold."""
        frontal, profile = self._ensure()
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        mirrored = [(mirror_boxes([box], gray.shape[1])[0], n)
                    for box, n in self._run(profile, np.ascontiguousarray(gray[:, ::-1]))]
        return self._run(frontal, gray) + self._run(profile, gray) + mirrored

    def detect(self, image: np.ndarray, sample: Sample) -> list[Box]:
        return [box for box, _ in self.detect_scored(image)]
