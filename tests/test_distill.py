import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.data import samples_sha256

from pipeline import bins
from pipeline.augment import AugmentConfig, View
from pipeline.cache import CacheError, CacheMeta, open_cache, write_cache
from pipeline.config import ConfigError, stage_config
from pipeline.distill import DistillDataset, open_student_cache
from pipeline.image import load_rgb, to_tensor
from pipeline.losses import distillation_loss
from pipeline.manifest import Sample, write_manifest
from pipeline.files import file_sha256
from pipeline.model import build_model, read_checkpoint
from pipeline.pose import flip_pose, rotate_pose_in_plane
from pipeline.project import load_stage
from pipeline.student import DistillConfig, Run, distill
from pipeline.views import ViewsConfig, draw_views
from fixtures_project import noise_samples, write_project

torch.set_num_threads(1)
SIZE = 16
KD_RUN = Run("resnet18", "kd", 0)
NO_COLOUR = dict(color=False, channel=False, median_blur=False, shadow_noise=False, coarse_dropout=False)
STUDENT_AUGMENT = AugmentConfig(flip=False, rotate=0.0, **NO_COLOUR)
VIEWS = ViewsConfig(count=3, rotate=20.0, box_shift=0.05, box_scale=0.05)   # what the tiny caches hold


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_kd_project(tmp_path, n_train=8, n_test=4, s=1, p=1):
    """Images, manifest, prepare report, a random teacher checkpoint, a cache written with
    write_cache (bell-shaped distributions around the labels) and a params file."""
    samples = noise_samples(tmp_path, n_train, n_test, pose_limit=40, test_dataset="SYNTEST")
    manifest, _ = write_project(tmp_path, samples, SIZE)
    (tmp_path / "prepare-report.json").write_text(json.dumps({"protocol": 1}))
    train = sorted((x for x in samples if x.split == "train"), key=lambda x: x.key)
    write_tiny_cache(tmp_path / "cache.h5", train, file_sha256(manifest), file_sha256(tmp_path / "teacher.pt"), s, p)
    write_tiny_cache(tmp_path / "base.h5", train, file_sha256(manifest), file_sha256(tmp_path / "teacher.pt"), 1, 0,
                     teacher="base", width=9.0, offset=3.0)
    params = {
        "views": dataclasses.asdict(VIEWS),
        "ensemble_labels": {"s": s, "p": p, "manifest": str(manifest), "checkpoint": str(tmp_path / "teacher.pt"),
                            "out": str(tmp_path / "cache.h5"), "metrics": str(tmp_path / "metrics" / "labels.json")},
        "distill": {"students": ["resnet18"], "methods": ["kd"], "manifest": str(manifest),
                    "teachers": {"ensemble": str(tmp_path / "cache.h5"), "base": str(tmp_path / "base.h5")},
                    "method": {"kd": {"teacher": "ensemble"},
                               "odkd": {"primary": "base", "teacher": "ensemble", "handover": 0.5, "floor": 0.1},
                               "kdloss": {"loss": "assistive", "tough": "base", "tolerant": "ensemble"},
                               "ce": {"loss": "ce"}},
                    "teacher": str(tmp_path / "teacher.pt"), "input_size": SIZE, "val_fraction": 0.25,
                    "val_group": "key", "epochs": 1, "batch_size": 4, "workers": 0, "device": "cpu",
                    "checkpoint_dir": str(tmp_path / "students"), "state_dir": str(tmp_path / "students-state"),
                    "metrics_dir": str(tmp_path / "metrics" / "distill"), "live_dir": str(tmp_path / "live"),
                    "report_dir": str(tmp_path / "outputs" / "distill")},
        "evaluate": {"manifest": str(manifest), "prepare_report": str(tmp_path / "prepare-report.json"),
                     "teacher": str(tmp_path / "teacher.pt"), "batch_size": 8, "device": "cpu",
                     "results": str(tmp_path / "outputs" / "evaluate.json"),
                     "metrics": str(tmp_path / "metrics" / "evaluate.json"),
                     "metrics_dir": str(tmp_path / "metrics" / "evaluate"),
                     "predictions": str(tmp_path / "predictions.csv")},
        "report": {"results": [str(tmp_path / "outputs" / "evaluate.json")],
                   "metrics": str(tmp_path / "metrics" / "report.json"),
                   "predictions": str(tmp_path / "predictions.csv"), "manifest": str(manifest),
                   "images_per_set": 2, "cell": 64, "out_md": str(tmp_path / "reports" / "results.md"),
                   "out_png": str(tmp_path / "reports" / "figure7.png")},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return samples


def write_tiny_cache(path, train, manifest_sha, teacher_sha, s=1, p=1, teacher="ensemble", width=4.0, offset=0.0,
                     views=VIEWS):
    """For every view of ``views``: bell-shaped distributions of ``width`` degrees around the
    view's label + ``offset`` (a teacher that follows each view)."""
    centres = bins.centres(1)
    rows = draw_views(views, [x.key for x in train])
    poses = np.array([[View.from_row(r).pose(x.pose) for r in view_rows] for x, view_rows in zip(train, rows)])
    probs = _softmax(-0.5 * ((centres - (poses + offset)[..., None]) / width) ** 2)      # (N, R, 3, q)
    meta = CacheMeta(teacher_sha256=teacher_sha, manifest_sha256=manifest_sha, s=s, p=p, teacher=teacher,
                     input_size=(SIZE, SIZE), bin_sizes=(1,), samples_sha256=samples_sha256(train),
                     views=views.count, views_config=views.describe())
    write_cache(path, meta, [x.key for x in train], np.array([x.box for x in train]), rows,
                bins.expected_angle(probs, 1), {"b1": probs})


# --- eq. 7 -----------------------------------------------------------------------------

def test_distillation_loss_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 198))
    teacher = _softmax(rng.normal(size=(2, 3, 198)) * 2)
    teacher[0, 0, :5] = 0.0  # zero teacher probabilities contribute nothing to KL
    teacher /= teacher.sum(-1, keepdims=True)
    pose = np.array([[10.2, -40.7, 3.0], [-98.9, 0.4, 55.5]])
    q = _softmax(logits)
    classes = np.floor(pose + 99).astype(int)                       # bin 1: [-99, -98) is class 0
    ce = -np.log(np.take_along_axis(q, classes[..., None], -1)[..., 0]).sum(1).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(teacher > 0, teacher * np.log(teacher / q), 0.0).sum((1, 2)).mean()
    want = (0.05 * ce + kl) / 2
    loss, parts = distillation_loss({"b1": torch.tensor(logits)},
                                    {"pose": torch.tensor(pose), "teacher": torch.tensor(teacher)})
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert parts["loss_ce"] == pytest.approx(ce, rel=1e-6) and parts["loss_kl"] == pytest.approx(kl, rel=1e-6)
    loss2, _ = distillation_loss({"b1": torch.tensor(logits)},
                                 {"pose": torch.tensor(pose), "teacher": torch.tensor(teacher)}, w_cls=1.0)
    assert float(loss2) == pytest.approx((ce + kl) / 2, rel=1e-6)


