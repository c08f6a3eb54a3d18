"""``yunet`` backend: ``cv2.FaceDetectorYN`` with OpenCV Zoo's YuNet ONNX model.

The model is not shipped with the project. Download ``face_detection_yunet_2023mar.onnx``
from https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet and put it
at the path given by ``relabel.yunet.model`` (default ``models/face_detection_yunet_2023mar.onnx``).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..boxes import Box
from ..manifest import Sample
from .config import YuNetConfig
from .errors import DetectorError

MODEL_NAME = "face_detection_yunet_2023mar.onnx"
MODEL_URL = ("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
             + MODEL_NAME)


class YuNetDetector:
    name = "yunet"
    needs_image = True

    def __init__(self, config: YuNetConfig):
        model = Path(config.model)
        if not model.is_file():
            raise DetectorError(
                f"{model}: YuNet model file not found. Download {MODEL_NAME} from OpenCV Zoo "
                f"({MODEL_URL}) and put it at {model} (or set relabel.yunet.model to its path).")
        self.config = config
        self._net = None
        self._ensure()          # a file that is not a YuNet ONNX model fails here, not in a worker

    def __getstate__(self):     # the cv2 net cannot be pickled: workers build their own
        return {"config": self.config, "_net": None}

    def _ensure(self):
        if self._net is None:
            c = self.config
            try:
                self._net = cv2.FaceDetectorYN.create(str(c.model), "", (320, 320), c.score_threshold,
                                                      c.nms_threshold, c.top_k)
            except cv2.error as exc:
                raise DetectorError(f"{c.model}: not a usable YuNet ONNX model: {exc}") from None
        return self._net

    def detect(self, image: np.ndarray, sample: Sample) -> list[Box]:
        net = self._ensure()
        height, width = image.shape[:2]
        net.setInputSize((width, height))
        # YuNet was trained on OpenCV's BGR order; the project's images are RGB (pipeline.image).
        _, faces = net.detect(np.ascontiguousarray(image[:, :, ::-1]))
        if faces is None:
            return []
        return [(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in faces[:, :4]]
