"""Samples -> network input: crop to the box (stretched to size x size), RGB, ImageNet
normalisation; with an :class:`~pipeline.augment.Augmenter` for training.

A dataset item is ``{"image": (3, s, s) float32, "pose": (3,) float32 degrees, "index": int}``.
For training the sampler passes ``(epoch, index)`` so that augmentation is seeded from
``(seed, epoch, index)`` (:func:`pipeline.augment.sample_rng`) in whatever worker runs it.
"""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, Augmented, Augmenter, View, sample_rng
from .boxes import apply_boxes, read_boxes
from .image import check_box, load_rgb, to_tensor
from .files import file_sha256
from .manifest import ManifestError, Sample, read_manifest


def load_samples(manifest: str | Path, split: Optional[str] = None, boxes: Optional[str | Path] = None,
                 datasets: Optional[Sequence[str]] = None) -> list[Sample]:
    """Manifest samples of a split, with the relabel stage's boxes if ``boxes`` is given;
    checked up front so that a bad row fails here, naming the file, not inside a worker."""
    samples = read_manifest(manifest, split=split, datasets=datasets)
    if boxes is not None:
        samples = apply_boxes(samples, read_boxes(boxes), where=str(boxes))
    check_samples(samples, str(manifest))
    return samples


def check_samples(samples: Sequence[Sample], where: str) -> None:
    for s in samples:
        if not Path(s.image).is_file():
            raise ManifestError(f"{where}: {s.key}: image file {s.image} not found")
        if not all(math.isfinite(a) for a in s.pose):
            raise ManifestError(f"{where}: {s.key}: pose {s.pose} is not finite")
        x1, y1, x2, y2 = s.box
        if not (x2 > x1 and y2 > y1):
            raise ManifestError(f"{where}: {s.key}: box {s.box} is empty")


def samples_sha256(samples: Sequence[Sample]) -> str:
    """Content fingerprint of what a network or a teacher cache sees of a sample set: per
    sample (sorted by key) its key, its box and the sha256 of its image file's bytes. A replaced
    image or a relabelled box under an unchanged manifest changes it (the poses are in the
    manifest's own sha256). Images are hashed on a few threads (hashlib releases the GIL)."""
    ordered = sorted(samples, key=lambda s: s.key)
    with ThreadPoolExecutor(max_workers=4) as pool:
        image_shas = list(pool.map(lambda s: file_sha256(s.image), ordered))
    h = hashlib.sha256()
    for s, image_sha in zip(ordered, image_shas):
        h.update(("\t".join([s.key, image_sha, *(f"{v:.3f}" for v in s.box)]) + "\n").encode())
    return h.hexdigest()


def holdout_split(samples: Sequence[Sample], fraction: float, group_by: str = "subject"
                  ) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): a stable ``fraction`` of the groups, chosen by hash, so the slice
    does not move when the manifest grows or is reordered. ``group_by="subject"`` keeps all
    images of a face/person (and its _Flip copy) on one side; samples without a subject, or
    ``group_by="key"``, are grouped one by one."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if group_by not in ("subject", "key"):
        raise ValueError(f"group_by must be 'subject' or 'key', got {group_by!r}")

    def held_out(s: Sample) -> bool:
        group = f"{s.dataset}/{s.subject}" if s.subject and group_by == "subject" else s.key
        digest = hashlib.sha256(group.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction

    train = [s for s in samples if not held_out(s)]
    val = [s for s in samples if held_out(s)]
    return train, val


class PoseDataset(Dataset):
    def __init__(self, samples: Sequence[Sample], size: int, augment: Optional[AugmentConfig] = None,
                 seed: int = 0):
        self.samples = list(samples)
        self.size = int(size)
        self.augmenter = Augmenter(augment, self.size) if augment is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def poses(self) -> np.ndarray:
        return np.array([s.pose for s in self.samples], dtype=np.float64).reshape(-1, 3)

    def view(self, item, replay: Optional[View] = None, photometric_seed: Optional[int] = None
             ) -> tuple[int, Augmented]:
        """(index, the crop with its pose and the view it was cut with) of an item; ``replay``:
        cut this view instead of drawing one (a student replaying its teacher cache), and with
        ``photometric_seed`` its photometric steps too (:meth:`pipeline.augment.Augmenter.apply`)."""
        epoch, index = item if isinstance(item, tuple) else (0, item)
        sample = self.samples[index]
        image = load_rgb(sample.image)
        box = check_box(sample.box, image.shape[1], image.shape[0], where=f"{sample.key} ({sample.image})")
        if self.augmenter is None:
            view = replay or View()
            return index, Augmented(view.crop(image, box, self.size, self.size), view.pose(sample.pose), view)
        return index, self.augmenter.apply(image, box, sample.pose, sample_rng(self.seed, epoch, index), replay,
                                           photometric_seed)

    def __getitem__(self, item) -> dict:
        index, view = self.view(item)
        return {"image": to_tensor(view.crop), "pose": torch.as_tensor(view.pose, dtype=torch.float32),
                "index": index}
