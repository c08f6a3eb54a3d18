"""A stage's DVC metrics: a few shared, flat keys (so `dvc metrics show` stays one narrow table),
the evaluate table as a file per row and claim (so more rows add lines, not width)."""
import json

import pytest

from pipeline.stage_metrics import (claim_value, evaluate_tables, training_headline, write_stage_metrics,
                                    write_table_metrics)

REPORT = {"best_epoch": 3, "val": {"mae": 4.23456, "trivial_mae": 18.0},
          "test": {"AFLW2000": {"b1": {"mae": 4.3, "yaw": 5.0}, "reg": {"mae": 9.0}},
                   "BIWI": {"b1": {"mae": 3.5, "yaw": 3.4}}},
          "timing": {"images_per_s": 55.123456, "train_s": 12.345}, "checkpoint_sha256": "ab" * 32}


def _claim(row, baseline, relative, verdict):
    return {"row": row, "baseline": baseline, "relative": relative, "low": relative - 1, "high": relative + 1,
            "verdict": verdict}


def results(backbones=("resnet18",), methods=("KD", "ODKD"), datasets=("AFLW2000", "BIWI")):
    """The shape of the evaluate stage's results: rows per test set, claims per test set."""
    rows = ["Base", "Ensemble"] + [f"{m}-{b}" for b in backbones for m in methods]
    claims = [("Ensemble", "Base")] + [(f"{m}-{b}", base) for b in backbones for m in methods
                                       for base in ("Base", "Ensemble")]
    claims += [(f"{m}-{b}", f"KD-{b}") for b in backbones for m in methods if m != "KD"]
    return {"test": {d: {r: {"pitch": 1.0, "mean": 10.0 + i} for i, r in enumerate(rows)} for d in datasets},
            "claims": {d: {f"{a} < {b}": _claim(a, b, -12.3456, "within noise") for a, b in claims} for d in datasets}}


def test_training_headline_is_test_mae_per_set_validation_and_rate():
    assert training_headline(REPORT, "b1") == {"AFLW2000": 4.3, "BIWI": 3.5, "val": 4.23456, "img/s": 55.123456}


def test_written_metrics_are_flat_rounded_and_add_the_wall_time(tmp_path):
    written = write_stage_metrics(tmp_path / "m.json", training_headline(REPORT, "b1"), 12.345)
    assert written == {"AFLW2000": 4.3, "BIWI": 3.5, "val": 4.2346, "img/s": 55.1235, "wall_s": 12.3}
    assert json.loads((tmp_path / "m.json").read_text()) == written


def test_evaluate_tables_have_a_file_per_row_and_claim_keyed_by_test_set():
    tables = evaluate_tables(results())
    assert tables["KD-resnet18"] == {"AFLW2000": 12.0, "BIWI": 12.0} and tables["Base"]["BIWI"] == 10.0
    assert tables["ODKD-resnet18.vs.KD"] == {"AFLW2000": "-12.35% within noise", "BIWI": "-12.35% within noise"}
    assert set(tables) == {"Base", "Ensemble", "KD-resnet18", "ODKD-resnet18", "Ensemble.vs.Base",
                           "KD-resnet18.vs.Base", "KD-resnet18.vs.Ensemble", "ODKD-resnet18.vs.Base",
                           "ODKD-resnet18.vs.Ensemble", "ODKD-resnet18.vs.KD"}
    assert claim_value(_claim("a", "b", 0.5, "fails")) == "+0.50% fails"


def test_the_table_folder_is_replaced_whole(tmp_path):
    folder = tmp_path / "metrics" / "evaluate"
    write_table_metrics(folder, evaluate_tables(results(methods=("KD", "ODKD"))))
    assert (folder / "ODKD-resnet18.vs.KD.json").is_file()
    write_table_metrics(folder, evaluate_tables(results(methods=("KD",))))   # a method dropped
    assert sorted(p.name for p in folder.iterdir()) == ["Base.json", "Ensemble.json", "Ensemble.vs.Base.json",
                                                         "KD-resnet18.json", "KD-resnet18.vs.Base.json",
                                                         "KD-resnet18.vs.Ensemble.json"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["evaluate"]   # no temporary folder left
    with pytest.raises(TypeError):
        write_table_metrics(folder, {"Base": {"AFLW2000": object()}})       # not JSON: the old folder stays
    assert len(list(folder.iterdir())) == 6 and sorted(p.name for p in folder.parent.iterdir()) == ["evaluate"]


def _dvc_width(folder) -> int:
    """The widest line of `dvc metrics show` for the files under ``folder``/metrics, drawn by DVC's
    own table code."""
    from dvc.compare import metrics_table
    from tabulate import tabulate

    data = {str(p.relative_to(folder)): {"data": json.loads(p.read_text())}
            for p in sorted((folder / "metrics").rglob("*.json"))}
    table = metrics_table({"workspace": {"data": data}}, precision=5, round_digits=True)
    text = tabulate(list(table), table.keys(), tablefmt="plain", disable_numparse=True, missingval="-")
    return max(map(len, text.splitlines()))


def test_more_rows_and_claims_add_lines_to_dvc_metrics_show_not_width(tmp_path):
    """Four students and a fifth method, as the paper's table 5 has them, print no wider than one."""
    few, many = tmp_path / "few", tmp_path / "many"
    write_table_metrics(few / "metrics" / "evaluate", evaluate_tables(results(backbones=("resnet152",),
                                                                              methods=("KD", "KDLOSS"))))
    write_table_metrics(many / "metrics" / "evaluate", evaluate_tables(results(
        backbones=("resnet18", "resnet34", "resnet50", "resnet152"), methods=("KD", "ODKD", "CE", "KDLOSS"))))
    assert len(list((many / "metrics" / "evaluate").iterdir())) > 4 * len(list((few / "metrics" / "evaluate").iterdir()))
    assert _dvc_width(many) == _dvc_width(few) < 120
