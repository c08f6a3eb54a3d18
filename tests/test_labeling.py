import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import yaml

from pipeline import bins
from pipeline.boxes import write_boxes
from pipeline.cache import Expect, open_cache
from pipeline.config import stage_config
from pipeline.data import holdout_split
from pipeline import ensemble as ensemble_module
from pipeline.ensemble import EnsembleError, choose_precision, ensemble_distributions, window_probabilities
from pipeline.image import crop_box, load_rgb, to_tensor
from pipeline.labeling import EnsembleLabelsConfig, LabelingError, label_training_set
from pipeline.files import file_sha256
from pipeline.model import build_model
from pipeline.project import load_stage
from fixtures_project import noise_samples, write_project

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def make_project(tmp_path, n_train=6, n_test=2, s=2, p=4):
    """Images, manifest, a random ResNet18 teacher checkpoint at 16 px and a params file."""
    samples = noise_samples(tmp_path, n_train, n_test, pose_limit=60)
    _, model = write_project(tmp_path, samples, SIZE)
    block = {"s": s, "p": p, "manifest": str(tmp_path / "manifest.csv"),
             "checkpoint": str(tmp_path / "teacher.pt"), "out": str(tmp_path / "cache.h5"),
             "batch_size": 2, "chunk_size": 2, "num_workers": 0, "device": "cpu",
             "precision": "fp32", "heads": [1, 2, 3, 4], "metrics": str(tmp_path / "labels-metrics.json")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble_labels": block}))
    return samples, model


def label(params, overrides=()):
    """The ensemble-labels job on the ensemble_labels block of ``params``."""
    return label_training_set(stage_config("ensemble_labels", EnsembleLabelsConfig, params, overrides))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_stage_labels_training_samples(tmp_path):
    samples, model = make_project(tmp_path)
    load_stage("ensemble-labels").run(tmp_path / "params.yaml", [])
    train = [s for s in samples if s.split == "train"]
    cache = open_cache(tmp_path / "cache.h5",
                       Expect(manifest_sha256=file_sha256(tmp_path / "manifest.csv"),
                              keys=[s.key for s in train], bin_sizes=(1, 2, 3, 4), s=2, p=4))
    assert cache.keys == [s.key for s in train]  # training samples only
    assert cache.meta.teacher_sha256 == file_sha256(tmp_path / "teacher.pt")
    z = torch.stack([to_tensor(crop_box(load_rgb(s.image), s.box, SIZE, SIZE, 4))
                     for s in train[:2]])
    direct = ensemble_distributions(model, z, 2, 4, (1, 3))
    np.testing.assert_allclose(cache.probs(train[1].key, 1), direct["b1"][1].numpy(), atol=1e-3)
    np.testing.assert_allclose(cache.probs(train[0].key, 3), direct["b3"][0].numpy(), atol=1e-3)


def test_every_view_is_labelled_on_the_crop_the_student_cuts(tmp_path):
    from pipeline.augment import View
    from pipeline.views import ViewsConfig, draw_views
    samples, model = make_project(tmp_path, n_train=4, n_test=0)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["views"] = {"count": 3, "seed": 5, "rotate": 20.0, "box_shift": 0.1, "box_scale": 0.1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load_stage("ensemble-labels").run(tmp_path / "params.yaml", [])
    train = sorted((s for s in samples if s.split == "train"), key=lambda s: s.key)
    cache = open_cache(tmp_path / "cache.h5")
    views = ViewsConfig(**params["views"])
    assert cache.meta.views == 3 and cache.meta.views_config == views.describe()
    np.testing.assert_array_equal(cache.views(), draw_views(views, cache.keys))
    assert len({View.from_row(r).flip for r in cache.views()[:, 1:].reshape(-1, 6)}) == 2   # both mirrored and not
    for s in train:
        image = load_rgb(s.image)
        z = torch.stack([to_tensor(View.from_row(r).crop(image, s.box, SIZE, SIZE, pad=4))
                         for r in cache.views(cache.row(s.key))])
        direct = ensemble_distributions(model, z, 2, 4, (1, 2))
        for r in range(3):   # view r is the teacher's ensemble on exactly that view's receptive field
            np.testing.assert_allclose(cache.probs(s.key, 1, r), direct["b1"][r].numpy(), atol=1e-5)
            np.testing.assert_allclose(cache.probs(s.key, 2, r), direct["b2"][r].numpy(), atol=1e-5)
        plain = ensemble_distributions(model, to_tensor(crop_box(image, s.box, SIZE, SIZE, 4))[None], 2, 4, (1,))
        np.testing.assert_allclose(cache.probs(s.key, 1, 0), plain["b1"][0].numpy(), atol=1e-5)   # view 0: the box
        assert np.abs(cache.probs(s.key, 1, 1) - cache.probs(s.key, 1, 0)).max() > 2e-4   # another crop, another answer


def test_replayed_photometric_views_put_every_window_through_the_students_chain(tmp_path):
    from pipeline.augment import AugmentConfig, View
    from pipeline.data import PoseDataset
    from pipeline.distill import DistillDataset
    from pipeline.ensemble import mean_softmax
    from pipeline.views import REPLAYED_CHAIN, ViewsConfig, draw_views, replayed_chain
    samples, model = make_project(tmp_path, n_train=3, n_test=0, s=2, p=2)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["views"] = {"count": 3, "rotate": 10.0, "photometric": "replay"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    label(tmp_path / "params.yaml", ["ensemble_labels.heads=[1]"])
    cache = open_cache(tmp_path / "cache.h5")
    train = sorted((s for s in samples if s.split == "train"), key=lambda s: s.key)
    views = draw_views(ViewsConfig(**params["views"]), [s.key for s in train])
    assert (views[:, 0, -1] == -1).all() and (views[:, 1:, -1] >= 0).all()     # view 0 stays clean
    chain = replayed_chain(ViewsConfig(**params["views"]))
    student = DistillDataset(train, {"ensemble": cache}, views, SIZE, AugmentConfig(flip=False, rotate=0.0),
                             replay_photometric=True)
    for i, s in enumerate(train):
        image = load_rgb(s.image)
        for r in range(3):
            view, seed = View.from_row(views[i, r]), int(views[i, r, -1])
            z = view.crop(image, s.box, SIZE, SIZE, pad=2)
            cut = [z[2 * a:2 * a + SIZE, 2 * b:2 * b + SIZE] for a in range(3) for b in range(3)]
            if seed >= 0:                        # the same steps for every window of the view
                cut = [chain.set_random_seed(seed) or chain(image=np.ascontiguousarray(c))["image"] for c in cut]
            want = mean_softmax(model, torch.stack([to_tensor(c) for c in cut])[None], (1,))["b1"][0]
            np.testing.assert_allclose(cache.probs(s.key, 1, r), want.numpy(), atol=1e-5)   # float16 rounding
            # the student: the same view through the same steps (its crop is Z's centre window up to
            # the warp's fixed-point rounding, which moves a few pixels of these noise images)
            own = view.crop(image, s.box, SIZE, SIZE)
            assert (own != z[2:2 + SIZE, 2:2 + SIZE]).mean() < 0.1
            if seed >= 0:
                own = chain.set_random_seed(seed) or chain(image=own)["image"]
            epoch = next(e for e in range(9) if student[(e, i)]["view"] == r)
            np.testing.assert_allclose(student[(epoch, i)]["image"].numpy(), to_tensor(own).numpy(), atol=1e-6)
    assert not np.allclose(to_tensor(cut[4]).numpy(), to_tensor(z[2:2 + SIZE, 2:2 + SIZE]).numpy())   # it did change
    from pipeline.student import DistillConfig
    with pytest.raises(ValueError, match="leave every photometric group on"):
        DistillConfig(manifest=Path("m.csv"), boxes=None, teachers={"ensemble": Path("c.h5")}, teacher=None,
                      checkpoint_dir=Path("s"),
                      views=ViewsConfig(photometric="replay"),
                      augment=AugmentConfig(flip=False, rotate=0.0, coarse_dropout=False))
    assert REPLAYED_CHAIN.coarse_dropout and REPLAYED_CHAIN.color


def test_base_labels_stage_writes_the_single_crop_teacher_in_its_own_file(tmp_path):
    from pipeline.data import PoseDataset
    from pipeline.metrics import predict_dataset
    samples, model = make_project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["base_labels"] = {**params["ensemble_labels"], "out": str(tmp_path / "base.h5"), "heads": [1],
                             "metrics": str(tmp_path / "base-metrics.json")}
    for key in ("s", "p"):
        del params["base_labels"][key]                       # the block's defaults: s = 1, p = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load_stage("ensemble-labels").run(tmp_path / "params.yaml", [])
    ensemble_bytes = (tmp_path / "cache.h5").read_bytes()
    load_stage("base-labels").run(tmp_path / "params.yaml", [])
    assert (tmp_path / "cache.h5").read_bytes() == ensemble_bytes     # one teacher never rewrites the other
    base = open_cache(tmp_path / "base.h5", Expect(teacher="base", s=1, p=0))
    assert base.meta.A == 1 and base.meta.role.startswith("weaker teacher")
    assert open_cache(tmp_path / "cache.h5", Expect(teacher="ensemble")).meta.role.startswith("stronger teacher")
    train = sorted((s for s in samples if s.split == "train"), key=lambda s: s.key)
    preds, _ = predict_dataset(model, PoseDataset(train, SIZE))        # the Base row's single crop
    np.testing.assert_allclose(np.array([base.expected(s.key) for s in train]), preds["b1"], atol=0.05)
    assert set(json.loads((tmp_path / "base-metrics.json").read_text())) == {"img/s", "wall_s"}


def test_default_cache_is_lean_compressed_and_its_metrics_are_kept_when_current(tmp_path):
    samples, _ = make_project(tmp_path, n_train=4, n_test=0)
    params = tmp_path / "params.yaml"
    label(params, ["ensemble_labels.heads=[1]"])
    with h5py.File(tmp_path / "cache.h5", "r") as f:
        assert list(f["heads"]) == ["b1"] and list(f.attrs["bin_sizes"]) == [1]
        prob = f["heads/b1/prob"]
        assert prob.compression == "gzip" and prob.shuffle and prob.fletcher32
    metrics = json.loads((tmp_path / "labels-metrics.json").read_text())
    assert set(metrics) == {"img/s", "wall_s"} and metrics["img/s"] > 0 and metrics["wall_s"] >= 0
    first = (tmp_path / "labels-metrics.json").read_bytes()
    label(params, ["ensemble_labels.heads=[1]"])   # complete and current: neither file changes
    assert (tmp_path / "labels-metrics.json").read_bytes() == first
    with pytest.raises(LabelingError, match="teacher.pt has no head b5|heads"):
        label(params, ["ensemble_labels.heads=[5]"])


def test_precision_auto_takes_bf16_only_where_native_and_checked(tmp_path, monkeypatch):
    samples, model = make_project(tmp_path, n_train=2, n_test=0)
    z = torch.stack([to_tensor(crop_box(load_rgb(s.image), s.box, SIZE, SIZE, 4)) for s in samples[:1]])
    assert choose_precision(model, z, 2, 4, (1,), "fp32")[0] == "fp32"
    monkeypatch.setattr(ensemble_module, "native_bf16", lambda device: False)
    assert choose_precision(model, z, 2, 4, (1,), "auto") == ("fp32", "fp32 (cpu has no hardware bf16)")
    monkeypatch.setattr(ensemble_module, "native_bf16", lambda device: True)
    diff = ensemble_module.autocast_difference(model, z, 2, 4, (1,))
    assert choose_precision(model, z, 2, 4, (1,), "auto", tol=diff * 2)[0] == "bf16"
    assert choose_precision(model, z, 2, 4, (1,), "auto", tol=diff / 2)[0] == "fp32"   # fails the check
    with pytest.raises(EnsembleError, match="bf16 autocast changes ensemble probabilities"):
        choose_precision(model, z, 2, 4, (1,), "bf16", tol=diff / 2)
    # the job records what it used, and a cache labelled in another precision is not current
    label(tmp_path / "params.yaml", ["ensemble_labels.precision=bf16"])
    assert open_cache(tmp_path / "cache.h5").meta.precision == "bf16"
    fp32 = label(tmp_path / "params.yaml", ["ensemble_labels.precision=fp32"])
    assert open_cache(fp32).meta.precision == "fp32"


def test_stage_uses_relabel_boxes_and_refuses_bad_p(tmp_path):
    samples, _ = make_project(tmp_path, n_train=2, n_test=0)
    write_boxes(tmp_path / "boxes.csv", {s.key: ((4.0, 5.0, 30.0, 33.0), "haar") for s in samples})
    label(tmp_path / "params.yaml", [f"ensemble_labels.boxes={tmp_path / 'boxes.csv'}"])
    np.testing.assert_array_equal(open_cache(tmp_path / "cache.h5").box(samples[0].key),
                                  [4.0, 5.0, 30.0, 33.0])
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError, match="multiple of the stride"):
        label(tmp_path / "params.yaml", ["ensemble_labels.p=3"])
    with pytest.raises(ConfigError, match="ensemble_labels: device must be auto, cpu or cuda, got 'cuda:1'"):
        label(tmp_path / "params.yaml", ["ensemble_labels.device=cuda:1"])


def test_missing_image_is_named_before_labelling(tmp_path):
    from pipeline.manifest import ManifestError
    samples, _ = make_project(tmp_path, n_train=3, n_test=0)
    Path(samples[2].image).unlink()
    with pytest.raises(ManifestError, match=r"SYN/002: image file .*2\.png not found"):
        label(tmp_path / "params.yaml")
    assert not (tmp_path / "cache.h5").exists()


@pytest.mark.parametrize("content, problem", [(b"not a png", "not a readable image"), (b"", "empty file")])
def test_unreadable_image_is_a_clear_error_not_a_worker_crash(tmp_path, content, problem):
    samples, _ = make_project(tmp_path, n_train=3, n_test=0)
    Path(samples[1].image).write_bytes(content)
    with pytest.raises(LabelingError, match=rf"SYN/001: .*1\.png: {problem}"):
        label(tmp_path / "params.yaml", ["ensemble_labels.num_workers=1"])
    assert not (tmp_path / "cache.h5").exists()


SLOW_LABELER = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from pipeline import labeling
    from pipeline.config import stage_config
    load = labeling.load_checkpoint

    def slow_load(path, map_location="cpu"):
        model, meta = load(path, map_location)
        forward = model.forward
        def slow_forward(x):
            time.sleep(0.4)
            return forward(x)
        model.forward = slow_forward
        return model, meta
    labeling.load_checkpoint = slow_load
    labeling.label_training_set(stage_config("ensemble_labels", labeling.EnsembleLabelsConfig, sys.argv[1]))
""")


def test_killed_job_resumes_to_identical_bytes(tmp_path):
    make_project(tmp_path, n_train=8, n_test=0)
    label(tmp_path / "params.yaml", ["ensemble_labels.out=" + str(tmp_path / "ref.h5")])
    script = tmp_path / "slow.py"
    script.write_text(SLOW_LABELER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "params.yaml")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "cache.h5.parts"
    deadline = time.time() + 60
    while len(list(parts.glob("part-*.npz"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in parts.glob("part-*.npz"))
    assert 2 <= len(done) < 4 and not (tmp_path / "cache.h5").exists()
    with pytest.raises(Exception, match="interrupted job"):
        open_cache(tmp_path / "cache.h5")
    label(tmp_path / "params.yaml")
    assert _sha(tmp_path / "cache.h5") == _sha(tmp_path / "ref.h5")


def test_two_gloo_ranks_merge_to_the_single_process_bytes(tmp_path):
    make_project(tmp_path, n_train=7, n_test=0)
    label(tmp_path / "params.yaml", ["ensemble_labels.out=" + str(tmp_path / "one.h5")])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2", "-m", "pipeline", "run-stage", "ensemble-labels",
                             "--params", str(tmp_path / "params.yaml"),
                             "--set", "ensemble_labels.out=" + str(tmp_path / "two.h5")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _sha(tmp_path / "two.h5") == _sha(tmp_path / "one.h5")


def test_grid_stage_on_validation_and_test_with_shift_profile(tmp_path):
    samples = noise_samples(tmp_path, 6, 3, pose_limit=60)
    _, model = write_project(tmp_path, samples, SIZE, config={"val_fraction": 0.5, "val_group": "key"})
    block = {"strides": [1, 2], "paddings": [0, 2, 3], "manifest": str(tmp_path / "manifest.csv"),
             "checkpoint": str(tmp_path / "teacher.pt"), "out_dir": str(tmp_path / "grid"),
             "metrics": str(tmp_path / "grid-metrics.json"), "batch_size": 2, "num_workers": 0, "device": "cpu"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble_grid": block}))
    load_stage("ensemble-grid").run(tmp_path / "params.yaml", [])
    grid = json.loads((tmp_path / "grid" / "grid.json").read_text())
    rows = {(r["split"], r["s"], r["p"]): r for r in grid["rows"]}
    assert sorted({r["split"] for r in grid["rows"]}) == ["SYN", "validation"]
    # (2, 3) is no ensemble: s does not divide p
    assert sorted((s, p) for split, s, p in rows if split == "SYN") == [(1, 0), (1, 2), (1, 3), (2, 0), (2, 2)]
    assert rows[("SYN", 1, 3)]["A"] == 49 and rows[("SYN", 2, 2)]["A"] == 9
    _, validation = holdout_split([s for s in samples if s.split == "train"], 0.5, "key")
    for split, subset in [("SYN", [s for s in samples if s.split == "test"]), ("validation", validation)]:
        truth = np.array([s.pose for s in subset])
        for s, p in [(1, 0), (2, 2), (1, 3)]:
            z = torch.stack([to_tensor(crop_box(load_rgb(t.image), t.box, SIZE, SIZE, p)) for t in subset])
            pred = bins.expected_angle(ensemble_distributions(model, z, s, p, (1,))["b1"].double(), 1)
            mae = np.abs(pred.numpy() - truth).mean(0)
            np.testing.assert_allclose([rows[(split, s, p)][a] for a in ("pitch", "yaw", "roll")], mae, atol=1e-3)
        # the single window at shift 0 is the plain network; shifts go up to p_max
        profile = grid["shift"][split]
        assert [r["shift"] for r in profile] == [0, 1, 2, 3] and profile[0]["windows"] == 1
        assert profile[0]["mae"] == pytest.approx(rows[(split, 1, 0)]["mean"], abs=1e-3)
        assert profile[3]["windows"] == 7 ** 2 - 5 ** 2
    best = min((r for r in grid["rows"] if r["split"] == "validation"), key=lambda r: (r["mean"], r["A"]))
    assert grid["chosen_on_validation"] == {k: best[k] for k in ("s", "p", "A", "mean")}
    table = (tmp_path / "grid" / "grid.md").read_text()
    assert "## validation" in table and "## SYN" in table and "| p | s | A | pitch | yaw | roll | mean |" in table
    for png in ("grid.png", "shift.png"):
        image = cv2.imread(str(tmp_path / "grid" / png))
        assert image is not None and image.shape[0] > 100


def test_window_probabilities_average_to_the_ensemble():
    torch.manual_seed(0)
    model = build_model("resnet18", (1, 2), input_size=SIZE).eval()
    z = torch.randn(3, 3, SIZE + 8, SIZE + 8)
    each = window_probabilities(model, z, 2, 4, "b2", max_windows=30)
    assert each.shape == (3, 5, 5, 3, 99)
    np.testing.assert_allclose(each.mean(dim=(1, 2)), ensemble_distributions(model, z, 2, 4, (2,))["b2"], atol=1e-6)
    # window [i, j] is the crop shifted by (2 j - 4, 2 i - 4): here i = 1, j = 3
    with torch.no_grad():
        one = torch.softmax(model(z[:, :, 2:2 + SIZE, 6:6 + SIZE])["b2"], dim=-1)
    np.testing.assert_allclose(each[:, 1, 3], one, atol=1e-6)


def test_inspect_cache_prints_and_draws(tmp_path):
    from typer.testing import CliRunner
    from pipeline.cli import app
    samples, _ = make_project(tmp_path, n_train=2, n_test=0)
    label(tmp_path / "params.yaml")
    key = samples[0].key
    result = CliRunner().invoke(app, ["inspect-cache", str(tmp_path / "cache.h5"), "--key", key,
                                      "--png", str(tmp_path / "d.png"),
                                      "--manifest", str(tmp_path / "manifest.csv")])
    assert result.exit_code == 0, result.output
    assert "teacher 'ensemble' (rvc labels), schema 4, 2 samples" in result.output and "s=2 p=4 A=25" in result.output
    assert "1 views per image" in result.output and "view 0: plain crop" in result.output
    assert f"truth {samples[0].pose[1]:7.2f}" in result.output
    drawn = cv2.imread(str(tmp_path / "d.png"))
    assert drawn is not None and "crop the teacher saw" not in result.output
    listed = CliRunner().invoke(app, ["inspect-cache", str(tmp_path / "cache.h5"), "--keys", key[:-1] + "*"])
    assert listed.exit_code == 0 and f"    {key}" in listed.output
    assert f"1 keys match '{key[:-1]}*'" in listed.output or "2 keys match" in listed.output
    none = CliRunner().invoke(app, ["inspect-cache", str(tmp_path / "cache.h5"), "--keys", "NOPE/*"])
    assert "0 keys match 'NOPE/*'" in none.output
    bad = CliRunner().invoke(app, ["inspect-cache", str(tmp_path / "nope.h5")])
    assert bad.exit_code == 1 and "not found" in bad.output


def test_interrupted_job_with_new_boxes_relabels_every_row(tmp_path, monkeypatch):
    samples, _ = make_project(tmp_path, n_train=6, n_test=0)
    boxes, params = tmp_path / "boxes.csv", tmp_path / "params.yaml"
    write_boxes(boxes, {s.key: (s.box, "landmarks") for s in samples})
    with_boxes = [f"ensemble_labels.boxes={boxes}"]

    class Killed(Exception):
        pass

    def killed(self):
        raise Killed
    with monkeypatch.context() as m:  # every chunk labelled, killed before the merge
        m.setattr("pipeline.cache.CacheBuilder.finish", killed)
        with pytest.raises(Killed):
            label(params, with_boxes)
    assert len(list((tmp_path / "cache.h5.parts").glob("part-*.npz"))) == 3
    write_boxes(boxes, {s.key: ((4.0, 5.0, 30.0, 33.0), "haar") for s in samples})
    label(params, with_boxes)
    label(params, with_boxes + [f"ensemble_labels.out={tmp_path / 'fresh.h5'}"])
    assert _sha(tmp_path / "cache.h5") == _sha(tmp_path / "fresh.h5")
    assert (open_cache(tmp_path / "cache.h5").box(samples[0].key) == [4.0, 5.0, 30.0, 33.0]).all()


def test_damaged_cache_stops_distill_and_inspect_verify(tmp_path):
    from test_cache import _flip_bytes_in_chunk
    from test_cli import run_cli
    samples, _ = make_project(tmp_path, n_train=4, n_test=0)
    label(tmp_path / "params.yaml")
    cache = tmp_path / "cache.h5"
    assert run_cli("inspect-cache", str(cache), "--verify").exit_code == 0
    _flip_bytes_in_chunk(cache, "heads/b1/prob")
    result = run_cli("inspect-cache", str(cache), "--verify")
    assert result.exit_code == 1 and f"{cache}: /heads/b1/prob is damaged" in result.output
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["distill"] = {"manifest": str(tmp_path / "manifest.csv"), "teachers": {"ensemble": str(cache)},
                         "teacher": str(tmp_path / "teacher.pt"), "input_size": SIZE, "epochs": 1,
                         "batch_size": 2, "workers": 0, "device": "cpu", "val_fraction": 0.0,
                         "checkpoint_dir": str(tmp_path / "students"), "state_dir": str(tmp_path / "state"),
                         "metrics_dir": str(tmp_path / "metrics"), "live_dir": str(tmp_path / "live"),
                         "report_dir": str(tmp_path / "reports")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_cli("run-stage", "distill", "resnet18", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 1 and f"{cache}: /heads/b1/prob is damaged" in result.output
    assert not (tmp_path / "students").exists() and not (tmp_path / "state").exists()
    # labelled afresh, then an image replaced under the same manifest: the cache is stale
    cache.unlink()
    label(tmp_path / "params.yaml")
    cv2.imwrite(samples[1].image, np.zeros((40, 36, 3), np.uint8))
    result = run_cli("run-stage", "distill", "resnet18", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 1 and f"{cache}: samples_sha256 mismatch" in result.output


def test_a_complete_current_cache_is_kept_unless_forced_or_stale(tmp_path, capsys):
    samples, _ = make_project(tmp_path, n_train=4, n_test=0)
    params, cache = tmp_path / "params.yaml", tmp_path / "cache.h5"
    label(params, [])
    first = (cache.stat().st_mtime_ns, _sha(cache))
    capsys.readouterr()
    label(params, [])  # by hand, nothing changed: what DVC would do
    assert "complete and current" in capsys.readouterr().out
    assert (cache.stat().st_mtime_ns, _sha(cache)) == first
    label(params, ["ensemble_labels.force=true"])
    assert "complete and current" not in capsys.readouterr().out
    assert cache.stat().st_mtime_ns != first[0] and _sha(cache) == first[1]  # relabelled, same bytes
    write_boxes(tmp_path / "boxes.csv", {s.key: ((4.0, 5.0, 30.0, 33.0), "haar") for s in samples})
    label(params, [f"ensemble_labels.boxes={tmp_path / 'boxes.csv'}"])
    assert "complete and current" not in capsys.readouterr().out and _sha(cache) != first[1]


def test_inspect_draws_each_view_the_teacher_saw(tmp_path, monkeypatch):
    from pipeline import inspect_cache as module
    from pipeline.augment import View
    samples, _ = make_project(tmp_path, n_train=2, n_test=0)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["views"] = {"count": 3, "rotate": 20.0, "box_shift": 0.1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    label(tmp_path / "params.yaml")
    drawn = {}
    monkeypatch.setattr(module, "plot_distributions", lambda png, key, rows, b: drawn.update(rows=rows))
    sample = sorted(samples, key=lambda s: s.key)[1]
    lines = module.inspect_cache(tmp_path / "cache.h5", sample.key, tmp_path / "x.png", tmp_path / "manifest.csv")
    cache = open_cache(tmp_path / "cache.h5")
    assert len(drawn["rows"]) == 3 and sum(line.startswith("  view ") for line in lines) == 3
    for r, row in enumerate(drawn["rows"]):
        view = View.from_row(cache.views(cache.row(sample.key))[r])
        np.testing.assert_array_equal(row["crop"], view.crop(load_rgb(sample.image), sample.box, SIZE, SIZE))
        np.testing.assert_allclose(row["truth"], view.pose(sample.pose))      # the label of that view
        np.testing.assert_array_equal(row["probs"], cache.probs(sample.key, 1, r))
    np.testing.assert_array_equal(drawn["rows"][0]["crop"], crop_box(load_rgb(sample.image), sample.box, SIZE, SIZE))