# --- replayed views ---------------------------------------------------------------------

def _open(tmp_path, train, name="cache.h5", views=VIEWS, **kw):
    return open_student_cache(tmp_path / name, train, file_sha256(tmp_path / "manifest.csv"),
                              views=draw_views(views, [x.key for x in train]), **kw)


def test_dataset_replays_each_cached_view_with_its_label_and_target(tmp_path):
    samples = make_kd_project(tmp_path)
    train = [x for x in samples if x.split == "train"]
    cache = _open(tmp_path, train)
    views = draw_views(VIEWS, [x.key for x in train])
    ds = DistillDataset(train, {"ensemble": cache}, views, SIZE, STUDENT_AUGMENT, seed=3)
    seen = {index: [] for index in range(len(train))}
    for epoch in range(2 * VIEWS.count):
        for index, sample in enumerate(train):
            item = ds[(epoch, index)]
            v = item["view"]
            seen[index].append(v)
            view = View.from_row(views[index, v])
            crop = view.crop(load_rgb(sample.image), sample.box, SIZE, SIZE)       # the labelling job's warp
            np.testing.assert_allclose(item["image"].numpy(), to_tensor(crop).numpy(), atol=1e-6)
            np.testing.assert_allclose(item["pose"].numpy(), view.pose(sample.pose), atol=1e-4)
            want = cache.probs(sample.key, 1, v)
            np.testing.assert_allclose(item["teacher"].numpy(), want / want.sum(-1, keepdims=True), atol=1e-6)
            # the tiny teacher follows each view: its target peaks at the view's label, not the plain one's
            assert np.abs(bins.expected_angle(item["teacher"].double().numpy(), 1) - view.pose(sample.pose)).max() < 1
    for index, order in seen.items():      # every R epochs each view comes exactly once
        assert sorted(order[:VIEWS.count]) == sorted(order[VIEWS.count:]) == list(range(VIEWS.count))
    assert len({tuple(order) for order in seen.values()}) > 1     # in an order of its own per sample
    assert any(View.from_row(views[i, v]).flip for i, order in seen.items() for v in order)


