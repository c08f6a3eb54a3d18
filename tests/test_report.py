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


def test_claims_say_which_effects_hold():
    lines = claims(METRICS)
    assert "- AFLW2000: Ensemble below Base? yes (3.800 vs 4.000, -5.0%)" in lines
    assert "- AFLW2000: KD-resnet18 below Base? NO (4.100 vs 4.000, +2.5%)" in lines
    assert "- BIWI: KD-resnet18 below Ensemble? yes (4.000 vs 5.167, -22.6%)" in lines


def test_figure7_draws_bold_prediction_and_thin_truth(tmp_path):
    image = np.full((100, 100, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    sample = Sample(key="A/0", dataset="A", image=str(tmp_path / "a.png"), pose=(0.0, 0.0, 0.0), box=(30, 30, 70, 70))
    figure7([sample, sample], np.array([[0.0, 0.0, 0.0], [0.0, 60.0, 0.0]]), tmp_path / "f.png", cell=64, columns=2)
    sheet = cv2.cvtColor(cv2.imread(str(tmp_path / "f.png")), cv2.COLOR_BGR2RGB)
    assert sheet.shape == (64, 128, 3)
    base = np.full((64, 64, 3), 40, np.uint8)
    thin = (draw_axes(base, (0, 0, 0), thickness=1) != 40).any(-1).sum()
    bold = (draw_axes(base, (0, 0, 0), thickness=4) != 40).any(-1).sum()
    left, right = ((sheet[:, :64] != 40).any(-1).sum(), (sheet[:, 64:] != 40).any(-1).sum())
    assert left == bold and bold > 2 * thin   # agreeing poses: the bold axes cover the thin ones
    assert right > bold                        # a wrong prediction leaves the thin truth visible
    with pytest.raises(ValueError, match="one prediction per sample"):
        figure7([sample], np.zeros((2, 3)), tmp_path / "g.png")


def test_stage_writes_table_and_figure_from_evaluate_outputs(tmp_path):
    make_kd_project(tmp_path)
    train_student(tmp_path / "params.yaml")
    metrics = evaluate(tmp_path / "params.yaml")
    text = load_stage("report").run(tmp_path / "params.yaml", [])
    assert (tmp_path / "reports" / "results.md").read_text() == text
    kd = metrics["test"]["SYNTEST"]["KD-resnet18"]
    assert f"| KD-resnet18 | {kd['pitch']:.3f} |" in text and "![" in text and "figure7.png" in text
    png = cv2.imread(str(tmp_path / "reports" / "figure7.png"))
    assert png.shape == (64, 128, 3)  # 2 test images of the one test set, 64 px cells
    with pytest.raises(Exception, match="not a row"):
        write_report(stage_config("report", ReportConfig, tmp_path / "params.yaml",
                                  ["report.figure_row=KD-resnet50"]))
