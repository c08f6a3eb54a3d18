"""DVC stage ``report``: ``results.md`` (paper table 5 shape, with the paper's claims checked)
and ``figure7.png`` from the evaluate stage's metrics and predictions
(:func:`pipeline.report.write_report`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, stage_config
from pipeline.report import ReportConfig, write_report


def run(params_path: str | Path = DEFAULT_PARAMS, overrides=(), item=None) -> str:
    cfg = stage_config("report", ReportConfig, params_path, overrides)
    return write_report(cfg)