def test_student_cache_refuses_other_views(tmp_path):
    samples = make_kd_project(tmp_path)
    train = [x for x in samples if x.split == "train"]
    for other in (dataclasses.replace(VIEWS, seed=1), dataclasses.replace(VIEWS, count=2)):
        with pytest.raises(CacheError, match=r"labelled on other views than the student replays .*re-run its "
                                             r"labelling stage"):
            _open(tmp_path, train, views=other)


def test_dataset_pickles_without_cache_arrays(tmp_path):
    samples = make_kd_project(tmp_path)
    train = [x for x in samples if x.split == "train"]
    cache = _open(tmp_path, train)
    ds = DistillDataset(train, {"ensemble": cache}, draw_views(VIEWS, [x.key for x in train]), SIZE, STUDENT_AUGMENT)
    ds[0]  # opens the HDF5 handle in this process
    assert cache._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.teachers["ensemble"]._file is None

    def arrays(obj, seen):
        if id(obj) in seen:
            return []
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            return [obj]
        if isinstance(obj, dict):
            return [a for v in obj.values() for a in arrays(v, seen)]
        if isinstance(obj, (list, tuple)):
            return [a for v in obj for a in arrays(v, seen)]
        if hasattr(obj, "__dict__"):
            return arrays(vars(obj), seen)
        return []
    assert not [a for a in arrays(clone, set()) if a.shape[:1] == (len(train),) and a is not clone.views]
    np.testing.assert_allclose(clone[1]["teacher"].numpy(), ds[1]["teacher"].numpy())


def test_student_cache_refuses_other_boxes(tmp_path):
    samples = make_kd_project(tmp_path)
    train = [x for x in samples if x.split == "train"]
    moved = [Sample(**{**vars(x), "box": (5.0, 8.0, 26.0, 32.0)}) if i == 2 else x for i, x in enumerate(train)]
    with pytest.raises(CacheError, match=r"boxes mismatch for 1 samples.*SYN/002"):
        open_student_cache(tmp_path / "cache.h5", moved, file_sha256(tmp_path / "manifest.csv"))


# --- the stage -------------------------------------------------------------------------

def test_stage_trains_a_one_head_student_with_cache_provenance(tmp_path):
    make_kd_project(tmp_path)
    metrics = load_stage("distill").run(tmp_path / "params.yaml", [], item="resnet18")
    data = read_checkpoint(tmp_path / "students" / "resnet18-kd-seed0.pt")
    meta = data["meta"]
    assert meta["bin_sizes"] == [1] and meta["regression"] is False and meta["backbone"] == "resnet18"
    assert not any(k.startswith("reg.") for k in data["model"])
    assert list(meta["teacher_caches"]) == ["ensemble"]     # kd reads one teacher
    cache = meta["teacher_caches"]["ensemble"]
    assert cache["sha256"] == file_sha256(tmp_path / "cache.h5") and cache["teacher"] == "ensemble"
    assert cache["teacher_sha256"] == file_sha256(tmp_path / "teacher.pt") and cache["label_kind"] == "rvc"
    assert cache["A"] == 9 and meta["inputs"]["teacher_caches_sha256"] == {"ensemble": cache["sha256"]}
    written = json.loads((tmp_path / "outputs" / "distill" / "resnet18-kd-seed0.json").read_text())
    assert written["student"] == "resnet18" and written["seed"] == 0 and written["method"] == "kd"
    assert set(written["test"]["SYNTEST"]["b1"]) == {"pitch", "yaw", "roll", "mae"}
    headline = json.loads((tmp_path / "metrics" / "distill" / "resnet18-kd-seed0.json").read_text())
    assert set(headline) == {"SYNTEST", "val", "img/s", "wall_s"}
    assert headline["wall_s"] == round(written["timing"]["train_s"], 1)
    assert headline["SYNTEST"] == round(written["test"]["SYNTEST"]["b1"]["mae"], 4)
    assert metrics["checkpoint_sha256"] == file_sha256(tmp_path / "students" / "resnet18-kd-seed0.pt")


