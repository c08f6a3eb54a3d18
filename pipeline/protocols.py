"""The paper's three test protocols (section 4.4, Table 1) and the sample selection that
every protocol shares.

1. Train 300W-LP; test AFLW2000 and BIWI (all frames).
2. AFLW only. Test = the faces of the first 2000 .jpg images of the database ordered by
   file name (the basename ``imageNNNNN.jpg``, ties broken by the filepath; these are the
   images AFLW2000 was made from, see :func:`pipeline.datasets.aflw.first_images`); the
   rest train.
3. BIWI only. Test subjects 06, 07, 10, 13, 15, 18, 21, 22; the rest train.

For each dataset, in this order: read (bad inputs raise, or are skipped and listed when
``on_bad="skip"``), keep the poses with all |angle| <= 99 (:func:`pipeline.pose.in_range`),
assign the split, take the box (landmark box, AFLW FaceRect, or a published box file, looked
up by :func:`pipeline.boxes.published_key`), check that at least half of it lies inside the
image (:func:`pipeline.image.check_box`). Samples without a box are counted and listed, never
silently lost; a box file that lists almost none of the dataset's images is an error
(:func:`pipeline.boxes.check_listed`). Reading decodes every image in full (a truncated file is
a bad input). The report holds every count.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal, Mapping, Optional

from . import pose as posemod
from .boxes import PublishedBox, check_listed, of_split, published_key, read_box_json, select_published
from .datasets import READERS, BadItem, DatasetError, Record, aflw, read_dataset
from .image import ImageError, check_box
from .manifest import Sample

OnBad = Literal["error", "skip"]
BIWI_TEST_SUBJECTS = ("06", "07", "10", "13", "15", "18", "21", "22")
AFLW_TEST_IMAGES = 2000

# protocol -> datasets it reads, in order
PROTOCOL_DATASETS: dict[int, tuple[str, ...]] = {
    1: ("300W_LP", "AFLW2000", "BIWI"),
    2: ("AFLW",),
    3: ("BIWI",),
}


def split_of(protocol: int, record: Record, aflw_test: frozenset[str] = frozenset()) -> str:
    sample = record.sample
    if protocol == 1:
        return "train" if sample.dataset == "300W_LP" else "test"
    if protocol == 2:
        return "test" if record.rel.removeprefix(f"{aflw.IMAGES_DIR}/") in aflw_test else "train"
    if protocol == 3:
        return "test" if sample.subject in BIWI_TEST_SUBJECTS else "train"
    raise ValueError(f"unknown protocol {protocol!r} (known: {sorted(PROTOCOL_DATASETS)})")


def published_box(published: dict[str, list[PublishedBox]], record: Record, split: str
                  ) -> tuple[Optional[tuple[float, float, float, float]], bool]:
    """(box, type_differs) of one face in a published box file: the rule of
    :func:`pipeline.boxes.select_published` (split, then face id, then IoU > 0 with the
    landmark box, else the only entry); ``type_differs`` when the box was typed for the
    other split (the file held no entry for this one)."""
    name, faceid = published_key(record.sample)
    entries = published.get(name, [])
    box = select_published(entries, split, faceid, reference=record.sample.box)
    return box, box is not None and not of_split(entries, split)


def _fail_or_list(bad: list[BadItem], on_bad: OnBad) -> list[str]:
    if bad and on_bad == "error":
        more = f" (and {len(bad) - 1} more bad inputs)" if len(bad) > 1 else ""
        raise DatasetError(bad[0].message + more + "; set prepare.on_bad=skip to skip them")
    return [b.message for b in bad]


def select(protocol: int, name: str, records: list[Record], bad: list[BadItem],
           box_file: Optional[Path], on_bad: OnBad,
           aflw_test: frozenset[str] = frozenset()) -> tuple[list[Sample], dict]:
    """Filter, split and box the records of one dataset; returns (samples, report)."""
    bad_messages = _fail_or_list(bad, on_bad)
    in_range = [r for r in records if bool(posemod.in_range(r.sample.pose))]
    published = read_box_json(box_file) if box_file is not None else None
    if published is not None:
        check_listed(box_file, name, published, (r.sample for r in records))
    samples: list[Sample] = []
    no_box: list[str] = []
    box_bad: list[BadItem] = []
    type_differs = 0
    for record in in_range:
        split = split_of(protocol, record, aflw_test)
        box = record.sample.box
        if published is not None:
            box, differs = published_box(published, record, split)
            type_differs += differs
        if box is None:
            no_box.append(record.sample.key)
            continue
        width, height = record.size
        try:
            box = check_box(box, width, height, where=record.sample.image)
        except ImageError as exc:
            box_bad.append(BadItem(record.sample.key, str(exc)))
            continue
        samples.append(replace(record.sample, box=box, split=split))
    bad_messages += _fail_or_list(box_bad, on_bad)
    report = {
        "read": len(records) + len(bad),
        "bad": len(bad_messages),
        "bad_files": bad_messages,
        "out_of_range": len(records) - len(in_range),
        "box_source": str(box_file) if box_file is not None else (
            "FaceRect" if name == aflw.NAME else "landmarks"),
        "no_box": len(no_box),
        "no_box_keys": no_box,
        "kept": len(samples),
        "train": sum(s.split == "train" for s in samples),
        "test": sum(s.split == "test" for s in samples),
    }
    if published is not None:
        report["box_type_differs"] = type_differs   # boxes typed for the other split
    return samples, report


def build(protocol: int, data_root: str | Path,
          box_files: Optional[Mapping[str, str | Path]] = None, on_bad: OnBad = "error",
          workers: int = 1, aflw_test_images: int = AFLW_TEST_IMAGES
          ) -> tuple[list[Sample], dict]:
    """Read the datasets of ``protocol`` under ``data_root`` into split, boxed samples.

    ``box_files`` maps a dataset name to a published box file (the authors' layout: keys
    relative to the folder that holds the images, :func:`pipeline.boxes.published_key`);
    datasets without one use their landmark box (AFLW: FaceRect).
    Returns (samples sorted by key, report with per-dataset counts)."""
    if protocol not in PROTOCOL_DATASETS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {sorted(PROTOCOL_DATASETS)})")
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    box_files = dict(box_files or {})
    unknown = sorted(set(box_files) - set(READERS))
    if unknown:
        raise DatasetError(f"box_files: unknown dataset {unknown[0]!r} (known: {', '.join(READERS)})")
    samples: list[Sample] = []
    per_dataset: dict[str, dict] = {}
    for name in PROTOCOL_DATASETS[protocol]:
        records, bad = read_dataset(name, data_root, workers=workers)
        aflw_test = frozenset(aflw.first_images(data_root, aflw_test_images)) if protocol == 2 \
            else frozenset()
        box_file = Path(box_files[name]) if name in box_files else None
        kept, per_dataset[name] = select(protocol, name, records, bad, box_file, on_bad, aflw_test)
        samples.extend(kept)
    samples.sort(key=lambda s: s.key)
    report = {
        "protocol": protocol,
        "datasets": per_dataset,
        "samples": len(samples),
        "train": sum(s.split == "train" for s in samples),
        "test": sum(s.split == "test" for s in samples),
    }
    return samples, report
