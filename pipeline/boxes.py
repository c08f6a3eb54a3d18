"""Face boxes: published box files (the authors' JSON), the boxes file of the relabel
stage, and box matching. A box is (x1, y1, x2, y2) in source-image pixels.

Published format (paper ref. [73]):
    {"relative/file.jpg": [{"bbox": [x1, y1, x2, y2], "type"?: "train"|"test", "faceid"?: int}]}
A file's keys are paths below the folder that holds the dataset's images
(:func:`published_key`, the one lookup rule of ``prepare`` and the relabel ``json`` backend).
A duplicate key is an error; so is a file that lists almost none of its dataset's images
(:func:`check_listed`: a wrong file or key layout).
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Optional, Sequence

from .datasets import IMAGE_FOLDERS
from .manifest import Sample, _fmt
from .files import atomic_write_bytes, read_text
from .errors import PipelineError

Box = tuple[float, float, float, float]
BOXES_COLUMNS = ("key", "x1", "y1", "x2", "y2", "source")
# A published box file that lists fewer than this fraction of its dataset's images is taken
# for a wrong file or key layout (an error), not for a file with a few faces missing.
MIN_LISTED = 0.1


class BoxFileError(PipelineError):
    pass


@dataclass(frozen=True)
class PublishedBox:
    bbox: Box
    type: Optional[str] = None
    faceid: Optional[int] = None


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_bbox(value, where: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise BoxFileError(f"{where}: bbox must be a list of 4 numbers, got {value!r}")
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise BoxFileError(f"{where}: bbox must be a list of 4 numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in box):
        raise BoxFileError(f"{where}: bbox {value!r} has non-finite coordinates")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise BoxFileError(f"{where}: bbox {value!r} is empty (need x2 > x1 and y2 > y1)")
    return box


def read_box_json(path: str | Path) -> dict[str, list[PublishedBox]]:
    """Read a published box file; every problem is an error naming the file and entry."""
    path = Path(path)
    text = read_text(path, BoxFileError, "box file not found")
    if not text.strip():
        raise BoxFileError(f"{path}: box file is empty")
    def no_duplicates(pairs: list[tuple]) -> dict:
        data = dict(pairs)
        if len(data) < len(pairs):
            seen: set = set()
            key = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise BoxFileError(f"{path}: duplicate key {key!r}")
        return data

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise BoxFileError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BoxFileError(f"{path}: top level must be an object {{file: [faces]}}")
    out: dict[str, list[PublishedBox]] = {}
    for name, faces in data.items():
        where = f"{path}: {name}"
        if not isinstance(faces, list):
            raise BoxFileError(f"{where}: expected a list of faces, got {type(faces).__name__}")
        entries = []
        for i, face in enumerate(faces):
            if not isinstance(face, dict) or "bbox" not in face:
                raise BoxFileError(f"{where}[{i}]: each face needs a 'bbox'")
            kind = face.get("type")
            if kind is not None and kind not in ("train", "test"):
                raise BoxFileError(f"{where}[{i}]: type must be 'train' or 'test', got {kind!r}")
            faceid = face.get("faceid")
            if faceid is not None and not isinstance(faceid, int):
                raise BoxFileError(f"{where}[{i}]: faceid must be an integer, got {faceid!r}")
            entries.append(PublishedBox(_check_bbox(face["bbox"], f"{where}[{i}]"), kind, faceid))
        out[name.replace("\\", "/")] = entries
    return out


def published_key(sample: Sample) -> tuple[str, Optional[int]]:
    """(key, face id or None) under which a published box file lists ``sample``'s face.

    The authors' files name an image by its path below the folder that holds the dataset's
    images (:data:`pipeline.datasets.IMAGE_FOLDERS`): BIWI ``01/frame_00004_rgb.png``
    (below ``BIWI/hpdb``), AFLW ``0/image00002.jpg`` (below ``AFLW/flickr``), AFLW2000
    ``image00002.jpg``, 300W-LP ``AFW/AFW_134_1_0.jpg``. Built from the manifest key
    ``<dataset>/<path below the dataset folder, no suffix>[#face]`` and the image's suffix."""
    rel, _, face = sample.key.removeprefix(sample.dataset + "/").partition("#")
    folder = IMAGE_FOLDERS.get(sample.dataset)
    if folder:
        rel = rel.removeprefix(folder + "/")
    return rel + PurePosixPath(sample.image).suffix, int(face) if face.isdigit() else None


def check_listed(path: str | Path, dataset: str, published: Mapping[str, list],
                 samples: Iterable[Sample]) -> None:
    """Refuse a box file that lists fewer than :data:`MIN_LISTED` of the images of
    ``samples`` (one dataset): a wrong file or key layout would otherwise leave every sample
    without its box."""
    expected = sorted({published_key(s)[0] for s in samples})
    found = sum(key in published for key in expected)
    if expected and found < MIN_LISTED * len(expected):
        has = f"keys like {next(iter(published))!r}" if published else "no key"
        raise BoxFileError(
            f"{path}: box file for {dataset} lists {found} of its {len(expected)} images (need "
            f"at least {MIN_LISTED:.0%}); it has {has} but expects keys like {expected[0]!r} "
            "(the path below the folder that holds the images). Wrong file or key layout?")


def best_iou(candidates: Sequence[Sequence[float]], reference: Sequence[float]
             ) -> tuple[Optional[int], Optional[float]]:
    """(index, IoU) of the candidate that overlaps ``reference`` most; ties keep the first.
    (None, None) when there is no candidate."""
    if not candidates:
        return None, None
    scores = [iou(b, reference) for b in candidates]
    best = max(range(len(candidates)), key=lambda i: scores[i])
    return best, scores[best]


def of_split(entries: Sequence[PublishedBox], split: Optional[str]) -> list[PublishedBox]:
    """The entries typed for ``split`` or untyped (possibly none)."""
    return [e for e in entries if e.type in (None, split)]


def select_published(entries: Sequence[PublishedBox], split: Optional[str] = None,
                     faceid: Optional[int] = None, reference: Optional[Sequence[float]] = None,
                     min_iou: Optional[float] = 0.0) -> Optional[Box]:
    """The published box of one face among a file's entries for its image; None when it
    cannot be decided.

    1. Entries typed for ``split`` (or untyped) are preferred; the others are used only when
       no such entry exists (a file's types follow its author's protocol).
    2. ``faceid``: a single entry with that id is the answer; several narrow the choice.
    3. With a ``reference`` (the landmark box): the entry with the highest IoU, accepted if
       that IoU is above ``min_iou`` (``min_iou=None``: always; the caller judges it).
    4. Without one: the only entry."""
    candidates = of_split(entries, split) or list(entries)
    if faceid is not None:
        by_id = [e for e in candidates if e.faceid == faceid]
        if len(by_id) == 1:
            return by_id[0].bbox
        candidates = by_id or candidates
    if not candidates:
        return None
    if reference is not None:
        best, score = best_iou([e.bbox for e in candidates], reference)
        return candidates[best].bbox if min_iou is None or score > min_iou else None
    return candidates[0].bbox if len(candidates) == 1 else None


# --- the relabel stage's boxes file ----------------------------------------------------

def write_boxes(path: str | Path, boxes: Mapping[str, tuple[Box, str]]) -> None:
    """key -> (box, source); sorted, fixed formatting, written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BOXES_COLUMNS)
    for key in sorted(boxes):
        box, source = boxes[key]
        writer.writerow([key, *(_fmt(float(c), 3) for c in box), source])
    atomic_write_bytes(path, buf.getvalue().encode())


def read_boxes(path: str | Path) -> dict[str, tuple[Box, str]]:
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path, BoxFileError, "boxes file not found (run the relabel stage)"))))
    if not rows or tuple(rows[0]) != BOXES_COLUMNS:
        raise BoxFileError(f"{path}: header must be {list(BOXES_COLUMNS)}")
    out = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(BOXES_COLUMNS):
            raise BoxFileError(f"{path}:{lineno}: expected {len(BOXES_COLUMNS)} columns")
        if row[0] in out:
            raise BoxFileError(f"{path}:{lineno}: duplicate key {row[0]!r}")
        out[row[0]] = (_check_bbox(row[1:5], f"{path}:{lineno}"), row[5])
    return out


def apply_boxes(samples: Iterable[Sample], boxes: Mapping[str, tuple[Box, str]],
                where: str = "boxes file") -> list[Sample]:
    """Replace each sample's box by the relabeled one; a missing key is an error."""
    out = []
    missing = []
    for s in samples:
        if s.key not in boxes:
            missing.append(s.key)
            continue
        out.append(replace(s, box=boxes[s.key][0]))
    if missing:
        raise BoxFileError(f"{where}: no box for {len(missing)} samples, e.g. {missing[:3]} "
                           "(stale boxes file? re-run the relabel stage)")
    return out
