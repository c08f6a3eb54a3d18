import numpy as np
import pytest
import torch

from pipeline import bins
from pipeline.losses import regression_mae, rvc_cross_entropy, teacher_loss


def _np_cross_entropy(logits, cls):
    z = logits - logits.max()
    return -(z[cls] - np.log(np.exp(z).sum()))


def test_eq4_against_a_hand_computation():
    rng = np.random.default_rng(3)
    pose = np.array([[10.2, -45.0, 98.9], [-0.3, 0.0, -99.0]])
    raw = rng.normal(size=(2, 3))
    logits = {b: rng.normal(size=(2, 3, bins.num_bins(b))) for b in (1, 2, 3, 4)}

    # by hand: bin of an angle for bin size b is floor((angle + q*b/2) / b)
    mae = np.abs(99 * np.tanh(raw) - pose).mean()
    ce_sum = 0.0
    for b, lg in logits.items():
        q = bins.num_bins(b)
        per_sample = []
        for i in range(2):
            per_sample.append(sum(_np_cross_entropy(lg[i, a], int(np.floor((pose[i, a] + q * b / 2) / b)))
                                  for a in range(3)))
        ce_sum += np.mean(per_sample)
    expected = (mae + ce_sum) / 5

    outputs = {"reg": torch.tensor(raw)} | {bins.head_name(b): torch.tensor(v) for b, v in logits.items()}
    total, parts = teacher_loss(outputs, {"pose": torch.tensor(pose)})
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["loss_reg"] == pytest.approx(mae, rel=1e-5)
    assert set(parts) == {"loss_reg", "loss_b1", "loss_b2", "loss_b3", "loss_b4"}


def test_bins_at_known_angles():
    # 10.2 deg with bin size 1 is class 109 (bin [10, 11)); 98.9 is the last bin 197
    logits = torch.full((1, 3, 198), -30.0)
    logits[0, 0, 109] = logits[0, 1, 54] = logits[0, 2, 197] = 30.0
    pose = torch.tensor([[10.2, -45.0, 98.9]])
    assert rvc_cross_entropy(logits, pose, 1).item() < 1e-6
    wrong = torch.tensor([[11.2, -45.0, 98.9]])
    assert rvc_cross_entropy(logits, wrong, 1).item() > 50


def test_regression_mae_is_zero_at_the_label_and_has_gradient():
    pose = torch.tensor([[30.0, -60.0, 5.0]])
    raw = torch.atanh(pose / 99).requires_grad_()
    loss = regression_mae(raw, pose)
    assert loss.item() < 1e-4
    (regression_mae(raw, pose + 1)).backward()
    assert torch.all(raw.grad != 0)


def test_student_without_regression_averages_only_its_heads():
    logits = torch.zeros(4, 3, 198)
    total, parts = teacher_loss({"b1": logits}, {"pose": torch.zeros(4, 3)})
    assert total.item() == pytest.approx(3 * np.log(198), rel=1e-6)
    assert list(parts) == ["loss_b1"]
