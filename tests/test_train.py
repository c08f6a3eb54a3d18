import json
import os
import subprocess
import sys

import cv2
import numpy as np
from pathlib import Path
import pytest
import torch
import yaml

from pipeline.augment import AugmentConfig
from pipeline.config import stage_config
from pipeline.data import PoseDataset, holdout_split, load_samples
from pipeline.losses import teacher_loss
from pipeline.manifest import ManifestError, Sample, write_manifest
from pipeline.files import file_sha256
from pipeline.metrics import evaluate, mae_summary, trivial_mae
from pipeline.model import build_model, checkpoint_meta, load_checkpoint
from pipeline.pose import rotation_from_pose
from pipeline.project import load_stage
from pipeline.teacher import TrainTeacherConfig, train_teacher
from pipeline.train import EpochBatches, TrainingStageConfig, fit

POINTS = [((0, 0, -1.0), (255, 60, 60)), ((-0.45, -0.35, -0.7), (60, 255, 60)),
          ((0.45, -0.35, -0.7), (60, 255, 60)), ((0, 0.55, -0.6), (60, 60, 255)),
          ((0, -0.9, -0.2), (255, 255, 60)), ((-0.9, 0, 0), (255, 60, 255)), ((0.9, 0, 0), (255, 60, 255))]


def face(pose, size=48):
    img = np.full((size, size, 3), 30, np.uint8)
    rot = rotation_from_pose(pose)
    for xyz, colour in sorted([(rot @ np.array(p), c) for p, c in POINTS], key=lambda t: -t[0][2]):
        cv2.circle(img, (int(size / 2 + 14 * xyz[0]), int(size / 2 + 14 * xyz[1])), 3, colour, -1)
    return img


def make_manifest(root, n_train=24, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n_train + n_test):
        pose = tuple(float(v) for v in rng.uniform([-30, -60, -20], [30, 60, 20]))
        path = root / "img" / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(face(pose), cv2.COLOR_RGB2BGR))
        split = "train" if i < n_train else "test"
        samples.append(Sample(key=f"SYN/{i:03d}", dataset="SYN" if split == "train" else "SYNTEST",
                              image=str(path), pose=pose, box=(4.0, 4.0, 44.0, 44.0), split=split))
    manifest = root / "manifest.csv"
    write_manifest(manifest, samples)
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    torch.set_num_threads(1)
    return make_manifest(tmp_path_factory.mktemp("data"))


def settings_of(**kw) -> TrainingStageConfig:
    """fit's settings; the data keys are unused by fit itself."""
    return TrainingStageConfig(manifest=Path("unused.csv"), boxes=None, **kw)


def small_fit(manifest, out, settings, on_step=None, val=True):
    samples = load_samples(manifest, split="train")
    train_set = PoseDataset(samples[:16], 32, AugmentConfig(), seed=settings.seed)
    val_set = PoseDataset(samples[16:], 32) if val else None
    torch.manual_seed(settings.seed)
    model = build_model("resnet18", input_size=32)
    meta = checkpoint_meta(model, {"lr": settings.lr}, file_sha256(manifest))
    summary = fit(model, teacher_loss, train_set, val_set, settings, out / "state", out / "best.pt", meta,
                  on_step=on_step)
    return model, summary


