"""DVC stage ``relabel``: one face box per manifest sample from the configured detector.

Reads ``relabel.manifest``; writes ``relabel.boxes`` (:func:`pipeline.boxes.write_boxes`,
every manifest key) and ``relabel.report`` (JSON), both atomically and only if every sample
went through (see :mod:`pipeline.relabel.runner`).
"""
from __future__ import annotations


from pipeline.boxes import write_boxes
from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.manifest import read_manifest, write_json
from pipeline.relabel import RelabelConfig, boxes_table, build_report, relabel_samples


def run(params_path=DEFAULT_PARAMS, overrides=(), item=None):
    config = stage_config("relabel", RelabelConfig, params_path, overrides)
    samples = read_manifest(config.manifest)
    outcomes = relabel_samples(samples, config)
    report = build_report(outcomes, config)
    write_boxes(config.boxes, boxes_table(outcomes))
    write_json(config.report, report)
    print(f"relabel ({config.backend}): {report['samples']} samples, {report['detections']} detected, "
          f"{report['fallbacks']} fallbacks, mean IoU {report['mean_iou']} -> {config.boxes}")
