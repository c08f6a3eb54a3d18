"""The evaluation (DVC stage ``evaluate``): MAE (pitch, yaw, roll, mean) on every test set of
the protocol for the rows of the paper's table 5:

* Base: the stage-1 network's bin-1 head (one crop per image);
* Ensemble: the convolutional ensemble of the same network at the ``ensemble_labels`` block's
  (s, p) (:func:`pipeline.labeling.ensemble_predictions`, as the ensemble grid computes it);
* <METHOD>-<backbone> (KD-, ODKD-, KDLOSS-, CE-...): every student of ``distill.students`` for
  every method of ``distill.methods``, the mean over its ``distill.seeds`` (each seed's
  numbers under ``seeds``); CE is the hard-label control (no teacher, same views and schedule);
* claims per test set: Ensemble < Base; every student row that reads a teacher < Base,
  < Ensemble and < every control row of the same backbone (KD-x < CE-x: what do the teacher's
  labels add?); every multi-teacher row < every single-teacher row of the same backbone
  (ODKD-x < KD-x: does the second teacher help?); each with a paired bootstrap interval over
  test images and seeds and a verdict (:mod:`pipeline.stats`).

Models trained on another manifest, or students of another teacher, are refused before any
compute (:func:`check_provenance`). Outs: ``results`` (JSON, deterministic: rounded, sorted, no
timings; the report reads it), ``metrics_dir`` (its headline for `dvc metrics show`, a file per row
and claim: MAE per test set (the mean of the angles; each angle is in ``results``), each claim's
change and verdict), ``metrics`` (the wall time) and ``predictions`` (CSV: key, dataset, row, pitch, yaw, roll,
one row per student run ``<METHOD>-<backbone>-seed<k>``; the report draws figure 7 from it).
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, Sequence

import numpy as np
import torch

from .config import FromPaths, ConfigError, NonEmpty, NonNegative, Positive, Probability
from .data import PoseDataset, load_samples
from .distributed import check_device, pick_device
from .ensemble import num_windows
from .labeling import ensemble_predictions
from .manifest import poses_array
from .files import atomic_write_bytes, file_sha256, read_text, write_json
from .metrics import mae_summary, predict_dataset
from .model import load_checkpoint
from .pose import ANGLE_NAMES
from .stage_metrics import evaluate_tables, write_stage_metrics, write_table_metrics
from .stats import compare, per_image_error

if TYPE_CHECKING:  # the blocks of the two stages whose outputs are evaluated
    from .labeling import EnsembleLabelsConfig
    from .student import DistillConfig, Run

DIGITS = 4


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    manifest: Annotated[Path, FromPaths("manifest")]
    boxes: Annotated[Optional[Path], FromPaths("boxes")]   # relabel boxes CSV; null = the manifest's boxes
    prepare_report: Annotated[Path, FromPaths("prepare_report")]   # says which protocol this is
    teacher: Annotated[Path, FromPaths("teacher")]
    # test sets; None = all of the test split
    datasets: Optional[Annotated[tuple[str, ...], NonEmpty()]] = None
    batch_size: Positive = 64
    max_windows: Positive = 512
    num_workers: NonNegative = 0
    device: str = "auto"
    results: Annotated[Path, FromPaths("evaluate")]
    metrics: Path = Path("metrics/evaluate.json")   # the wall time
    # the headline of `results`, one file per row and claim (so rows add lines to `dvc metrics show`,
    # not columns): mean MAE per test set and row, each claim's change and verdict
    metrics_dir: Path = Path("metrics/evaluate")
    predictions: Annotated[Path, FromPaths("predictions")]
    bootstrap_resamples: Positive = 2000  # paired bootstrap of each claim (pipeline.stats)
    confidence: Probability = 0.95        # interval level of the claims

    def __post_init__(self):
        check_device(self.device)


def read_protocol(report: Path) -> int:
    text = read_text(report, ConfigError, "prepare report not found (run the prepare stage)")
    try:
        return int(json.loads(text)["protocol"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{report}: no readable 'protocol' ({exc})") from None


def _summary(pred: np.ndarray, truth: np.ndarray) -> dict:
    mae = mae_summary(pred, truth)
    return {**{a: round(mae[a], DIGITS) for a in ANGLE_NAMES}, "mean": round(mae["mae"], DIGITS)}


def predictions_csv(keys, datasets, rows: dict[str, np.ndarray]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("key", "dataset", "row", *ANGLE_NAMES))
    for name, pred in rows.items():
        for key, dataset, angles in zip(keys, datasets, pred):
            writer.writerow((key, dataset, name, *(f"{a:.{DIGITS}f}" for a in angles)))
    return buf.getvalue().encode()


def check_provenance(cfg: EvaluateConfig, teacher_meta: dict, student_metas: dict[Path, dict]) -> None:
    """Refuse to report models trained on another manifest, or students of another teacher
    (a stage run by hand after its inputs moved on); the error names the checkpoint."""
    manifest_sha, teacher_sha = file_sha256(cfg.manifest), file_sha256(cfg.teacher)
    for path, meta in {cfg.teacher: teacher_meta, **student_metas}.items():
        if meta.get("manifest_sha256") != manifest_sha:
            raise ConfigError(f"{path}: trained on another manifest than {cfg.manifest} "
                              "(stale checkpoint: re-run its training stage)")
    for path, meta in student_metas.items():
        caches = meta.get("teacher_caches", {"?": {}})   # {} for a hard-label control: no teacher
        if any(c.get("teacher_sha256") != teacher_sha for c in caches.values()):
            raise ConfigError(f"{path}: distilled from another teacher than {cfg.teacher} "
                              "(stale student: re-run the labelling stages and distill)")


def student_row(backbone: str, method: str) -> str:
    """A student row of the table: ``<METHOD>-<backbone>`` (KD-resnet18, ODKD-resnet18, ...)."""
    return f"{method.upper()}-{backbone}"


def claims(rows: dict[str, np.ndarray], truth: np.ndarray, names: np.ndarray,
           runs: dict[str, list[str]], resamples: int, level: float,
           versus: Sequence[tuple[str, str]] = (), controls: Sequence[str] = ()) -> dict:
    """The claims per test set, each a paired bootstrap over the test images and the student
    seeds (:func:`pipeline.stats.compare`): Ensemble < Base, every student row but the
    ``controls`` < Base and < Ensemble, and the pairs of student rows ``versus`` (against the
    control, multi- against single-teacher). ``runs``: student row -> its per-seed prediction rows."""
    out = {}
    for dataset in sorted(set(names)):
        mask = names == dataset
        errors = {row: per_image_error(pred[mask], truth[mask])[None] for row, pred in rows.items()
                  if row in ("Base", "Ensemble")}
        for kd, seeds in runs.items():
            errors[kd] = np.stack([per_image_error(rows[r][mask], truth[mask]) for r in seeds])
        pairs = ([("Ensemble", "Base")]
                 + [(kd, base) for kd in runs if kd not in controls for base in ("Base", "Ensemble")]
                 + list(versus))
        # keyed by claim (not a list) so that `dvc metrics show` lists every interval and verdict
        out[dataset] = {f"{a} < {b}": compare(errors[a], errors[b], row=a, baseline=b, resamples=resamples,
                                              level=level).as_dict() for a, b in pairs}
    return out


@torch.no_grad()
def evaluate_rows(cfg: EvaluateConfig, s: int, p: int, students: dict[Run, Path],
                  single_teacher: Sequence[str] = (), controls: Sequence[str] = ()) -> tuple[dict, bytes]:
    """(metrics dict, predictions CSV bytes) for Base, Ensemble and every student run
    (``students``: run -> checkpoint); ``single_teacher``: the methods with one teacher (each
    multi-teacher row is compared with each of them, same backbone); ``controls``: the
    hard-label methods (every other row is compared with each of them, same backbone)."""
    protocol = read_protocol(cfg.prepare_report)   # before any compute: fail fast
    samples = load_samples(cfg.manifest, split="test", boxes=cfg.boxes, datasets=cfg.datasets)
    if not samples:
        raise ConfigError(f"{cfg.manifest}: no test samples" + (f" of {list(cfg.datasets)}" if cfg.datasets else ""))
    device = pick_device(cfg.device)
    teacher, teacher_meta = load_checkpoint(cfg.teacher, map_location=device)
    loaded = {run: load_checkpoint(path, map_location=device) for run, path in students.items()}
    check_provenance(cfg, teacher_meta, {students[run]: meta for run, (_, meta) in loaded.items()})
    rows = {}
    preds, _ = predict_dataset(teacher, PoseDataset(samples, teacher.input_size), cfg.batch_size, device,
                               cfg.num_workers)
    rows["Base"] = preds[teacher.prediction_head]
    rows["Ensemble"] = ensemble_predictions(teacher, samples, [(s, p)], max(1, cfg.batch_size // 8),
                                            cfg.num_workers, device, cfg.max_windows,
                                            desc=f"ensemble A={num_windows(s, p)}")[(s, p)]
    runs: dict[str, list[str]] = {}
    for run, (student, _) in loaded.items():
        preds, _ = predict_dataset(student, PoseDataset(samples, student.input_size), cfg.batch_size, device,
                                   cfg.num_workers)
        name = f"{student_row(run.backbone, run.method)}-seed{run.seed}"
        rows[name] = preds[student.prediction_head]
        runs.setdefault(student_row(run.backbone, run.method), []).append(name)
    backbones = dict.fromkeys(run.backbone for run in students)
    methods = dict.fromkeys(run.method for run in students)
    taught = [m for m in methods if m not in controls]
    versus = ([(student_row(b, m), student_row(b, c)) for b in backbones for m in taught for c in methods
               if c in controls]
              + [(student_row(b, m), student_row(b, k)) for b in backbones for m in taught
                 if m not in single_teacher for k in methods if k in single_teacher])
    truth = poses_array(samples)
    names = np.array([x.dataset for x in samples])
    test, seeds = {}, {}
    for dataset in sorted(set(names)):
        mask = names == dataset
        table = {row: _summary(rows[row][mask], truth[mask]) for row in ("Base", "Ensemble")}
        for kd, members in runs.items():   # a KD row: the mean over its seeds
            per_seed = [_summary(rows[r][mask], truth[mask]) for r in members]
            table[kd] = {k: round(float(np.mean([m[k] for m in per_seed])), DIGITS) for k in per_seed[0]}
            seeds.setdefault(dataset, {})[kd] = {r.rsplit("-", 1)[1]: m["mean"] for r, m in zip(members, per_seed)}
        test[dataset] = table
    metrics = {"protocol": protocol,
               "ensemble": {"s": s, "p": p, "A": num_windows(s, p)},
               "samples": {dataset: int((names == dataset).sum()) for dataset in sorted(set(names))},
               "test": test,
               "seeds": seeds,
               "claims": claims(rows, truth, names, runs, cfg.bootstrap_resamples, cfg.confidence, versus,
                                [student_row(b, c) for b in backbones for c in methods if c in controls])}
    return metrics, predictions_csv([x.key for x in samples], names, rows)


def evaluate_models(cfg: EvaluateConfig, ensemble: EnsembleLabelsConfig, distill: DistillConfig) -> dict:
    """The evaluate job: the Ensemble row at the cache's (s, p) (``ensemble``), a row per
    student and method of ``distill`` (mean over its seeds) and the claims with their intervals; writes
    ``cfg.results``, ``cfg.metrics`` and ``cfg.predictions``; returns the results."""
    start = time.perf_counter()
    single = [m for m in distill.methods if distill.method[m].single_teacher]
    controls = [m for m in distill.methods if distill.method[m].control]
    metrics, predictions = evaluate_rows(cfg, ensemble.s, ensemble.p, distill.checkpoints(), single, controls)
    atomic_write_bytes(cfg.predictions, predictions)
    write_json(cfg.results, metrics)
    write_table_metrics(cfg.metrics_dir, evaluate_tables(metrics))
    write_stage_metrics(cfg.metrics, {}, time.perf_counter() - start)
    for dataset, table in metrics["test"].items():
        print(f"{dataset}: " + ", ".join(f"{row} {v['mean']:.3f}" for row, v in table.items()))
        for c in metrics["claims"][dataset].values():
            print(f"  {c['row']} vs {c['baseline']}: {c['relative']:+.2f}% "
                  f"[{c['low']:+.2f}, {c['high']:+.2f}] {c['verdict']}")
    return metrics
