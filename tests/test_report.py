import json

import cv2
import numpy as np
import pytest

from pipeline.config import stage_config
from pipeline.draw import draw_axes
from pipeline.manifest import Sample
from pipeline.project import load_stage
from pipeline.report import ReportConfig, claims, figure7, relative_change, results_table, write_report
from test_distill import make_kd_project
from test_evaluate import evaluate, train_student

METRICS = {"protocol": 1, "ensemble": {"s": 5, "p": 15, "A": 49},
           "test": {"AFLW2000": {"Base": {"pitch": 5.0, "yaw": 4.0, "roll": 3.0, "mean": 4.0},
                                 "Ensemble": {"pitch": 4.5, "yaw": 3.9, "roll": 3.0, "mean": 3.8},
                                 "KD-resnet18": {"pitch": 4.8, "yaw": 4.2, "roll": 3.3, "mean": 4.1}},
                    "BIWI": {"Base": {"pitch": 6.0, "yaw": 5.0, "roll": 4.0, "mean": 5.0},
                             "Ensemble": {"pitch": 6.0, "yaw": 5.5, "roll": 4.0, "mean": 5.1667},
                             "KD-resnet18": {"pitch": 5.0, "yaw": 4.0, "roll": 3.0, "mean": 4.0}}}}


def test_table_rows_columns_and_relative_change():
    text = results_table(METRICS)
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    assert lines[0].startswith("| Model | AFLW2000 pitch | AFLW2000 yaw")
    assert [l.split(" | ")[0] for l in lines[1:]] == ["| Base", "| Ensemble", "| KD-resnet18"]
    assert "| Ensemble | 4.500 | 3.900 | 3.000 | **3.800** | -5.0% |" in text
    assert "**4.000** | -20.0% |" in lines[3]  # KD on BIWI
    assert relative_change(3.0, 4.0) == pytest.approx(-25.0)


def test_claims_table_shows_interval_seeds_and_verdict():
    from pipeline.stats import compare
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 2.0, size=(1, 200))
    found = [compare(base * 0.9, base, "Ensemble", "Base").as_dict(),
             compare(np.concatenate([base * 0.8, base * 1.2, base * 1.0]), base, "KD-resnet18", "Base").as_dict()]
    lines = claims({**METRICS, "claims": {"AFLW2000": {f"{c['row']} < {c['baseline']}": c for c in found}}})
    ens = next(l for l in lines if "Ensemble < Base" in l)
    assert ens.startswith("| AFLW2000 | Ensemble < Base |") and "-10.00%" in ens and "(1 seed)" in ens
    assert ens.endswith("| **holds** |")
    kd = next(l for l in lines if "KD-resnet18 < Base" in l)
    assert "-20.0%, +20.0%, +0.0%" in kd and kd.endswith("| **within noise** |")
    assert "paired bootstrap" in lines[-1] and "one seed" not in lines[-1]   # 3 student seeds
    assert claims(METRICS) == ["(no claims in these metrics: re-run the evaluate stage)"]


