"""One box per sample from ONE detector (paper section 4.2), in parallel over images.

For every manifest sample: the detector's candidates -> the one that best matches the
sample's landmark box (:mod:`.matching`) -> accepted if its IoU reaches ``min_iou``, else
the enlarged landmark box (:mod:`.landmarks`) with a counted fallback reason:

* ``no_face``          the detector found no face (json: the image is listed with no face);
* ``low_iou``          the best face overlaps the landmark box less than ``min_iou``
                       (also catches a published box that lies outside the image);
* ``not_in_box_file``  json backend: the image is not listed in the dataset's box file.

Bad input is an error naming the file, raised before anything is written:
unreadable image, a landmark box that is empty or mostly outside its image, any exception in a
worker (it comes back as a message naming the sample and image, the run finishes, and all
messages are reported together). Box files that are missing, empty, malformed, hold a
duplicate key or a box with x2 <= x1, or list almost none of their dataset's samples fail
before the run starts (:func:`pipeline.boxes.read_box_json`, :func:`pipeline.boxes.check_listed`).

Samples are processed in key order and ``imap`` keeps that order, so the boxes and the
report are the same bytes for any number of workers.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
import multiprocessing
from typing import Optional, Protocol, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..boxes import Box, iou, write_boxes
from ..image import ImageError, check_box, load_rgb
from ..manifest import Sample, read_manifest
from ..files import write_json
from ..stage_metrics import write_stage_metrics
from .config import RelabelConfig
from .errors import RelabelError
from .haar import HaarDetector
from .landmarks import enlarge_box
from .matching import choose_box
from .mtcnn import MtcnnDetector
from .published import PublishedBoxes
from .yunet import YuNetDetector

FALLBACK_REASONS = ("no_face", "low_iou", "not_in_box_file")
FALLBACK_PREFIX = "fallback:"
MAX_REPORTED_ERRORS = 10
EXAMPLE_KEYS = 5


class Detector(Protocol):
    name: str
    needs_image: bool

    def detect(self, image: Optional[np.ndarray], sample: Sample) -> Optional[list[Box]]:
        """Candidate face boxes; None when the backend has no data for this image."""


@dataclass(frozen=True)
class Outcome:
    key: str
    dataset: str
    box: Optional[Box] = None
    source: str = ""                 # backend name, or "fallback:<reason>"
    iou: Optional[float] = None      # accepted box vs landmark box
    error: Optional[str] = None      # message naming sample and image


def make_detector(config: RelabelConfig, samples: Sequence[Sample]) -> Optional[Detector]:
    """The configured backend for ``samples`` (None for ``landmarks``: the rule needs no
    detector)."""
    if config.backend == "haar":
        return HaarDetector(config.haar)
    if config.backend == "yunet":
        return YuNetDetector(config.yunet)
    if config.backend == "mtcnn":
        return MtcnnDetector(config.mtcnn)
    if config.backend == "json":
        return PublishedBoxes(config.json_files, samples)
    return None


def _landmark_box(sample: Sample) -> Box:
    box = sample.box
    if box is None or len(box) != 4 or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise RelabelError(f"{sample.key} ({sample.image}): landmark box {box} in the manifest is "
                           "empty or invalid (need finite x1 < x2, y1 < y2)")
    return tuple(float(v) for v in box)


def relabel_sample(detector: Optional[Detector], config: RelabelConfig, sample: Sample) -> Outcome:
    """The box of one sample (raises on bad input; see the module docstring)."""
    reference = _landmark_box(sample)
    enlarged = enlarge_box(reference, config.landmark_scale)
    if detector is None:
        return Outcome(sample.key, sample.dataset, enlarged, "landmarks", iou(enlarged, reference))
    image = None
    if detector.needs_image:
        image = load_rgb(sample.image)
        height, width = image.shape[:2]
        check_box(reference, width, height, where=f"{sample.image} ({sample.key}): landmark")
    candidates = detector.detect(image, sample)
    box, score = choose_box(candidates or [], reference)

    def fallback(reason: str) -> Outcome:
        return Outcome(sample.key, sample.dataset, enlarged, FALLBACK_PREFIX + reason)

    if candidates is None:
        return fallback("not_in_box_file")
    if box is None:
        return fallback("no_face")
    if score < config.min_iou:
        return fallback("low_iou")
    return Outcome(sample.key, sample.dataset, box, detector.name, score)


def _safe_relabel(detector, config, sample: Sample) -> Outcome:
    try:
        return relabel_sample(detector, config, sample)
    except (RelabelError, ImageError) as exc:
        message = str(exc) if sample.key in str(exc) else f"{sample.key}: {exc}"
        return Outcome(sample.key, sample.dataset, error=message)
    except Exception as exc:  # noqa: BLE001 - a worker never dies: the parent reports it
        return Outcome(sample.key, sample.dataset,
                       error=f"{sample.key} ({sample.image}): {type(exc).__name__}: {exc}")


_WORKER_STATE: tuple = ()


def _init_worker(detector, config):
    global _WORKER_STATE
    cv2.setNumThreads(1)             # one image per process; no oversubscription
    _WORKER_STATE = (detector, config)


def _pool_task(sample: Sample) -> Outcome:
    return _safe_relabel(*_WORKER_STATE, sample)


def relabel_samples(samples: Sequence[Sample], config: RelabelConfig) -> list[Outcome]:
    """Outcomes in key order; raises RelabelError (listing the files) if any sample failed."""
    ordered = sorted(samples, key=lambda s: s.key)
    detector = make_detector(config, ordered)
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(ordered)))
    bar = dict(total=len(ordered), desc=f"relabel ({config.backend})", unit="img", smoothing=0.05)
    if workers == 1:
        task = functools.partial(_safe_relabel, detector, config)
        outcomes = [task(s) for s in tqdm(ordered, **bar)]
    else:
        # forkserver, not fork: a child forked from a parent whose OpenCV/torch thread pools
        # have run can deadlock (seen with cv2 here); the server is a fresh single-threaded process.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with context.Pool(workers, initializer=_init_worker, initargs=(detector, config)) as pool:
            outcomes = list(tqdm(pool.imap(_pool_task, ordered, chunksize=config.chunksize), **bar))
    errors = [o.error for o in outcomes if o.error is not None]
    if errors:
        shown = "\n  ".join(errors[:MAX_REPORTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise RelabelError(f"relabel: {len(errors)} of {len(ordered)} samples failed, nothing written:"
                           f"\n  {shown}{more}")
    return outcomes


def _mean(values: list[float]) -> Optional[float]:
    return round(float(np.mean(values)), 6) if values else None


def _summary(outcomes: Sequence[Outcome]) -> dict:
    accepted = [o for o in outcomes if not o.source.startswith(FALLBACK_PREFIX)]
    return {
        "samples": len(outcomes),
        "detections": len(accepted),
        "fallbacks": len(outcomes) - len(accepted),
        "mean_iou": _mean([o.iou for o in accepted]),
    }


def build_report(outcomes: Sequence[Outcome], config: RelabelConfig) -> dict:
    """Deterministic JSON-ready summary: detections per backend, fallbacks with counts and
    example keys, mean IoU of the accepted boxes with the landmark box (overall, per dataset)."""
    detections: dict[str, int] = {}
    fallbacks: dict[str, dict] = {}
    for o in outcomes:
        if o.source.startswith(FALLBACK_PREFIX):
            entry = fallbacks.setdefault(o.source[len(FALLBACK_PREFIX):], {"count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < EXAMPLE_KEYS:
                entry["examples"].append(o.key)
        else:
            detections[o.source] = detections.get(o.source, 0) + 1
    datasets = sorted({o.dataset for o in outcomes})
    return {
        "backend": config.backend,
        "landmark_rule": f"square about the landmark box centre, side = {config.landmark_scale} * max(w, h)",
        "min_iou": config.min_iou,
        **_summary(outcomes),
        "detections_per_backend": dict(sorted(detections.items())),
        "fallback_reasons": dict(sorted(fallbacks.items())),
        "datasets": {d: _summary([o for o in outcomes if o.dataset == d]) for d in datasets},
    }


def boxes_table(outcomes: Sequence[Outcome]) -> dict[str, tuple[Box, str]]:
    """key -> (box, source), what :func:`pipeline.boxes.write_boxes` takes."""
    return {o.key: (o.box, o.source) for o in outcomes}


def relabel(config: RelabelConfig) -> dict:
    """The relabel job (DVC stage ``relabel``): a box for every sample of ``config.manifest``;
    writes ``config.boxes`` (every manifest key) and ``config.report`` (JSON), both atomically
    and only if every sample went through; returns the report."""
    start = time.perf_counter()
    samples = read_manifest(config.manifest)
    outcomes = relabel_samples(samples, config)
    report = build_report(outcomes, config)
    write_boxes(config.boxes, boxes_table(outcomes))
    write_json(config.report, report)
    # `dvc metrics show`: the fallback boxes per dataset (their reasons and the IoUs: the report)
    write_stage_metrics(config.metrics, {name: d["fallbacks"] for name, d in report["datasets"].items()},
                        time.perf_counter() - start)
    print(f"relabel ({config.backend}): {report['samples']} samples, {report['detections']} detected, "
          f"{report['fallbacks']} fallbacks, mean IoU {report['mean_iou']} -> {config.boxes}")
    return report
