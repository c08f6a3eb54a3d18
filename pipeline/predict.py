"""Head pose on new images: the Python API behind ``pipeline predict``.

>>> estimator = PoseEstimator("checkpoints/students/efficientnet_lite0-seed0.pt")  # or an exported .onnx
>>> faces = estimator(rgb_image)          # HxWx3 uint8, RGB (cv2.imread gives BGR: convert it)
>>> faces[0].box, faces[0].pitch, faces[0].yaw, faces[0].roll

Faces are found by a detector (``"mtcnn"``: :mod:`pipeline.mtcnn`, pretrained weights from the
`mtcnn` wheel; ``"haar"``: OpenCV's bundled cascades, as the relabel stage's ``haar`` backend; or
``None`` and boxes given to :meth:`PoseEstimator.angles`), each keeping the boxes that score
``min_score`` (by default the relabel stage's: ``relabel.mtcnn.min_score``, the face probability;
``relabel.haar.min_neighbors``, the neighbours), cropped exactly
as in training (:func:`pipeline.image.crop_box` at the network's input size, ImageNet
normalisation) and run in batches. Angles are degrees, (pitch, yaw, roll) in the project's
convention (README "Conventions"). A network is only as good as the agreement between these
boxes and its training boxes: use the detector the relabel stage used for training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .boxes import Box
from .errors import PipelineError, one_line
from .image import crop_box, to_tensor_batch
from .pose import rotation_from_pose

# two detections are one face (the larger is kept) when their intersection covers more than this
# share of the smaller: the profile cascade often fires on part of a face the frontal one found
NMS_OVERLAP = 0.5


class PredictError(PipelineError):
    pass


@dataclass(frozen=True)
class Face:
    box: Box                  # x1, y1, x2, y2 in image pixels
    score: float              # the detector's score: MTCNN's face probability, Haar's neighbours
    pitch: float
    yaw: float
    roll: float

    def rotation(self) -> np.ndarray:
        """3x3 rotation matrix of the pose (R = Rx(pitch) Ry(yaw) Rz(roll), OpenCV camera frame)."""
        return rotation_from_pose((self.pitch, self.yaw, self.roll))


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area (1 when one box holds the other)."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / min(_area(a), _area(b)) if inter else 0.0


def non_max_suppression(boxes: Sequence[Box], threshold: float = NMS_OVERLAP) -> list[Box]:
    """Largest first, dropping every box that overlaps a kept one by more than ``threshold``
    (:func:`overlap`)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=_area, reverse=True):
        if all(overlap(box, k) <= threshold for k in kept):
            kept.append(tuple(float(v) for v in box))
    return kept


class HaarFaces:
    """OpenCV's frontal + profile (both sides) cascades, merged by :func:`non_max_suppression`;
    score: the box's neighbours (:meth:`pipeline.relabel.HaarDetector.detect_scored`), at least
    ``min_score`` (default ``relabel.haar.min_neighbors``)."""

    def __init__(self, min_score: Optional[float] = None):
        from .relabel.config import HaarConfig
        from .relabel.haar import HaarDetector
        if min_score is not None and (min_score < 0 or min_score != int(min_score)):
            raise PredictError(f"min_score: the haar detector's score is a count of neighbours, got {min_score}")
        config = HaarConfig() if min_score is None else HaarConfig(min_neighbors=int(min_score))
        self.min_score, self._detector = config.min_neighbors, HaarDetector(config)

    def __call__(self, image: np.ndarray) -> list[tuple[Box, float]]:
        neighbours: dict[Box, int] = {}
        for box, n in self._detector.detect_scored(image):
            neighbours[box] = max(n, neighbours.get(box, n))
        return [(box, float(neighbours[box])) for box in non_max_suppression(list(neighbours))]


