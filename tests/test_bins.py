import numpy as np
import pytest
import torch

from pipeline import bins as B


def test_bin_counts_and_b1_centres():
    assert [B.num_bins(b) for b in B.BIN_SIZES] == [198, 99, 66, 50]
    np.testing.assert_allclose(B.centres(1), np.linspace(-98.5, 98.5, 198))
    for b in B.BIN_SIZES:
        c = B.centres(b)
        np.testing.assert_allclose(c, -c[::-1])  # symmetric: a flip is a reversal
        np.testing.assert_allclose(np.diff(c), b)
    with pytest.raises(ValueError, match="bin size"):
        B.num_bins(5)


@pytest.mark.parametrize("b", B.BIN_SIZES)
def test_angle_to_class_lands_in_the_bin_whose_centre_is_nearest(b):
    angles = np.random.default_rng(b).uniform(-99, 99, size=1000)
    cls = B.angle_to_class(angles, b)
    assert np.all(np.abs(B.centres(b)[cls] - angles) <= b / 2 + 1e-9)
    torch_cls = B.angle_to_class(torch.tensor(angles), b)
    assert torch_cls.tolist() == cls.tolist()


def test_out_of_range_angles_clamp_to_end_bins():
    assert B.angle_to_class(np.array([-150.0, 150.0]), 1).tolist() == [0, 197]


def test_expected_angle_eq2():
    probs = np.zeros(198)
    probs[[10, 20]] = [0.25, 0.75]
    c = B.centres(1)
    assert B.expected_angle(probs, 1) == pytest.approx(0.25 * c[10] + 0.75 * c[20])
    logits = torch.log(torch.tensor(probs) + 1e-30).unsqueeze(0)
    assert B.decode_logits(logits, 1).item() == pytest.approx(0.25 * c[10] + 0.75 * c[20], abs=1e-4)


def test_regression_decoding_eq3():
    out = torch.tensor([0.0, 0.5, -10.0])
    np.testing.assert_allclose(B.decode_regression(out).numpy(), 99 * np.tanh(out.numpy()), rtol=1e-6)


@pytest.mark.parametrize("b", B.BIN_SIZES)
def test_flip_distribution_negates_yaw_and_roll_expectations(b):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(B.num_bins(b)), size=(4, 3))
    flipped = B.flip_distribution(probs)
    e, ef = B.expected_angle(probs, b), B.expected_angle(flipped, b)
    np.testing.assert_allclose(ef[:, 0], e[:, 0])
    np.testing.assert_allclose(ef[:, 1:], -e[:, 1:])
    flipped_t = B.flip_distribution(torch.tensor(probs))
    np.testing.assert_allclose(flipped_t.numpy(), flipped)
    assert not np.shares_memory(flipped, probs)
