import csv
import json

import numpy as np
import pytest
import torch

from pipeline import evaluation
from pipeline.config import stage_config
from pipeline.data import PoseDataset, load_samples
from pipeline.ensemble_grid import evaluate_grid
from pipeline.evaluation import EvaluateConfig, evaluate_models
from pipeline.labeling import EnsembleLabelsConfig
from pipeline.metrics import mae_summary, predict_dataset
from pipeline.model import load_checkpoint
from pipeline.project import load_stage
from pipeline.student import DistillConfig, Run, distill
from test_distill import make_kd_project

torch.set_num_threads(1)


def train_student(params):
    distill(stage_config("distill", DistillConfig, params), Run("resnet18", "kd", 0))


def evaluate(params, overrides=()):
    """The evaluate job on the evaluate, ensemble_labels and distill blocks of ``params``."""
    return evaluate_models(*(stage_config(block, cls, params, overrides) for block, cls in
                             [("evaluate", EvaluateConfig), ("ensemble_labels", EnsembleLabelsConfig),
                              ("distill", DistillConfig)]))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("kd")
    samples = make_kd_project(root)
    train_student(root / "params.yaml")
    return root, samples


def test_rows_per_test_set_match_direct_computations(project):
    root, samples = project
    metrics = load_stage("evaluate").run(root / "params.yaml", [])
    assert metrics["protocol"] == 1 and metrics["ensemble"] == {"s": 1, "p": 1, "A": 9}
    table = metrics["test"]["SYNTEST"]
    assert list(metrics["test"]) == ["SYNTEST"] and set(table) == {"Base", "Ensemble", "KD-resnet18"}
    test = load_samples(root / "manifest.csv", split="test")
    truth = np.array([s.pose for s in test])
    teacher, _ = load_checkpoint(root / "teacher.pt")
    base = mae_summary(predict_dataset(teacher, PoseDataset(test, 16))[0]["b1"], truth)
    assert table["Base"]["mean"] == pytest.approx(base["mae"], abs=1e-4)
    assert table["Base"]["yaw"] == pytest.approx(base["yaw"], abs=1e-4)
    ens = evaluate_grid(teacher, test, [(1, 1)], 2, 0, torch.device("cpu"), 512).mae[(1, 1)]
    assert table["Ensemble"]["mean"] == pytest.approx(ens.mean(), abs=1e-4)
    assert table["Ensemble"]["mean"] != table["Base"]["mean"]
    student, _ = load_checkpoint(root / "students" / "resnet18-kd-seed0.pt")
    kd = mae_summary(predict_dataset(student, PoseDataset(test, 16))[0]["b1"], truth)
    assert table["KD-resnet18"]["roll"] == pytest.approx(kd["roll"], abs=1e-4)
    with open(root / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(test) and {r["row"] for r in rows} == {"Base", "Ensemble", "KD-resnet18-seed0"}


def test_results_are_deterministic_and_metrics_are_their_headline(project):
    root, _ = project
    evaluate(root / "params.yaml")
    first = (root / "outputs" / "evaluate.json").read_bytes()
    evaluate(root / "params.yaml")
    assert (root / "outputs" / "evaluate.json").read_bytes() == first
    results = json.loads(first)
    assert "timing" not in first.decode() and results["samples"] == {"SYNTEST": 4}
    wall = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert set(wall) == {"wall_s"} and wall["wall_s"] > 0
    # the headline: a file per row (mean MAE per test set) and claim (its change and verdict)
    folder = root / "metrics" / "evaluate"
    rows = {p.stem: json.loads(p.read_text()) for p in folder.iterdir()}
    assert rows == {**{row: {"SYNTEST": v["mean"]} for row, v in results["test"]["SYNTEST"].items()},
                    **{f"{c['row']}.vs.{c['baseline']}": {"SYNTEST": f"{c['relative']:+.2f}% {c['verdict']}"}
                       for c in results["claims"]["SYNTEST"].values()}}
    assert set(rows) == {"Base", "Ensemble", "KD-resnet18", "Ensemble.vs.Base", "KD-resnet18.vs.Base",
                         "KD-resnet18.vs.Ensemble"}


def test_missing_student_checkpoint_is_named(project):
    root, _ = project
    with pytest.raises(Exception, match="resnet34-kd-seed0.pt: checkpoint not found"):
        evaluate(root / "params.yaml", ["distill.students=[resnet18, resnet34]"])


def test_missing_prepare_report_fails_before_any_compute(project, monkeypatch):
    root, _ = project

    def no_compute(*args, **kwargs):
        raise AssertionError("computed before reading the prepare report")

    monkeypatch.setattr(evaluation, "load_checkpoint", no_compute)
    monkeypatch.setattr(evaluation, "load_samples", no_compute)
    with pytest.raises(Exception, match="gone.json: prepare report not found"):
        evaluate(root / "params.yaml", [f"evaluate.prepare_report={root / 'gone.json'}"])


def test_bad_device_is_a_config_error(project):
    root, _ = project
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError, match="evaluate: device must be auto, cpu or cuda, got 'gpu'"):
        evaluate(root / "params.yaml", ["evaluate.device=gpu"])


