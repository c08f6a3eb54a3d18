"""A tiny project for the stage tests: random-noise images with random poses and a fixed box,
their manifest, and a random (untrained) ResNet18 teacher checkpoint."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.manifest import Sample, write_manifest
from pipeline.files import file_sha256
from pipeline.model import build_model, checkpoint_meta

BOX = (6.0, 8.0, 26.0, 32.0)


def noise_samples(folder: Path, n_train: int, n_test: int, pose_limit: float,
                  test_dataset: str = "SYN") -> list[Sample]:
    """n_train + n_test 40x36 noise PNGs under ``folder/img``; train samples come first."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n_train + n_test):
        image = folder / "img" / f"{i}.png"
        image.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(image), rng.integers(0, 256, (40, 36, 3), dtype=np.uint8))
        train = i < n_train
        samples.append(Sample(key=f"SYN/{i:03d}", dataset="SYN" if train else test_dataset,
                              image=str(image), pose=tuple(rng.uniform(-pose_limit, pose_limit, 3)),
                              box=BOX, split="train" if train else "test"))
    return samples


def write_project(folder: Path, samples: list[Sample], size: int, config: dict | None = None):
    """The manifest and a random teacher checkpoint (seed 0; ``config``: its training config)
    -> (manifest path, teacher model)."""
    manifest = folder / "manifest.csv"
    write_manifest(manifest, samples)
    torch.manual_seed(0)
    teacher = build_model("resnet18", input_size=size).eval()
    torch.save({"model": teacher.state_dict(), "meta": checkpoint_meta(teacher, config or {}, file_sha256(manifest))},
               folder / "teacher.pt")
    return manifest, teacher
