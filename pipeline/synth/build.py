"""``generate(cfg)``: the embedded synthetic dataset in the real formats of 300W-LP,
AFLW2000 and BIWI, plus published-style box files and a contact sheet.

Every sample draws its randomness from ``(seed, set, index)`` only, so any number of worker
processes writes the same bytes as one. The dataset is built in ``<out>.tmp`` and renamed
into place at the end: an interrupted run never leaves a complete-looking half dataset.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import cv2
import numpy as np
from tqdm import tqdm

from ..config import (AtLeast, Fraction, InRange, NonNegative, NonNegativeFloat, Positive, Probability, as_dict,
                      check_fields)
from ..datasets import biwi
from ..image import encode_image
from ..files import atomic_folder, atomic_write_bytes
from ..stage_metrics import write_stage_metrics
from ..pose import flip_pose, in_range, rotation_from_pose
from ..protocols import BIWI_TEST_SUBJECTS
from . import writers
from .contact import contact_sheet
from .head import FLIP_68, aflw21, landmarks_68, random_head
from .poses import canonical, sample_pose, trajectory
from .render import Camera, project, render, to_camera, visible
from .scene import background, degrade, lighting, occlude, to_uint8

SUBSETS_300W_LP = ("AFW", "HELEN", "IBUG", "LFPW")
_SET_CODES = {"300W_LP": 1, "AFLW2000": 2, "BIWI": 3}
_HEAD_MM = 230.0   # head height incl. hair, for the image scale
_NOISE_STREAM = 7  # the label noise's random stream: apart from everything the image is made of


Pixels = Annotated[int, AtLeast(32)]           # a rendered image side
Quality = Annotated[int, InRange(1, 100)]      # JPEG quality


@dataclass(frozen=True)
class SynthConfig:
    out_dir: Path = Path("data/synth")
    seed: NonNegative = 0
    train_count: NonNegative = 3000  # 300W-LP-like images (before the _Flip copies)
    flip_fraction: Probability = 0.1   # of those, also written mirrored in <SET>_Flip/ (1: all, as 300W-LP)
    aflw2000_count: NonNegative = 500
    biwi_subjects: NonNegative = 8   # folders hpdb/01 ...; 06, 07, ... are protocol-3 test
    biwi_frames: NonNegative = 60
    out_of_range: Fraction = 0.02    # fraction with an angle beyond 99 degrees (1 would keep none)
    # sigma (degrees) of Gaussian noise added to each angle of the 300W-LP-like TRAINING labels
    # written to the files (the images show the exact pose; AFLW2000 and BIWI stay exact):
    # 300W-LP's poses are 3DMM fits, not measurements (README "Label noise" for the level)
    label_noise: NonNegativeFloat = 0.0
    image_size: Pixels = 128         # 300W-LP / AFLW2000 square images
    biwi_size: tuple[Pixels, Pixels] = (160, 120)   # width, height
    jpeg_quality: tuple[Quality, Quality] = (60, 95)   # low, high
    supersample: Positive = 2
    workers: NonNegative = 0         # 0 = all cores
    contact_per_set: Positive = 24
    metrics: Optional[Path] = None   # image counts and wall time (`dvc metrics show`); None: not written

    def __post_init__(self):
        check_fields(self, "synth")  # also built in code, not only from params
        lo, hi = self.jpeg_quality
        if lo > hi:
            raise ValueError(f"jpeg_quality: expected low <= high, got {list(self.jpeg_quality)}")


def _rng(cfg: SynthConfig, dataset: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _SET_CODES[dataset], *index])


def _detector_box(rng, mask: np.ndarray, coverage: np.ndarray):
    """A detector-like box: the visible face pixels' extent, slightly grown, with jitter."""
    if mask.sum() < 10:
        mask = coverage > 0.5
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(xs) == 0:
        return (0.0, 0.0, float(w), float(h))
    x1, x2, y1, y2 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
    size = np.array([x2 - x1, y2 - y1]) * rng.uniform(1.0, 1.12)
    centre = np.array([x1 + x2, y1 + y2]) / 2 + rng.normal(0, 0.03, 2) * size
    x1, y1 = np.clip(centre - size / 2, 0, [w - 2, h - 2])
    x2, y2 = np.clip(centre + size / 2, [x1 + 2, y1 + 2], [w, h])
    return (float(x1), float(y1), float(x2), float(y2))


