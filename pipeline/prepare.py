"""The prepare job (DVC stage ``prepare``): datasets (or the embedded synthetic one) ->
manifest + report.

Outs: the manifest CSV (:mod:`pipeline.manifest`: sorted, fixed formatting, same bytes for the
same inputs) and a JSON report with the protocol, every per-dataset count (read, bad,
out of range, no box, kept, train/test), the skipped files and the manifest sha256.
The protocols and the datasets they read: :mod:`pipeline.protocols`. In the default profile
``data_root`` is ``data/synth``, written in the real formats by the ``synth`` stage
(``pipeline synth``), so synthetic and real data go through the same readers.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from . import protocols
from .config import FromPaths, NonNegative, Positive, as_dict
from .manifest import manifest_bytes
from .files import atomic_write_bytes, write_json
from .stage_metrics import write_stage_metrics



@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    protocol: Literal[1, 2, 3] = 1
    data_root: Annotated[Path, FromPaths("data_root")]   # holds 300W_LP/, AFLW2000/, BIWI/, AFLW/
    box_files: dict[str, Path] = field(default_factory=dict)  # dataset -> published JSON
    on_bad: Literal["error", "skip"] = "error"
    workers: Positive = 1
    aflw_test_images: NonNegative = protocols.AFLW_TEST_IMAGES
    manifest: Annotated[Path, FromPaths("manifest")]
    report: Annotated[Path, FromPaths("prepare_report")]
    metrics: Path = Path("metrics/prepare.json")   # the headline counts and wall time


def summary_lines(report: dict) -> list[str]:
    lines = [f"protocol {report['protocol']}: {report['samples']} samples "
             f"({report['train']} train, {report['test']} test)"]
    for name, r in report["datasets"].items():
        lines.append(f"  {name}: read {r['read']}, bad {r['bad']}, out of range "
                     f"{r['out_of_range']}, no box {r['no_box']}, kept {r['kept']} "
                     f"({r['train']} train, {r['test']} test), boxes: {r['box_source']}")
    return lines


def prepare(cfg: PrepareConfig) -> dict:
    """Build the protocol's samples from ``cfg.data_root``; write manifest, report and metrics
    atomically, print the counts; returns the report."""
    start = time.perf_counter()
    samples, report = protocols.build(cfg.protocol, cfg.data_root, cfg.box_files, on_bad=cfg.on_bad,
                                      workers=cfg.workers, aflw_test_images=cfg.aflw_test_images)
    data = manifest_bytes(samples)
    report = {**report, "data_root": str(cfg.data_root), "config": as_dict(cfg),
              "manifest": str(cfg.manifest), "manifest_sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(cfg.manifest, data)
    write_json(cfg.report, report)
    # `dvc metrics show`: the samples kept per dataset (what was read and dropped, and why: the report)
    write_stage_metrics(cfg.metrics, {name: r["kept"] for name, r in report["datasets"].items()},
                        time.perf_counter() - start)
    for line in summary_lines(report):
        print(line)
    return report
