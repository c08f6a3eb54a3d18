"""Several teachers (issue 15): ODKD's schedule and noise filter, KD-Loss, and the student stage
reading two teacher caches."""
import numpy as np
import pytest
import torch

from pipeline import bins
from pipeline.augment import View
from pipeline.distill import DistillDataset, open_student_cache
from pipeline.files import file_sha256
from pipeline.losses import assistive_distillation_loss, distillation_loss, kd_loss
from pipeline.model import read_checkpoint
from pipeline.project import load_stage
from pipeline.teachers import MethodConfig, filter_noise, senior_weight
from pipeline.views import draw_views
from test_distill import SIZE, STUDENT_AUGMENT, VIEWS, make_kd_project

torch.set_num_threads(1)


# --- ODKD: the ordered schedule and the noise filter ------------------------------------

def test_senior_weight_switches_or_ramps_at_the_handover():
    odkd = MethodConfig(primary="base", handover=0.5)
    assert [senior_weight(odkd, e, 8) for e in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    ramp = MethodConfig(primary="base", order="ramp", handover=0.5)
    assert [senior_weight(ramp, e, 8) for e in range(8)] == [0, 0.25, 0.5, 0.75, 1, 1, 1, 1]
    assert [senior_weight(MethodConfig(primary="base", handover=0.0), e, 4) for e in range(4)] == [1] * 4
    assert senior_weight(MethodConfig(), 0, 8) == 1.0          # one teacher: always the teacher


def test_filter_noise_zeroes_bins_below_the_floor_of_the_peak_and_renormalises():
    row = np.array([[0.05, 0.5, 0.3, 0.15]])
    np.testing.assert_allclose(filter_noise(row, 0.4), [[0, 0.625, 0.375, 0]])   # floor 0.2 keeps 0.5, 0.3
    np.testing.assert_allclose(filter_noise(row, 0.0), row)
    flat = np.full((3, 198), 1 / 198)
    np.testing.assert_allclose(filter_noise(flat, 0.99), flat)   # the peak itself always stays


# --- KD-Loss: every region of the piecewise loss against a hand computation ----------------

def test_kd_loss_matches_a_hand_computation_in_every_region():
    truth = torch.zeros(1, 3)
    student = torch.tensor([[0.5, -2.0, 0.1]])     # d = 0.5, 2.0, 0.1
    tolerant = torch.tensor([[1.0, 1.0, -1.0]])    # e = r_Tol = 1, 1, 1
    tough = torch.tensor([[-2.0, 0.5, 1.0]])       # r_Tou = 2, 0.5, 1
    total, parts = kd_loss(student, truth, tough, tolerant)
    # main m: d <= e: 3d = 1.5; d > e: d^2 - e^2 + 3e = 4 - 1 + 3 = 6; 3 * 0.1 = 0.3
    assert parts["loss_main"] == pytest.approx((1.5 + 6.0 + 0.3) / 3)
    # tough: beta r <= d <= r: -0.45 (2 - 0.5) = -0.675; d > r: 1.9 (2 - 0.5) = 2.85; d < 0.15 r: 0
    assert parts["loss_tough"] == pytest.approx((-0.675 + 2.85 + 0.0) / 3)
    # tolerant: -0.4 (1 - 0.5) = -0.2; 1.8 (2 - 1) = 1.8; d = 0.1 < 0.15: 0
    assert parts["loss_tolerant"] == pytest.approx((-0.2 + 1.8 + 0.0) / 3)
    assert float(total) == pytest.approx(2.0 * 2.6 + 0.725 + 1.6 / 3)


def test_kd_loss_is_continuous_where_the_regions_meet_and_rewards_beating_a_teacher():
    truth, tough, tolerant = torch.zeros(1, 1), torch.full((1, 1), 2.0), torch.full((1, 1), 1.0)
    at = lambda d: float(kd_loss(torch.full((1, 1), d), truth, tough, tolerant)[0])   # noqa: E731
    assert at(1.0 - 1e-6) == pytest.approx(at(1.0 + 1e-6), abs=1e-4)   # d = e: 3e on both sides
    assert at(2.0 - 1e-6) == pytest.approx(at(2.0 + 1e-6), abs=1e-4)   # d = r_Tou: both terms 0
    student = torch.full((1, 1), 0.5, requires_grad=True)             # between beta r and r of both
    kd_loss(student, truth, tough, tolerant)[0].backward()
    # d(total)/dd = 2 * 3 (main) + 0.45 + 0.4 (alpha_inner < 0: a smaller error is rewarded)
    assert float(student.grad) == pytest.approx(6.0 + 0.45 + 0.4)


def test_assistive_loss_reads_the_students_expected_angles_in_units_of_99_degrees():
    logits = torch.randn(2, 3, 198)
    batch = {"pose": torch.tensor([[10.0, -20.0, 5.0], [0.0, 30.0, -40.0]]),
             "teacher_angles": torch.tensor([[[12.0, -15.0, 4.0], [9.0, -22.0, 6.0]],
                                             [[3.0, 25.0, -35.0], [-2.0, 33.0, -41.0]]])}
    method = MethodConfig(loss="assistive")
    got, _ = assistive_distillation_loss({"b1": logits}, batch, method)
    student = bins.decode_logits(logits, 1) / 99
    want, _ = kd_loss(student, batch["pose"] / 99, batch["teacher_angles"][:, 0] / 99,
                      batch["teacher_angles"][:, 1] / 99)
    assert float(got) == pytest.approx(float(want))
    teacher = torch.softmax(torch.randn(2, 3, 198), dim=-1)       # eq. 7 beside it: the distribution too
    both, parts = assistive_distillation_loss({"b1": logits}, {**batch, "teacher": teacher},
                                              MethodConfig(loss="assistive", eq7_weight=0.5), w_cls=0.2)
    eq7, _ = distillation_loss({"b1": logits}, {**batch, "teacher": teacher}, w_cls=0.2)
    assert float(both) == pytest.approx(float(want) + 0.5 * float(eq7), rel=1e-6) and "loss_kl" in parts


# --- the dataset and the stage with two teacher caches -----------------------------------

def _two_teachers(tmp_path):
    samples = make_kd_project(tmp_path)
    train = [x for x in samples if x.split == "train"]
    sha = file_sha256(tmp_path / "manifest.csv")
    views = draw_views(VIEWS, [x.key for x in train])
    caches = {name: open_student_cache(tmp_path / f"{file}.h5", train, sha, teacher=name, views=views)
              for name, file in (("ensemble", "cache"), ("base", "base"))}
    return train, caches, views


def test_odkd_targets_are_the_filtered_primary_then_the_senior_of_the_replayed_view(tmp_path):
    train, caches, views = _two_teachers(tmp_path)
    key = train[0].key
    switch = DistillDataset(train, caches, views, SIZE, method=MethodConfig(primary="base", handover=0.5, floor=0.1),
                            epochs=2)
    first, second = switch[(0, 0)], switch[(1, 0)]
    base, ensemble = (filter_noise(caches[t].probs(key, 1, first["view"]), 0.1) for t in ("base", "ensemble"))
    np.testing.assert_allclose(first["teacher"].numpy(), base, atol=1e-6)
    np.testing.assert_allclose(second["teacher"].numpy(), filter_noise(caches["ensemble"].probs(key, 1, second["view"]),
                                                                       0.1), atol=1e-6)
    assert not np.allclose(base, ensemble, atol=1e-3)      # the two teachers do differ
    ramp = DistillDataset(train, caches, views, SIZE, method=MethodConfig(primary="base", order="ramp", handover=0.5,
                                                                          floor=0.1), epochs=4)
    item = ramp[(1, 0)]
    base, ensemble = (filter_noise(caches[t].probs(key, 1, item["view"]), 0.1) for t in ("base", "ensemble"))
    np.testing.assert_allclose(item["teacher"].numpy(), 0.5 * base + 0.5 * ensemble, atol=1e-6)
    with pytest.raises(ValueError, match="method reads teacher 'base'"):
        DistillDataset(train, {"ensemble": caches["ensemble"]}, views, SIZE, method=MethodConfig(primary="base"))


def test_assistive_items_carry_both_teachers_angles_on_the_replayed_view(tmp_path):
    train, caches, views = _two_teachers(tmp_path)
    ds = DistillDataset(train, caches, views, SIZE, STUDENT_AUGMENT, seed=1, method=MethodConfig(loss="assistive"))
    flips = 0
    for index, sample in enumerate(train):
        item = ds[(0, index)]
        assert "teacher" not in item and item["teacher_angles"].shape == (2, 3)
        for row, name in enumerate(("base", "ensemble")):    # tough, tolerant: each one's answer on that view
            np.testing.assert_allclose(item["teacher_angles"][row].numpy(),
                                       caches[name].expected(sample.key, item["view"]), atol=1e-4)
        flips += View.from_row(views[index, item["view"]]).flip
    assert 0 < flips < len(train)
    with_eq7 = DistillDataset(train, caches, views, SIZE, STUDENT_AUGMENT, seed=1,
                              method=MethodConfig(loss="assistive", eq7_weight=1.0))[(0, 0)]
    want = caches["ensemble"].probs(train[0].key, 1, with_eq7["view"])        # the tolerant teacher's
    np.testing.assert_allclose(with_eq7["teacher"].numpy(), want / want.sum(-1, keepdims=True), atol=1e-6)


def test_the_control_reads_no_teacher_and_replays_the_same_views(tmp_path):
    train, caches, views = _two_teachers(tmp_path)
    control = DistillDataset(train, {}, views, SIZE, STUDENT_AUGMENT, seed=1, method=MethodConfig(loss="ce"))
    taught = DistillDataset(train, caches, views, SIZE, STUDENT_AUGMENT, seed=1)
    assert MethodConfig(loss="ce").control and MethodConfig(loss="ce").teachers() == ()
    for item in ((e, i) for e in range(3) for i in range(len(train))):
        a, b = control[item], taught[item]
        assert "teacher" not in a and "teacher_angles" not in a and a["view"] == b["view"]
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
        np.testing.assert_array_equal(a["pose"].numpy(), b["pose"].numpy())


def test_two_teacher_runs_record_both_caches_and_leave_the_kd_run_alone(tmp_path):
    make_kd_project(tmp_path)
    params = tmp_path / "params.yaml"
    stage = load_stage("distill")
    stage.run(params, [], item="resnet18-kd-seed0")
    kd_before = (tmp_path / "students" / "resnet18-kd-seed0.pt").read_bytes()
    methods = ["distill.methods=[kd, odkd, kdloss]"]
    reports = stage.run(params, methods, item="resnet18")         # kd: finished and current, not retrained
    assert [r["method"] for r in reports] == ["kd", "odkd", "kdloss"]
    assert (tmp_path / "students" / "resnet18-kd-seed0.pt").read_bytes() == kd_before
    for method in ("odkd", "kdloss"):
        meta = read_checkpoint(tmp_path / "students" / f"resnet18-{method}-seed0.pt")["meta"]
        assert set(meta["teacher_caches"]) == {"base", "ensemble"}
        assert meta["teacher_caches"]["base"]["sha256"] == file_sha256(tmp_path / "base.h5")
        assert meta["config"]["method"] == method and meta["config"]["method_config"]["primary"] == (
            "base" if method == "odkd" else None)
    kdloss = reports[2]
    assert kdloss["method_config"]["loss"] == "assistive" and np.isfinite(kdloss["val"]["mae"])