def test_epoch_batches_same_global_batch_for_any_world_size():
    one = list(EpochBatches(20, 8, seed=3))
    ranks = [EpochBatches(20, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    two = [a + b for a, b in zip(*ranks)]
    assert one == two and len(one) == 2
    resumed = EpochBatches(20, 8, seed=3)
    resumed.set_epoch(0, start_step=1)
    assert list(resumed) == one[1:]
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatches(4, 8, seed=0)


def test_resume_after_a_kill_continues_where_it_stopped(manifest, tmp_path):
    # 2 steps per epoch; 'last' is written only at epoch ends, so a kill after step 3 loses it
    settings = settings_of(epochs=2, batch_size=8, lr=1e-3, workers=0, checkpoint_every=100)
    full, summary = small_fit(manifest, tmp_path / "full", settings)

    class Killed(Exception):
        pass

    def kill_after_step_3(step):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        small_fit(manifest, tmp_path / "cut", settings, on_step=kill_after_step_3)
    steps_seen = []
    resumed, summary2 = small_fit(manifest, tmp_path / "cut", settings, on_step=steps_seen.append)
    assert steps_seen == [3, 4]  # epoch 1 was not redone; step 3 was, from the epoch-end state
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert summary2["best_val_mae"] == pytest.approx(summary["best_val_mae"], abs=1e-9)
    assert [h["epoch"] for h in summary2["history"]] == [1, 2]

    # a rerun of the finished run (as `dvc repro` does after deleting the outs) only re-exports
    (tmp_path / "cut" / "best.pt").unlink()
    again = []
    small_fit(manifest, tmp_path / "cut", settings, on_step=again.append)
    assert again == [] and (tmp_path / "cut" / "best.pt").is_file()


def test_worker_processes_do_not_change_results(manifest, tmp_path):
    runs = [small_fit(manifest, tmp_path / f"w{w}", settings_of(epochs=1, batch_size=8, lr=1e-3, workers=w),
                      val=False)[0] for w in (0, 2)]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)


def test_metrics_helpers(manifest):
    assert mae_summary([[1, 2, 3], [1, 2, 3]], [[0, 0, 0], [2, 2, 2]]) == \
        {"pitch": 1.0, "yaw": 1.0, "roll": 2.0, "mae": pytest.approx(4 / 3)}
    assert trivial_mae([[0, 0, 0], [10, 10, 10]], [[5, 5, 5], [7, 5, 3]])["mae"] == pytest.approx(2 / 3)
    model = build_model("resnet18", input_size=32).eval()
    result = evaluate(model, load_samples(manifest), batch_size=16)
    assert set(result) == {"SYN", "SYNTEST"}
    assert set(result["SYN"]) == {"reg", "b1", "b2", "b3", "b4"}


def test_bad_inputs_fail_early_naming_the_file(tmp_path):
    (tmp_path / "img").mkdir()
    sample = Sample(key="SYN/x", dataset="SYN", image=str(tmp_path / "img" / "gone.jpg"),
                    pose=(0.0, 0.0, 0.0), box=(0.0, 0.0, 10.0, 10.0))
    write_manifest(tmp_path / "m.csv", [sample])
    with pytest.raises(ManifestError, match="m.csv: SYN/x: image file .*gone.jpg not found"):
        load_samples(tmp_path / "m.csv")


def test_holdout_keeps_a_subject_together_and_is_stable():
    samples = [Sample(key=f"B/{s}/{i}", dataset="B", image="x", pose=(0.0, 0.0, 0.0), box=(0, 0, 1, 1),
                      subject=f"{s:02d}") for s in range(20) for i in range(5)]
    train, val = holdout_split(samples, 0.3)
    assert 0 < len(val) < len(samples)
    assert not {s.subject for s in train} & {s.subject for s in val}
    assert holdout_split(samples[::-1], 0.3)[1] == val[::-1]  # order does not move the slice
    by_key = holdout_split(samples, 0.3, group_by="key")[1]
    assert {s.subject for s in train} & {s.subject for s in by_key}
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(samples, 1.0)


def write_params(path, manifest, out, **extra):
    block = {"manifest": str(manifest), "input_size": 32, "epochs": 2, "batch_size": 8, "lr": 1e-3,
             "workers": 0, "val_fraction": 0.25, "grid_samples": 2,
             "checkpoint": str(out / "teacher.pt"), "state_dir": str(out / "state"),
             "metrics": str(out / "metrics.json"), "report": str(out / "report.json"), "live_dir": str(out / "live"),
             "grid": str(out / "grid.png"), **extra}
    path.write_text(yaml.safe_dump({"train_teacher": block}))


def test_stage_end_to_end(manifest, tmp_path):
    params = tmp_path / "params.yaml"
    write_params(params, manifest, tmp_path)
    metrics = load_stage("train-teacher").run(params, ["train_teacher.augment.coarse_dropout=false"])
    model, meta = load_checkpoint(tmp_path / "teacher.pt")
    assert meta["input_size"] == 32 and meta["config"]["augment"]["coarse_dropout"] is False
    assert meta["manifest_sha256"] == file_sha256(manifest)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["test"]["SYNTEST"]["b1"]["mae"] == pytest.approx(metrics["test"]["SYNTEST"]["b1"]["mae"])
    assert "SYNTEST" in saved["test_trivial"] and saved["val"]["trivial_mae"] > 0
    # the DVC metrics: the headline of the report and the training's wall time, nothing else
    headline = json.loads((tmp_path / "metrics.json").read_text())
    assert headline == {"SYNTEST": round(saved["test"]["SYNTEST"]["b1"]["mae"], 4), "val": round(saved["val"]["mae"], 4),
                        "img/s": round(saved["timing"]["images_per_s"], 4),
                        "wall_s": round(saved["timing"]["train_s"], 1)}
    assert headline["wall_s"] > 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert (tmp_path / "live" / "metrics.json").exists()


def test_ddp_two_processes_match_one(manifest, tmp_path):
    runs = {}
    for procs in (1, 2):
        out = tmp_path / f"p{procs}"
        params = tmp_path / f"params{procs}.yaml"
        write_params(params, manifest, out, epochs=1, val_fraction=0.3, device="cpu")
        if procs == 1:
            runs[procs] = train(params)["val"]["mae"]
            continue
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "pipeline", "run-stage", "train-teacher", "--params", str(params)]
        done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = json.loads((out / "report.json").read_text())["val"]["mae"]   # metrics.json: the headline
    # same global batches and augmentations; only BatchNorm statistics differ (per-process batch)
    assert abs(runs[1] - runs[2]) < 0.15 * runs[1], runs


def train(params, overrides=()):
    """The train-teacher job on the train_teacher block of ``params``."""
    return train_teacher(stage_config("train_teacher", TrainTeacherConfig, params, overrides))


