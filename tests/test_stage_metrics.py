"""A stage's DVC metrics are the headline of its report: only the leaves asked for, nested."""
import json

from pipeline.stage_metrics import headline, write_stage_metrics

REPORT = {"best_epoch": 3, "val": {"mae": 4.2, "trivial_mae": 18.0},
          "test": {"AFLW2000": {"b1": {"mae": 4.3, "yaw": 5.0}, "reg": {"mae": 9.0}},
                   "BIWI": {"b1": {"mae": 3.5, "yaw": 3.4}}},
          "checkpoint_sha256": "ab" * 32, "rows": [1, 2]}


def test_headline_keeps_matching_leaves_only():
    assert headline(REPORT, ("val.mae", "test.*.b1.mae")) == {
        "val": {"mae": 4.2}, "test": {"AFLW2000": {"b1": {"mae": 4.3}}, "BIWI": {"b1": {"mae": 3.5}}}}
    assert headline(REPORT, ("test.*",)) == {}            # a pattern matches whole paths, not prefixes
    assert headline(REPORT, ("*",)) == {"best_epoch": 3, "checkpoint_sha256": "ab" * 32, "rows": [1, 2]}


def test_written_metrics_add_the_wall_time(tmp_path):
    written = write_stage_metrics(tmp_path / "m.json", REPORT, ("best_epoch",), 12.345)
    assert written == {"best_epoch": 3, "wall_s": 12.3} == json.loads((tmp_path / "m.json").read_text())