def _compose(rng, head, pose, translation, camera: Camera, light, bg, style, ss):
    """Render the head over the background; returns (uint8 image, box, landmarks cam/px, render)."""
    rotation = rotation_from_pose(pose)
    result = render(head, rotation, translation, camera, light, ss)
    image = bg * (1 - result.coverage[..., None]) + result.image
    lm_cam = to_camera(landmarks_68(head), rotation, translation)
    lm_px = project(lm_cam, camera)
    box = _detector_box(rng, result.face_mask, result.coverage)
    image = occlude(rng, image.astype(np.float32), box, lm_px[36:48], style)
    return to_uint8(degrade(rng, image)), box, lm_cam, lm_px, result


def _still_camera(rng, size: int):
    distance = rng.uniform(550, 1000)
    focal = size * rng.uniform(0.55, 0.7) * distance / _HEAD_MM
    offset = rng.normal(0, 0.04 * size, 2) * distance / focal
    camera = Camera(size, size, focal, (size - 1) / 2, (size - 1) / 2)
    return camera, np.array([offset[0], offset[1], distance])


def fitted_label(cfg: SynthConfig, index: int, pose: np.ndarray) -> np.ndarray:
    """The label written for 300W-LP-like image ``index`` of exact pose ``pose``: with
    ``label_noise`` sigma > 0, each angle moved by N(0, sigma) (canonicalised, as every label),
    from a random stream of its own, so the images are the same bytes with or without noise."""
    if cfg.label_noise <= 0:
        return pose
    noise = _rng(cfg, "300W_LP", index, _NOISE_STREAM).normal(0.0, cfg.label_noise, 3)
    return canonical(pose + noise)


def _image_sample(cfg: SynthConfig, root: Path, dataset: str, index: int):
    rng = _rng(cfg, dataset, index)
    head = random_head(rng)
    pose = sample_pose(rng, dataset, cfg.out_of_range)
    camera, translation = _still_camera(rng, cfg.image_size)
    light = lighting(rng, dataset)
    bg = background(rng, cfg.image_size, cfg.image_size, dataset)
    image, box, lm_cam, lm_px, result = _compose(rng, head, pose, translation, camera, light, bg,
                                                 dataset, cfg.supersample)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    centre = project(translation[None], camera)[0]
    translation_px = [centre[0], cfg.image_size - centre[1], 0.0]   # 3DDFA: y up
    scale = camera.focal / translation[2]
    records = []
    if dataset == "300W_LP":
        pose = fitted_label(cfg, index, pose)
        subset = SUBSETS_300W_LP[index % len(SUBSETS_300W_LP)]
        name = f"{subset}_{index + 1:06d}"
        writers.write_300wlp(root / dataset / subset / name, image, quality, pose, lm_px, translation_px, scale)
        records.append((dataset, f"{subset}/{name}.jpg", box, "train", pose))
        if rng.uniform() < cfg.flip_fraction:
            s = cfg.image_size
            flipped = np.ascontiguousarray(image[:, ::-1])
            lm_flip = np.stack([s - 1 - lm_px[:, 0], lm_px[:, 1]], axis=1)[FLIP_68]
            fpose = flip_pose(pose)
            writers.write_300wlp(root / dataset / f"{subset}_Flip" / name, flipped, quality, fpose, lm_flip,
                                 [s - 1 - translation_px[0], *translation_px[1:]], scale)
            records.append((dataset, f"{subset}_Flip/{name}.jpg", (s - box[2], box[1], s - box[0], box[3]),
                            "train", fpose))
    else:
        pts_cam = to_camera(aflw21(head, landmarks_68(head)), rotation_from_pose(pose), translation)
        pts21 = project(pts_cam, camera)
        pts21[~visible(pts_cam, result, camera)] = -1.0   # as AFLW2000: -1 = not visible
        depth_px = -(lm_cam[:, 2] - translation[2]) * scale
        pt3d = np.column_stack([lm_px, depth_px])
        name = f"image{index + 1:05d}"
        writers.write_aflw2000(root / dataset / name, image, quality, pose, pt3d, pts21, translation_px, scale)
        records.append((dataset, f"{name}.jpg", box, "test", pose))
    return records