def test_stage_names_a_stale_or_foreign_cache(tmp_path):
    samples = make_kd_project(tmp_path)
    params = tmp_path / "params.yaml"
    write_manifest(tmp_path / "manifest.csv", samples[:-1])  # the manifest moved on, the cache did not
    with pytest.raises(CacheError, match="manifest_sha256 mismatch"):
        distill(stage_config("distill", DistillConfig, params), KD_RUN)
    write_manifest(tmp_path / "manifest.csv", samples)
    torch.save({"model": build_model("resnet18", input_size=SIZE).state_dict(),
                "meta": read_checkpoint(tmp_path / "teacher.pt")["meta"]}, tmp_path / "teacher2.pt")
    with pytest.raises(CacheError, match="teacher_sha256 mismatch"):
        distill(stage_config("distill", DistillConfig, params, [f"distill.teacher={tmp_path / 'teacher2.pt'}"]),
                KD_RUN)
    open_cache(tmp_path / "cache.h5")  # the cache itself is intact
    with pytest.raises(Exception, match="not in distill.students"):
        distill(stage_config("distill", DistillConfig, params), Run("resnet34", "kd", 0))
    swapped = ["distill.teachers={ensemble: %s, base: %s}" % (tmp_path / "base.h5", tmp_path / "cache.h5")]
    with pytest.raises(CacheError, match="teacher mismatch: cache has 'base', expected 'ensemble'"):
        distill(stage_config("distill", DistillConfig, params, swapped), KD_RUN)


# --- the rotation measurement ----------------------------------------------------------

