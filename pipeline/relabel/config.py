"""Typed params of the relabel stage (``params.yaml`` block ``relabel``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from ..config import FromPaths, Above, NonNegative, Positive, PositiveFloat, Probability


@dataclass(frozen=True, kw_only=True)
class HaarConfig:
    scale_factor: Annotated[float, Above(1)] = 1.1   # cv2.CascadeClassifier.detectMultiScale
    min_neighbors: NonNegative = 5   # the score threshold: detections merged into a box, less itself
    min_size: Positive = 24        # smallest face side in pixels


@dataclass(frozen=True, kw_only=True)
class YuNetConfig:
    model: Path = Path("models/face_detection_yunet_2023mar.onnx")
    score_threshold: Probability = 0.6
    nms_threshold: Probability = 0.3
    top_k: Positive = 50


@dataclass(frozen=True, kw_only=True)
class MtcnnConfig:
    min_face: Positive = 20        # smallest face side in pixels (the image pyramid's first scale)
    # the score threshold: O-Net's face probability a box needs (published cascade: 0.8); chosen
    # with `pipeline bench detect` (README "Use a trained network"): the astronaut's collar scores 0.83
    min_score: Probability = 0.9


@dataclass(frozen=True, kw_only=True)
class RelabelConfig:
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Path, FromPaths("boxes")]
    report: Path = Path("data/relabel-report.json")
    metrics: Path = Path("metrics/relabel.json")    # the headline counts and wall time
    backend: Literal["haar", "yunet", "mtcnn", "landmarks", "json"] = "landmarks"
    landmark_scale: PositiveFloat = 1.2   # fallback / landmarks box: square of side scale * max(w, h)
    min_iou: Probability = 0.2     # a detection below this IoU with the landmark box falls back
    haar: HaarConfig = field(default_factory=HaarConfig)
    yunet: YuNetConfig = field(default_factory=YuNetConfig)
    mtcnn: MtcnnConfig = field(default_factory=MtcnnConfig)
    json_files: dict[str, Path] = field(default_factory=dict)   # dataset -> published box file
    workers: NonNegative = 0       # processes; 0 = all cores (output does not depend on it)
    chunksize: Positive = 16
