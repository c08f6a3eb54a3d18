"""The DVC metrics file of a stage: the headline numbers of its full report, and its wall time.

`dvc metrics show` prints a column for every number of every metrics file, so a stage declares
as metrics only what a reader compares between experiments (MAE per test set, row and angle;
counts; timings) and writes everything else to a report that is an ordinary output."""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .files import write_json


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, prefix + (str(key),))
        else:
            yield prefix + (str(key),), value


def headline(report: Mapping, patterns: Sequence[str]) -> dict:
    """The leaves of ``report`` whose dotted path matches one of ``patterns`` (each part a
    glob: ``"test.*.b1.mae"``), nested as in the report."""
    wanted = [p.split(".") for p in patterns]
    out: dict = {}
    for path, value in _leaves(report):
        if any(len(w) == len(path) and all(fnmatchcase(k, g) for k, g in zip(path, w)) for w in wanted):
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    return out


def write_stage_metrics(path: str | Path, report: Mapping, patterns: Sequence[str], wall_s: float) -> dict:
    """Write ``headline(report, patterns)`` plus ``wall_s`` (seconds) to ``path``; returns it."""
    metrics = {**headline(report, patterns), "wall_s": round(float(wall_s), 1)}
    write_json(path, metrics)
    return metrics
