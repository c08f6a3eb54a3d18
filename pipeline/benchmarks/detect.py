"""``pipeline bench detect``: the face detectors of ``pipeline predict`` and the relabel stage at
each score threshold, on every image the project has without a download:

* the manifest's test images, per dataset (the rendered heads of the embedded profile): one
  face each, at the manifest's box;
* skimage's two photos of a person, the astronaut and the cameraman, each as is and in views
  rendered from it (mirrored, rotated by +-15 and +-30 degrees about the face, halved): one
  face each, at a box checked by eye (``PERSON_PHOTOS``) carried through the view;
* skimage's LFW subset: its real faces (25 px crops, shown 4x on a grey canvas, one face each)
  and its non-face patches of the same photos;
* skimage's photos without a person (``NO_PERSON_PHOTOS``, at most ``PHOTO_SIDE`` px).

A face is found when a box that passes the threshold has IoU >= ``FOUND_IOU`` with it; every
other box that passes is a false face. MTCNN runs once per image at the lowest threshold and
each threshold keeps the boxes above it: O-Net's threshold drops boxes before its overlap
suppression, which keeps boxes in score order, so a higher threshold leaves exactly the boxes
above it. Haar runs once per ``min_neighbors``. images/s: on the manifest's images, the two
detectors interleaved image by image (MTCNN at its lowest threshold: O-Net sees the same boxes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..boxes import Box, iou
from ..config import load_params
from ..data import load_samples
from ..image import load_rgb
from ..predict import DETECTORS
from ..relabel.haar import mirror_boxes

FOUND_IOU = 0.3
THRESHOLDS = {"mtcnn": (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98), "haar": (1, 3, 5, 8, 12)}
SCORES = {"mtcnn": "O-Net face probability", "haar": "neighbours"}
PERSON_PHOTOS = {"astronaut": (177.0, 66.0, 272.0, 161.0), "camera": (196.0, 113.0, 257.0, 198.0)}
NO_PERSON_PHOTOS = ("coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel", "hubble_deep_field",
                    "immunohistochemistry", "retina", "page", "text", "clock", "horse")
PHOTO_SIDE = 512          # the retina and Hubble photos are larger: scaled down to this
LFW_SCALE, LFW_MARGIN = 4, 20


@dataclass(frozen=True)
class Frame:
    image: np.ndarray          # HxWx3 uint8 RGB
    face: Optional[Box]        # its one face, or None


def _rgb(image: np.ndarray, longest: int = PHOTO_SIDE) -> np.ndarray:
    """skimage's photos (grey, RGBA, bool, float) as HxWx3 uint8 RGB, at most ``longest`` px."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round(image.astype(np.float64) * (255 if image.max() <= 1 else 1)).clip(0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    scale = longest / max(image.shape[:2])
    return image if scale >= 1 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def views(photo: np.ndarray, face: Box) -> list[Frame]:
    """The photo, mirrored, rotated by +-15 and +-30 degrees about the face (the box stays, as
    the face turns in place), and halved."""
    height, width = photo.shape[:2]
    centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    out = [Frame(photo, face), Frame(np.ascontiguousarray(photo[:, ::-1]), mirror_boxes([face], width)[0])]
    for angle in (-30, -15, 15, 30):
        rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
        out.append(Frame(cv2.warpAffine(photo, rotation, (width, height)), face))
    half = cv2.resize(photo, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return out + [Frame(half, tuple(v / 2 for v in face))]


def lfw_frames(count: int) -> tuple[list[Frame], list[Frame]]:
    """(the first ``count`` faces, the first ``count`` non-faces) of skimage's LFW subset, each
    patch LFW_SCALE x larger on a grey canvas (the detectors need context around a face)."""
    from skimage import data
    patches = data.lfw_subset()                   # 100 faces, then 100 non-faces
    side = patches.shape[1] * LFW_SCALE
    box = (float(LFW_MARGIN), float(LFW_MARGIN), float(LFW_MARGIN + side), float(LFW_MARGIN + side))

    def frame(patch, face):
        canvas = np.full((side + 2 * LFW_MARGIN,) * 2, 0.5)
        canvas[LFW_MARGIN:LFW_MARGIN + side, LFW_MARGIN:LFW_MARGIN + side] = cv2.resize(
            patch, (side, side), interpolation=cv2.INTER_CUBIC)
        return Frame(_rgb(canvas.clip(0, 1)), face)

    return [frame(p, box) for p in patches[:100][:count]], [frame(p, None) for p in patches[100:][:count]]


def image_sets(params: Path, per_dataset: int, lfw: int) -> dict[str, list[Frame]]:
    from skimage import data
    samples = load_samples(load_params(params)["paths"]["manifest"], split="test")
    sets = {dataset: [Frame(load_rgb(s.image), tuple(s.box)) for s in samples if s.dataset == dataset][:per_dataset]
            for dataset in sorted({s.dataset for s in samples})}
    sets["person photos"] = [v for name, face in PERSON_PHOTOS.items() for v in views(_rgb(getattr(data, name)()), face)]
    sets["LFW faces"], sets["LFW non-faces"] = lfw_frames(lfw)
    sets["no-person photos"] = [Frame(_rgb(getattr(data, name)()), None) for name in NO_PERSON_PHOTOS]
    return sets


def _count(frames: Sequence[Frame], detections: Sequence[list[tuple[Box, float]]]) -> dict:
    """Faces, found and false faces of ``frames`` given each frame's passing boxes."""
    found = false = 0
    for frame, boxes in zip(frames, detections):
        matched = [frame.face is not None and iou(box, frame.face) >= FOUND_IOU for box, _ in boxes]
        found += any(matched)
        false += matched.count(False)
    return {"images": len(frames), "faces": sum(f.face is not None for f in frames), "found": found, "false": false}


def run(params: Path = Path("params.yaml"), per_dataset: int = 100, lfw: int = 100) -> dict:
    sets = image_sets(params, per_dataset, lfw)
    manifest_sets = [name for name in sets if name not in ("person photos", "LFW faces", "LFW non-faces",
                                                           "no-person photos")]
    defaults = {name: make() for name, make in DETECTORS.items()}
    # MTCNN: once per image at the lowest threshold, interleaved with Haar at its default for images/s
    sweep = {"mtcnn": DETECTORS["mtcnn"](min(THRESHOLDS["mtcnn"])), "haar": defaults["haar"]}
    speed: dict[str, dict[str, float]] = {}
    mtcnn_boxes: dict[str, list] = {}
    for set_name, frames in sets.items():
        seconds = {"mtcnn": 0.0, "haar": 0.0}
        mtcnn_boxes[set_name] = []
        for frame in frames:
            for name, detector in sweep.items():
                start = time.perf_counter()
                found = detector(frame.image)
                seconds[name] += time.perf_counter() - start
                if name == "mtcnn":
                    mtcnn_boxes[set_name].append(found)
        if set_name in manifest_sets:
            speed[set_name] = {name: len(frames) / s for name, s in seconds.items()}
    table: dict[str, dict] = {"mtcnn": {}, "haar": {}}
    for t in THRESHOLDS["mtcnn"]:
        table["mtcnn"][t] = {set_name: _count(frames, [[(b, s) for b, s in found if s > t] for found in mtcnn_boxes[set_name]])
                             for set_name, frames in sets.items()}
    for t in THRESHOLDS["haar"]:
        haar = DETECTORS["haar"](t)
        table["haar"][t] = {set_name: _count(frames, [haar(f.image) for f in frames]) for set_name, frames in sets.items()}
    astronaut = sets["person photos"][0].image
    return {"thresholds": table, "defaults": {name: d.min_score for name, d in defaults.items()}, "speed": speed,
            "astronaut": {name: [(tuple(round(v) for v in box), round(score, 4)) for box, score in d(astronaut)]
                          for name, d in defaults.items()}}


def report(r: dict) -> str:
    first = next(iter(r["thresholds"].values()))
    sets = list(next(iter(first.values())))
    counts = next(iter(first.values()))
    lines = [f"face detectors per score threshold: found = faces with a passing box of IoU >= {FOUND_IOU}, "
             "false = every other passing box; cpu",
             "  images: " + ", ".join(f"{name} {c['images']} ({c['faces']} faces)" for name, c in counts.items())]
    for name, by_threshold in r["thresholds"].items():
        lines.append(f"{name} (score: {SCORES[name]}; default {r['defaults'][name]}); each cell: found % / false faces")
        lines.append(f"  {'threshold':<14}" + "".join(f"{s:>18}" for s in sets))
        for t, by_set in by_threshold.items():
            cells = [f"{100 * c['found'] / c['faces']:.1f}% / {c['false']}" if c["faces"] else f"- / {c['false']}"
                     for c in by_set.values()]
            mark = " (default)" if t == r["defaults"][name] else ""
            lines.append(f"  {str(t) + mark:<14}" + "".join(f"{c:>18}" for c in cells))
    for set_name, by_name in r["speed"].items():
        lines.append(f"  {set_name} images/s (interleaved): " + ", ".join(f"{n} {v:.1f}" for n, v in by_name.items()))
    for name, boxes in r["astronaut"].items():
        lines.append(f"  astronaut (skimage, 512 px) {name} at its default: {boxes}")
    return "\n".join(lines)