def _biwi_sample(cfg: SynthConfig, root: Path, subject: int, frame: int):
    """One frame of a subject's video: the identity, room, camera and motion are the subject's."""
    subject_rng = _rng(cfg, "BIWI", subject)
    head = random_head(subject_rng)
    width, height = cfg.biwi_size
    distance = subject_rng.uniform(800, 1100)
    focal = height * subject_rng.uniform(0.38, 0.48) * distance / _HEAD_MM
    camera = Camera(width, height, focal, (width - 1) / 2, (height - 1) / 2)
    room = background(subject_rng, height, width, "BIWI").astype(np.float32)
    light = lighting(subject_rng, "BIWI")
    poses = trajectory(subject_rng, cfg.biwi_frames)
    drift = trajectory(subject_rng, cfg.biwi_frames)[:, :2] / 70.0   # smooth in-plane head motion
    translation = np.array([drift[frame, 1] * 0.2 * width * distance / focal,
                            drift[frame, 0] * 0.1 * height * distance / focal, distance])
    rng = _rng(cfg, "BIWI", subject, frame)
    image, box, *_ = _compose(rng, head, poses[frame], translation, camera, light, room, "BIWI", cfg.supersample)
    images = root / "BIWI" / biwi.IMAGES_DIR
    prefix = images / f"{subject:02d}" / f"frame_{frame + 1:05d}"
    writers.write_biwi(prefix, image, poses[frame], translation)
    kind = "test" if f"{subject:02d}" in BIWI_TEST_SUBJECTS else "train"
    # box file key in the authors' layout: relative to hpdb/, like 01/frame_00001_rgb.png
    return [("BIWI", prefix.relative_to(images).as_posix() + "_rgb.png", box, kind, poses[frame])]


def _run_task(task, cfg: SynthConfig, root: Path):
    dataset, a, b = task
    if dataset == "BIWI":
        return _biwi_sample(cfg, root, a, b)
    return _image_sample(cfg, root, dataset, a)


def _init_worker():
    cv2.setNumThreads(1)


def _tasks(cfg: SynthConfig) -> list[tuple[str, int, int]]:
    return ([("300W_LP", i, 0) for i in range(cfg.train_count)]
            + [("AFLW2000", i, 0) for i in range(cfg.aflw2000_count)]
            + [("BIWI", s, f) for s in range(1, cfg.biwi_subjects + 1) for f in range(cfg.biwi_frames)])


def generate(cfg: SynthConfig) -> dict:
    """Write the synthetic dataset to ``cfg.out_dir``; returns counts and seconds."""
    start = time.perf_counter()
    out = Path(cfg.out_dir)
    with atomic_folder(out) as tmp:      # (leftovers of an interrupted run are removed first)
        tasks = _tasks(cfg)
        workers = cfg.workers or os.cpu_count() or 1
        job = partial(_run_task, cfg=cfg, root=tmp)
        records = []
        with tqdm(total=len(tasks), desc="synth", unit="img") as bar:
            if workers == 1:
                _init_worker()
                for task in tasks:
                    records += job(task)
                    bar.update()
            else:
                with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
                    for recs in pool.imap(job, tasks, chunksize=8):
                        records += recs
                        bar.update()
        counts = {}
        for dataset in _SET_CODES:
            rows = [r for r in records if r[0] == dataset]
            boxes = {rel: (box, kind) for _, rel, box, kind, _ in rows}
            atomic_write_bytes(tmp / "boxes" / f"{dataset}.json", writers.box_json_bytes(boxes))
            poses = np.array([r[4] for r in rows]).reshape(-1, 3)
            counts[dataset] = {"images": len(rows), "out_of_range": int((~in_range(poses)).sum())}
        counts["300W_LP"]["flipped"] = sum(1 for r in records if "_Flip/" in r[1])
        content = {k: v for k, v in as_dict(cfg).items() if k not in ("out_dir", "workers", "metrics")}
        summary = {"config": content, "counts": counts}   # only what determines the bytes
        atomic_write_bytes(tmp / "synth.json", (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())
        if records:
            sheet = contact_sheet(tmp, cfg.contact_per_set)
            atomic_write_bytes(tmp / "contact_sheet.png", encode_image(sheet))
    result = {"out_dir": str(out), "counts": counts, "seconds": round(time.perf_counter() - start, 2)}
    if cfg.metrics is not None:
        write_stage_metrics(cfg.metrics, {name: c["images"] for name, c in counts.items()}, result["seconds"])
    return result
