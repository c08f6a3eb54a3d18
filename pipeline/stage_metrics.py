"""The DVC metrics of a stage: a short headline of its full report, and its wall time.

`dvc metrics show` draws ONE table: a row per metrics file and a column per key of ANY file. So
the stages share a few short keys, and what grows (rows of the results table, claims, student
runs) grows by files, i.e. lines, never by keys. The keys, all flat:

* ``<dataset>`` (``300W_LP``, ``AFLW2000``, ``BIWI``, ``AFLW``): one number per dataset, which
  number the file says: images (synth), samples kept (prepare), fallback boxes (relabel), test
  MAE (train-teacher, every student run, every row of the evaluate table), or a claim's change
  and verdict (evaluate);
* ``val``: validation MAE (the training stages; the ensemble grid's chosen cell);
* ``img/s``: images per second (training and labelling); ``s``, ``p``: the grid's chosen cell;
* ``wall_s``: the stage's wall time, in every stage's main file.

Everything else is in the reports beside them (ordinary outputs)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

from .files import atomic_folder, write_json

VAL, RATE, WALL = "val", "img/s", "wall_s"
DIGITS = 4
Scalar = Union[int, float, str]


def _rounded(value: Scalar) -> Scalar:
    return round(value, DIGITS) if isinstance(value, float) else value


def write_stage_metrics(path: str | Path, headline: Mapping[str, Scalar], wall_s: float) -> dict:
    """Write the flat ``headline`` (keys of the module docstring) plus ``wall_s`` to ``path``."""
    metrics = {**{key: _rounded(value) for key, value in headline.items()}, WALL: round(float(wall_s), 1)}
    write_json(path, metrics)
    return metrics


def training_headline(report: Mapping, head: str) -> dict:
    """A training stage's headline (train-teacher, each student run): the test MAE of ``head`` per
    test set, the validation MAE and the training rate."""
    return {**{dataset: heads[head]["mae"] for dataset, heads in report["test"].items()},
            VAL: report["val"]["mae"], RATE: report["timing"]["images_per_s"]}


def claim_value(claim: Mapping) -> str:
    """A claim in one cell: the change of the row's MAE against the baseline's, and the verdict."""
    return f"{claim['relative']:+.2f}% {claim['verdict']}"


def evaluate_tables(results: Mapping) -> dict[str, dict[str, Scalar]]:
    """The evaluate stage's headline, one entry a line of `dvc metrics show`: each row of the table
    (``KD-resnet18``: its mean MAE per test set) and each claim ``A < B`` (``KD-resnet18.vs.Base``,
    listed after its row: its change and verdict per test set; a baseline of the row's own
    backbone is named by its method alone, ``ODKD-resnet18.vs.KD``). Row and method names are file
    names as they are (:func:`pipeline.evaluation.student_row`)."""
    tables: dict[str, dict[str, Scalar]] = {}
    for dataset, rows in results["test"].items():
        for row, mae in rows.items():
            tables.setdefault(row, {})[dataset] = mae["mean"]
    for dataset, claims in results["claims"].items():
        for claim in claims.values():
            row, baseline = claim["row"], claim["baseline"]
            if "-" in row and "-" in baseline and row.split("-", 1)[1] == baseline.split("-", 1)[1]:
                baseline = baseline.split("-", 1)[0]
            tables.setdefault(f"{row}.vs.{baseline}", {})[dataset] = claim_value(claim)
    return tables


def write_table_metrics(folder: str | Path, tables: Mapping[str, Mapping[str, Scalar]]) -> None:
    """One metrics file per entry of ``tables`` (name -> {dataset: value}) in ``folder``, which is
    replaced whole: a row or claim that is gone leaves no file behind."""
    with atomic_folder(folder) as tmp:
        for name, values in tables.items():
            write_json(tmp / f"{name}.json", {key: _rounded(v) for key, v in values.items()})
