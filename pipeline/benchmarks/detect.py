"""``pipeline bench detect``: the face detectors of ``pipeline predict`` on the test images of the
manifest (per dataset) and on skimage's astronaut photo: how often each finds the face (a box
with IoU >= FOUND_IOU with the manifest's box: the landmark box, or the published box where
the protocol uses one), the mean IoU of its best box, and images/s; the detectors run
interleaved image by image, on the same images."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..boxes import iou
from ..data import load_samples
from ..config import load_params
from ..image import load_rgb
from ..predict import DETECTORS

FOUND_IOU = 0.3


def run(params: Path = Path("params.yaml"), per_dataset: int = 100) -> dict:
    manifest = load_params(params)["paths"]["manifest"]
    samples = load_samples(manifest, split="test")
    detectors = {name: make() for name, make in DETECTORS.items()}
    out = {}
    for dataset in sorted({s.dataset for s in samples}):
        subset = [s for s in samples if s.dataset == dataset][:per_dataset]
        best = {name: [] for name in detectors}
        seconds = dict.fromkeys(detectors, 0.0)
        for sample in subset:
            image = load_rgb(sample.image)
            for name, detector in detectors.items():       # interleaved, same image
                start = time.perf_counter()
                found = detector(image)
                seconds[name] += time.perf_counter() - start
                best[name].append(max((iou(box, sample.box) for box, _ in found), default=0.0))
        out[dataset] = {name: {"images": len(subset), "found": float(np.mean(np.array(b) >= FOUND_IOU)),
                               "mean_best_iou": float(np.mean([v for v in b if v >= FOUND_IOU] or [0.0])),
                               "images_per_s": len(subset) / seconds[name]} for name, b in best.items()}
    from skimage import data as skimage_data
    photo = skimage_data.astronaut()
    boxes = {name: [tuple(round(v) for v in box) for box, _ in detector(photo)] for name, detector in detectors.items()}
    return {"datasets": out, "astronaut": boxes}


def report(r: dict) -> str:
    lines = [f"face detectors on the manifest's test images (found: a box with IoU >= {FOUND_IOU} with the "
             "manifest's box; IoU: mean of the best box where found), interleaved per image, cpu"]
    for dataset, by_name in r["datasets"].items():
        for name, v in by_name.items():
            lines.append(f"  {dataset:<9} {name:<6} found {100 * v['found']:5.1f}% of {v['images']}, IoU "
                         f"{v['mean_best_iou']:.2f}, {v['images_per_s']:.1f} images/s")
    for name, boxes in r["astronaut"].items():
        lines.append(f"  astronaut (skimage, 512 px) {name}: {boxes}")
    return "\n".join(lines)