def test_grid_section_reports_the_validation_choice_on_every_split():
    from pipeline.report import grid_section
    rows = [{"split": split, "s": s, "p": p, "A": (2 * p // s + 1) ** 2, "mean": mean}
            for split, s, p, mean in [("validation", 2, 0, 5.0), ("validation", 2, 2, 4.8), ("validation", 4, 4, 4.7),
                                      ("AFLW2000", 2, 0, 6.0), ("AFLW2000", 2, 2, 5.5), ("AFLW2000", 4, 4, 5.7)]]
    shift = {"validation": [{"shift": 0, "windows": 1, "mae": 5.0}, {"shift": 2, "windows": 8, "mae": 5.2}]}
    text = "\n".join(grid_section({"rows": rows, "shift": shift,
                                    "chosen_on_validation": {"s": 4, "p": 4, "A": 9, "mean": 4.7}}, "grid"))
    assert "Best on the validation split: s = 4, p = 4 (A = 9)." in text
    assert "| AFLW2000 | 6.000 | 5.500 (s = 2, p = 2) | 5.700 |" in text      # test's own best is not the pick
    assert "| validation | 5.000 | 5.200 |" in text and "(grid/shift.png)" in text


def test_figure7_draws_bold_prediction_and_thin_truth(tmp_path):
    image = np.full((100, 100, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    sample = Sample(key="A/0", dataset="A", image=str(tmp_path / "a.png"), pose=(0.0, 0.0, 0.0), box=(30, 30, 70, 70))
    figure7([sample, sample], np.array([[0.0, 0.0, 0.0], [0.0, 60.0, 0.0]]), tmp_path / "f.png", cell=64, columns=2)
    sheet = cv2.cvtColor(cv2.imread(str(tmp_path / "f.png")), cv2.COLOR_BGR2RGB)
    label, caption, legend = 96, 18, 2 * 14 + 4      # dataset band, error line, two legend lines
    assert sheet.shape == (64 + caption + legend, label + 128, 3)
    for band in (sheet[:64, :label], sheet[64:64 + caption, label:], sheet[-legend:]):
        assert (band < 128).any()                     # text: the dataset, each face's error, the legend
    cells = sheet[:64, label:]
    base = np.full((64, 64, 3), 40, np.uint8)
    thin = (draw_axes(base, (0, 0, 0), thickness=1) != 40).any(-1).sum()
    bold = (draw_axes(base, (0, 0, 0), thickness=4) != 40).any(-1).sum()
    left, right = ((cells[:, :64] != 40).any(-1).sum(), (cells[:, 64:] != 40).any(-1).sum())
    assert left == bold and bold > 2 * thin   # agreeing poses: the bold axes cover the thin ones
    assert right > bold                        # a wrong prediction leaves the thin truth visible
    with pytest.raises(ValueError, match="one prediction per sample"):
        figure7([sample], np.zeros((2, 3)), tmp_path / "g.png")


def test_stage_writes_table_and_figure_from_evaluate_outputs(tmp_path):
    make_kd_project(tmp_path)
    train_student(tmp_path / "params.yaml")
    metrics = evaluate(tmp_path / "params.yaml")
    grid = {"chosen_on_validation": {"s": 1, "p": 1, "A": 9, "mean": 7.0},
            "rows": [{"split": "validation", "s": 1, "p": p, "A": (2 * p + 1) ** 2, "mean": 8.0 - p} for p in (0, 1)],
            "shift": {"validation": [{"shift": 0, "windows": 1, "mae": 8.0}, {"shift": 1, "windows": 8, "mae": 8.5}]}}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    text = load_stage("report").run(tmp_path / "params.yaml", [f"report.grid={tmp_path / 'grid.json'}"])
    assert "Best on the validation split: s = 1, p = 1 (A = 9)." in text and "| validation | 8.000 | 8.500 |" in text
    assert (tmp_path / "reports" / "results.md").read_text() == text
    kd = metrics["test"]["SYNTEST"]["KD-resnet18"]
    assert f"| KD-resnet18 | {kd['pitch']:.3f} |" in text and "![" in text and "figure7.png" in text
    png = cv2.imread(str(tmp_path / "reports" / "figure7.png"))
    assert png.shape == (64 + 18 + 32, 96 + 128, 3)  # 2 test images of the one test set, 64 px cells, labelled
    with pytest.raises(Exception, match="not a row"):
        write_report(stage_config("report", ReportConfig, tmp_path / "params.yaml",
                                  ["report.figure_row=KD-resnet50"]))


def test_unreadable_inputs_are_named(tmp_path):
    from pipeline.config import ConfigError
    from pipeline.report import read_grid, read_metrics
    with pytest.raises(ConfigError, match="gone.json: metrics not found \\(run the evaluate stage\\)"):
        read_metrics(tmp_path / "gone.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        read_grid(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(ConfigError, match="other.json: not an ensemble-grid file \\(needs rows, shift\\)"):
        read_grid(tmp_path / "other.json")