def test_stale_teacher_or_student_is_refused_before_any_compute(tmp_path, monkeypatch):
    from pipeline.config import ConfigError
    from pipeline.manifest import write_manifest
    samples = make_kd_project(tmp_path)
    train_student(tmp_path / "params.yaml")
    monkeypatch.setattr(evaluation, "predict_dataset", lambda *a, **k: pytest.fail("computed"))
    # another teacher checkpoint: the student was distilled from the first one's cache
    torch.save(torch.load(tmp_path / "teacher.pt", weights_only=True) | {"note": "retrained"},
               tmp_path / "teacher2.pt")
    with pytest.raises(ConfigError, match=r"resnet18-kd-seed0.pt: distilled from another teacher"):
        evaluate(tmp_path / "params.yaml", [f"evaluate.teacher={tmp_path / 'teacher2.pt'}"])
    write_manifest(tmp_path / "manifest.csv", samples[:-1])  # prepare ran again, nothing else did
    with pytest.raises(ConfigError, match=r"teacher.pt: trained on another manifest"):
        evaluate(tmp_path / "params.yaml")


def test_kd_row_is_the_mean_over_seeds_and_every_claim_has_an_interval(project):
    root, _ = project
    params = root / "params.yaml"
    seeds = ["distill.seeds=[0, 1]"]
    distill(stage_config("distill", DistillConfig, params, seeds), Run("resnet18", "kd", 1))
    metrics = evaluate(params, seeds)
    per_seed = metrics["seeds"]["SYNTEST"]["KD-resnet18"]
    assert set(per_seed) == {"seed0", "seed1"} and per_seed["seed0"] != per_seed["seed1"]
    assert metrics["test"]["SYNTEST"]["KD-resnet18"]["mean"] == pytest.approx(np.mean(list(per_seed.values())), abs=1e-4)
    assert list(metrics["claims"]["SYNTEST"]) == ["Ensemble < Base", "KD-resnet18 < Base", "KD-resnet18 < Ensemble"]
    found = {(c["row"], c["baseline"]): c for c in metrics["claims"]["SYNTEST"].values()}
    assert set(found) == {("Ensemble", "Base"), ("KD-resnet18", "Base"), ("KD-resnet18", "Ensemble")}
    for (row, baseline), c in found.items():
        table = metrics["test"]["SYNTEST"]
        assert c["mae_row"] == pytest.approx(table[row]["mean"], abs=1e-3)
        assert c["mae_baseline"] == pytest.approx(table[baseline]["mean"], abs=1e-3)
        assert c["low"] <= c["relative"] <= c["high"]
        assert c["verdict"] == ("holds" if c["high"] < 0 else "fails" if c["low"] > 0 else "within noise")
    assert found[("KD-resnet18", "Base")]["seeds_row"] == 2 and found[("Ensemble", "Base")]["seeds_row"] == 1
    assert len(found[("KD-resnet18", "Base")]["per_seed_relative"]) == 2


def distill_more_and_evaluate(root, more: tuple[str, ...]) -> dict:
    """Train the `more` methods beside the fixture's KD student (seed 0), then evaluate them all."""
    params = root / "params.yaml"
    methods = [f"distill.methods=[kd, {', '.join(more)}]"]
    for method in more:
        distill(stage_config("distill", DistillConfig, params, methods), Run("resnet18", method, 0))
    return evaluate(params, methods)


def test_two_teacher_rows_sit_beside_single_teacher_kd_with_their_claims(project):
    metrics = distill_more_and_evaluate(project[0], ("odkd", "kdloss"))
    table = metrics["test"]["SYNTEST"]
    assert set(table) == {"Base", "Ensemble", "KD-resnet18", "ODKD-resnet18", "KDLOSS-resnet18"}
    assert len({table[r]["mean"] for r in ("KD-resnet18", "ODKD-resnet18", "KDLOSS-resnet18")}) == 3
    claims = metrics["claims"]["SYNTEST"]
    for row in ("ODKD-resnet18", "KDLOSS-resnet18"):   # the second teacher against Base, Ensemble, one teacher
        for baseline in ("Base", "Ensemble", "KD-resnet18"):
            c = claims[f"{row} < {baseline}"]
            assert c["mae_row"] == pytest.approx(table[row]["mean"], abs=1e-3)
            assert c["mae_baseline"] == pytest.approx(table[baseline]["mean"], abs=1e-3)
    assert "KD-resnet18 < ODKD-resnet18" not in claims and len(claims) == 1 + 2 * 3 + 2


def test_the_hard_label_control_is_a_row_every_taught_row_is_compared_with(project):
    root, _ = project
    metrics = distill_more_and_evaluate(root, ("ce", "odkd"))   # a control has no teacher: the provenance check lets it through
    control = load_checkpoint(root / "students" / "resnet18-ce-seed0.pt")[1]
    assert control["teacher_caches"] == {} and control["config"]["method_config"]["loss"] == "ce"
    table, claims = metrics["test"]["SYNTEST"], metrics["claims"]["SYNTEST"]
    assert "CE-resnet18" in table
    for row in ("KD-resnet18", "ODKD-resnet18"):   # KD < CE: what the teacher's labels add
        c = claims[f"{row} < CE-resnet18"]
        assert c["mae_baseline"] == pytest.approx(table["CE-resnet18"]["mean"], abs=1e-3)
    assert not [name for name in claims if name.startswith("CE-")]     # the control makes no claim of its own
    assert set(claims) == {"Ensemble < Base", "KD-resnet18 < Base", "KD-resnet18 < Ensemble", "KD-resnet18 < CE-resnet18",
                           "ODKD-resnet18 < Base", "ODKD-resnet18 < Ensemble", "ODKD-resnet18 < CE-resnet18",
                           "ODKD-resnet18 < KD-resnet18"}