def _stage_run(tmp_path, manifest, *overrides, **extra):
    """train-teacher as its stage runs it; returns (stdout, checkpoint state dict)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"
    write_params(params, manifest, tmp_path / "out", val_fraction=0.25, **extra)
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train(params, overrides)
    model, _ = load_checkpoint(tmp_path / "out" / "teacher.pt")
    return out.getvalue(), model.state_dict()


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.values(), b.values()))


@pytest.fixture
def own_manifest(tmp_path):
    return make_manifest(tmp_path / "data", n_train=16, n_test=4)


def test_finished_run_is_a_no_op_that_rewrites_every_output(own_manifest, tmp_path):
    _, first = _stage_run(tmp_path, own_manifest, epochs=1)
    out = tmp_path / "out"
    timing = json.loads((out / "report.json").read_text())["timing"]
    headline = (out / "metrics.json").read_bytes()
    live_files = sorted(p.relative_to(out / "live") for p in (out / "live").rglob("*") if p.is_file())
    live_bytes = {p: (out / "live" / p).read_bytes() for p in live_files}
    # what `dvc repro` does before rerunning the stage after a change to `workers`
    import shutil
    shutil.rmtree(out / "live")
    (out / "teacher.pt").unlink()
    (out / "metrics.json").unlink()
    (out / "report.json").unlink()
    log, again = _stage_run(tmp_path, own_manifest, "train_teacher.workers=1", epochs=1)
    assert "finished" in log and "nothing to train" in log
    assert _same(first, again)
    assert json.loads((out / "report.json").read_text())["timing"] == timing  # not zeros
    assert (out / "metrics.json").read_bytes() == headline   # same wall time: `dvc status` stays clean
    assert {p: (out / "live" / p).read_bytes() for p in live_files} == live_bytes
    assert "plots/metrics/train/loss.tsv" in {str(p) for p in live_files}


def test_changed_boxes_or_images_train_afresh(own_manifest, tmp_path):
    from pipeline.boxes import write_boxes
    samples = load_samples(own_manifest)
    boxes = tmp_path / "boxes.csv"
    write_boxes(boxes, {s.key: (s.box, "landmarks") for s in samples})
    _, first = _stage_run(tmp_path, own_manifest, epochs=1, boxes=str(boxes))
    # the relabel stage puts other boxes on the same manifest
    write_boxes(boxes, {s.key: ((2.0, 2.0, 46.0, 46.0), "haar") for s in samples})
    log, moved = _stage_run(tmp_path, own_manifest, epochs=1, boxes=str(boxes))
    assert "training afresh" in log and "inputs" in log and not _same(first, moved)
    # an image replaced under an unchanged manifest
    trained_on = holdout_split(samples, 0.25, "key")[0][0]
    cv2.imwrite(trained_on.image, np.zeros((48, 48, 3), np.uint8))
    log, replaced = _stage_run(tmp_path, own_manifest, epochs=1, boxes=str(boxes))
    assert "training afresh" in log and not _same(moved, replaced)


def test_fewer_epochs_train_afresh_more_epochs_continue_exactly(own_manifest, tmp_path):
    _, two = _stage_run(tmp_path / "a", own_manifest, epochs=2)
    _, one = _stage_run(tmp_path / "b", own_manifest, epochs=1)
    log, lowered = _stage_run(tmp_path / "a", own_manifest, "train_teacher.epochs=1", epochs=2)
    assert "trained 2 epochs, 1 asked; training afresh" in log and _same(lowered, one)
    log, raised = _stage_run(tmp_path / "b", own_manifest, "train_teacher.epochs=2", epochs=1)
    assert "resuming" in log and "epoch 1" in log and _same(raised, two)


def test_truncated_training_state_is_a_clear_error(own_manifest, tmp_path):
    from test_cli import run_cli
    _stage_run(tmp_path, own_manifest, epochs=1)
    last = tmp_path / "out" / "state" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    (tmp_path / "out" / "teacher.pt").unlink()
    result = run_cli("run-stage", "train-teacher", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 1, result.output
    assert f"{last}: unreadable training state" in result.output and "delete it" in result.output
    (tmp_path / "out" / "grid.png").unlink()
    result = run_cli("run-stage", "train-teacher", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 1 and not (tmp_path / "out" / "teacher.pt").exists()
    assert not (tmp_path / "out" / "grid.png").exists()  # nothing is written before the check


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_does_not_decode_in_training_is_named_without_a_traceback(own_manifest, tmp_path, workers):
    """prepare decodes every image, but a file can change after it: the error, raised in a
    DataLoader worker or in the main process, names the file and shows no traceback."""
    from test_cli import run_cli
    params = tmp_path / "params.yaml"
    write_params(params, own_manifest, tmp_path / "out", val_fraction=0.25, epochs=1, workers=workers)
    emptied = load_samples(own_manifest)[3].image
    Path(emptied).write_bytes(b"")
    result = run_cli("run-stage", "train-teacher", "--params", str(params))
    assert result.exit_code == 1, result.output
    assert f"error: {emptied}: empty file (0 bytes)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "teacher.pt").exists()
