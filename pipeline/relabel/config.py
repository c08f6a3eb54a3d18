"""Typed params of the relabel stage (``params.yaml`` block ``relabel``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BACKENDS = ("haar", "yunet", "landmarks", "json")


@dataclass(frozen=True)
class HaarConfig:
    scale_factor: float = 1.1      # cv2.CascadeClassifier.detectMultiScale
    min_neighbors: int = 5
    min_size: int = 24             # smallest face side in pixels

    def __post_init__(self):
        if self.scale_factor <= 1.0 or self.min_neighbors < 0 or self.min_size < 1:
            raise ValueError("haar: scale_factor must be > 1, min_neighbors >= 0, min_size >= 1 "
                             f"(got {self.scale_factor}, {self.min_neighbors}, {self.min_size})")


@dataclass(frozen=True)
class YuNetConfig:
    model: Path = Path("models/face_detection_yunet_2023mar.onnx")
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 50


@dataclass(frozen=True)
class RelabelConfig:
    manifest: Path = Path("data/manifest.csv")
    boxes: Path = Path("data/boxes.csv")
    report: Path = Path("data/relabel-report.json")
    backend: Literal["haar", "yunet", "landmarks", "json"] = "landmarks"
    landmark_scale: float = 1.2    # fallback / landmarks box: square of side scale * max(w, h)
    min_iou: float = 0.2           # a detection below this IoU with the landmark box falls back
    haar: HaarConfig = field(default_factory=HaarConfig)
    yunet: YuNetConfig = field(default_factory=YuNetConfig)
    json_files: dict[str, Path] = field(default_factory=dict)   # dataset -> published box file
    workers: int = 0               # processes; 0 = all cores (output does not depend on it)
    chunksize: int = 16

    def __post_init__(self):
        if self.landmark_scale <= 0:
            raise ValueError(f"landmark_scale must be > 0, got {self.landmark_scale}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        if self.workers < 0 or self.chunksize < 1:
            raise ValueError("workers must be >= 0 and chunksize >= 1")