def test_shift_rule_moves_whole_and_fractional_bins_and_follows_rotate_then_flip():
    from pipeline.benchmarks.kd_rotation import rule_target, shift_distribution
    c = bins.centres(1)
    probs = _softmax(-0.5 * ((c[None] - np.array([[-10.0], [0.0], [20.0]])) / 3.0) ** 2)
    whole = shift_distribution(probs, [3, -2, 0])
    np.testing.assert_allclose(whole[0, 3:], probs[0, :-3], atol=1e-12)
    np.testing.assert_allclose(whole[1, :-2], probs[1, 2:], atol=1e-12)
    np.testing.assert_allclose(whole[2], probs[2], atol=1e-12)
    half = shift_distribution(probs, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(half[0, 1:], (probs[0, 1:] + probs[0, :-1]) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="out of"):
        shift_distribution(probs, [250, 0, 0])
    expected = np.array([12.0, -30.0, 8.0])
    probs = _softmax(-0.5 * ((c[None] - expected[:, None]) / 3.0) ** 2)
    np.testing.assert_allclose(rule_target(probs, expected, True, 0.0, "shift"), bins.flip_distribution(probs),
                               atol=1e-7)
    np.testing.assert_allclose(rule_target(probs, expected, False, 10.0, "none"), probs, atol=1e-7)
    shifted = rule_target(probs, expected, True, 10.0, "shift")
    want = flip_pose(rotate_pose_in_plane(expected, 10.0))       # the Augmenter's label order
    np.testing.assert_allclose(bins.expected_angle(shifted, 1), want, atol=0.05)


def test_kd_rotation_measurement_reproduces_the_cache_at_zero(tmp_path):
    from pipeline.benchmarks.kd_rotation import measure
    from pipeline.labeling import EnsembleLabelsConfig, label_training_set
    from pipeline.model import load_checkpoint

    samples = make_kd_project(tmp_path, s=1, p=2)
    label_training_set(stage_config("ensemble_labels", EnsembleLabelsConfig, tmp_path / "params.yaml",
                                    ["ensemble_labels.num_workers=0", "ensemble_labels.device=cpu"]))
    train = [x for x in samples if x.split == "train"]
    cache = open_student_cache(tmp_path / "cache.h5", train, file_sha256(tmp_path / "manifest.csv"))
    teacher, _ = load_checkpoint(tmp_path / "teacher.pt")
    rows = {r["view"]: r for r in measure(teacher, cache, train[:4], [0, 30], batch_size=3)}
    assert list(rows) == ["rot ±0", "rot ±30", "flip", "stored view"]
    assert rows["rot ±0"]["kl_shift"] < 1e-4 and rows["rot ±0"]["deg_none"] < 0.05   # only float16 rounding
    assert rows["stored view"]["kl_none"] < 1e-4 and rows["stored view"]["deg_none"] < 0.05   # the cache's own view
    assert rows["rot ±30"]["kl_none"] > 10 * rows["rot ±0"]["kl_none"]
    assert rows["rot ±30"]["deg_shift"] != rows["rot ±30"]["deg_none"]


def test_bench_distill_runs_all_three_paths(tmp_path):
    from pipeline.benchmarks.distill import report as bench_report, run as bench_run

    make_kd_project(tmp_path, n_train=12)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    (tmp_path / "metrics" / "labels.json").write_text(json.dumps({"images": 12, "wall_s": 30.0}))
    result = bench_run(tmp_path / "params.yaml", steps=2, online_steps=1, workers=0, repeats=2)
    full = result["full_training"]     # 1 epoch of the 12 training images; the labelling job's 30 s
    assert full["images"] == 12 and full["labelling_s"] == 30.0
    assert full["cache_s"] == pytest.approx(12 / result["images_per_s"]["a_cache"])
    assert "per full training (12 images" in bench_report(result)
    assert result["images"] == {"a_cache": 8, "b_hard_labels": 8, "c_online_teacher": 4} and result["A"] == 9
    # ratios are reported, not asserted: speed targets live in `pipeline bench`, not in unit tests
    assert all(rate > 0 for rate in result["images_per_s"].values())
    lo, hi = result["a_over_b_range"]
    assert lo <= result["a_over_b"] <= hi and "medians of 2 interleaved runs" in bench_report(result)


def test_runs_are_named_by_backbone_method_and_seed_and_checked_against_params():
    from pipeline.student import parse_run
    from pipeline.teachers import MethodConfig
    teachers = {"ensemble": Path("c.h5"), "base": Path("b.h5")}
    method = {"kd": MethodConfig(), "odkd": MethodConfig(primary="base")}
    cfg = DistillConfig(manifest=Path("m.csv"), boxes=None, teachers=teachers, teacher=None, method=method,
                        methods=("kd", "odkd"), checkpoint_dir=Path("s"),
                        students=("resnet18", "efficientnet_lite0"), seeds=(0, 3))
    assert [r.name for r in cfg.runs()][:4] == ["resnet18-kd-seed0", "resnet18-kd-seed3", "resnet18-odkd-seed0",
                                                "resnet18-odkd-seed3"] and len(cfg.runs()) == 8
    assert cfg.checkpoint(Run("efficientnet_lite0", "odkd", 3)) == Path("s/efficientnet_lite0-odkd-seed3.pt")
    assert parse_run("efficientnet_lite0-odkd-seed3", cfg) == [Run("efficientnet_lite0", "odkd", 3)]
    assert parse_run("resnet18-kd", cfg) == [Run("resnet18", "kd", 0), Run("resnet18", "kd", 3)]
    assert len(parse_run("resnet18", cfg)) == 4
    with pytest.raises(ConfigError, match="seed 1 is not in distill.seeds"):
        parse_run("resnet18-kd-seed1", cfg)
    with pytest.raises(ConfigError, match="'resnet34' is not in distill.students"):
        parse_run("resnet34-kd-seed0", cfg)
    with pytest.raises(ConfigError, match="method 'kdloss' is not in distill.methods"):
        parse_run("resnet18-kdloss-seed0", cfg)
    with pytest.raises(ConfigError, match="bad run 'resnet18-seed0'"):
        parse_run("resnet18-seed0", cfg)
    with pytest.raises(ConfigError, match="bad run 'resnet18-kd-seedx'"):
        parse_run("resnet18-kd-seedx", cfg)
    common = dict(manifest=Path("m.csv"), boxes=None, teacher=None, checkpoint_dir=Path("s"))
    with pytest.raises(ValueError, match="seed: 2 is not one of seeds"):
        DistillConfig(**common, teachers=teachers, seeds=(0, 3), seed=2)
    with pytest.raises(ValueError, match="methods: 'odkd' is not defined in distill.method"):
        DistillConfig(**common, teachers=teachers, methods=("kd", "odkd"))
    with pytest.raises(ValueError, match="method.odkd: reads teacher 'base', which is not in paths.teachers"):
        DistillConfig(**common, teachers={"ensemble": Path("c.h5")}, method=method, methods=("kd",))
    with pytest.raises(ValueError, match="method: bad name 'k-d'"):
        DistillConfig(**common, teachers=teachers, method={"k-d": MethodConfig()}, methods=("k-d",))


def test_two_seeds_train_two_different_students(tmp_path):
    make_kd_project(tmp_path)
    params = tmp_path / "params.yaml"
    results = load_stage("distill").run(params, ["distill.seeds=[0, 1]"], item="resnet18-kd")
    assert [m["seed"] for m in results] == [0, 1]
    first, second = (read_checkpoint(tmp_path / "students" / f"resnet18-kd-seed{k}.pt") for k in (0, 1))
    assert first["meta"]["config"]["seed"] == 0 and second["meta"]["config"]["seed"] == 1
    assert not torch.equal(first["model"]["rvc.b1.weight"], second["model"]["rvc.b1.weight"])