class MtcnnFaces:
    """MTCNN (:mod:`pipeline.mtcnn`): boxes with the O-Net face probability as score, best first,
    above ``min_score`` (default ``relabel.mtcnn.min_score``)."""

    def __init__(self, min_score: Optional[float] = None):
        from .mtcnn import MTCNN
        from .relabel.config import MtcnnConfig
        if min_score is not None and not 0 <= min_score <= 1:
            raise PredictError(f"min_score: the mtcnn detector's score is a probability in [0, 1], got {min_score}")
        config = MtcnnConfig() if min_score is None else MtcnnConfig(min_score=min_score)
        self.min_score, self._detector = config.min_score, MTCNN(config.min_face, config.min_score)

    def __call__(self, image: np.ndarray) -> list[tuple[Box, float]]:
        return self._detector(image)          # MTCNN returns them best first (nms keeps score order)


DETECTORS = {"mtcnn": MtcnnFaces, "haar": HaarFaces}


class _TorchNet:
    def __init__(self, path: Path, device: str):
        from .export import AngleNet
        from .model import load_checkpoint
        model, _ = load_checkpoint(path, map_location=device)
        self.net, self.device, self.input_size = AngleNet(model).eval(), torch.device(device), model.input_size

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(batch).to(self.device)).cpu().numpy()


class _OnnxNet:
    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort
        from .export import read_metadata
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:        # onnx and onnxruntime raise their own types for a damaged or foreign file
            meta = read_metadata(path)
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise PredictError(f"{path}: not a readable ONNX model ({one_line(exc)})") from None
        if "input_size" not in meta:
            raise PredictError(f"{path}: not a file of `pipeline export` (no input_size in its metadata)")
        self.input_size = json.loads(meta["input_size"])[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["angles"], {"image": batch})[0]


def load_network(path: str | Path, device: str = "cpu", threads: int = 0):
    """A callable (N, 3, H, W) float32 normalised crops -> (N, 3) degrees, from a checkpoint
    (``.pt``) or an exported ONNX file (``.onnx``); ``.input_size`` is its H (= W)."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such model file")
    return _OnnxNet(path, threads) if path.suffix == ".onnx" else _TorchNet(path, device)


class PoseEstimator:
    """Load a network (and a detector) once; call it on RGB images."""

    def __init__(self, model: str | Path, detector: Optional[str] = "mtcnn", device: str = "cpu",
                 batch_size: int = 32, threads: int = 0, min_score: Optional[float] = None):
        self.net = load_network(model, device, threads)
        if detector is not None and detector not in DETECTORS:
            raise PredictError(f"detector: {detector!r} is not one of {sorted(DETECTORS)} or None")
        self.detector = DETECTORS[detector](min_score) if detector else None
        self.batch_size = batch_size

    def crops(self, image: np.ndarray, boxes: Sequence[Box], angle_ccw: float = 0.0) -> np.ndarray:
        """(N, 3, S, S) float32: each box cropped and normalised as in training (``angle_ccw``: of
        the image turned that many degrees about the box centre, as the augmentation does)."""
        size = self.net.input_size
        return to_tensor_batch(np.stack([crop_box(image, box, size, size, angle_ccw=angle_ccw)
                                         for box in boxes])).numpy()

    def angles(self, image: np.ndarray, boxes: Sequence[Box], angle_ccw: float = 0.0) -> np.ndarray:
        """(N, 3) degrees (pitch, yaw, roll) of the faces in ``boxes`` of an RGB image (turned by
        ``angle_ccw`` degrees about each box centre)."""
        if not len(boxes):
            return np.zeros((0, 3), np.float32)
        out = [self.net(self.crops(image, boxes[i:i + self.batch_size], angle_ccw))
               for i in range(0, len(boxes), self.batch_size)]
        return np.concatenate(out)

    def __call__(self, image: np.ndarray) -> list[Face]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PredictError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        if self.detector is None:
            raise PredictError("no detector: give the boxes to PoseEstimator.angles(image, boxes)")
        found = self.detector(image)
        angles = self.angles(image, [box for box, _ in found])
        return [Face(box, score, *map(float, a)) for (box, score), a in zip(found, angles)]
