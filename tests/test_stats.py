import json
import tracemalloc

import numpy as np
import pytest

from pipeline.stats import compare, per_image_error, verdict


def noisy(n=400, seed=0, scale=3.0):
    return np.random.default_rng(seed).gamma(2.0, scale, size=n)


def test_per_image_error_is_the_mean_absolute_error_over_angles():
    pred = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    truth = np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 0.0]])
    np.testing.assert_allclose(per_image_error(pred, truth), [2.0, 2.0])
    with pytest.raises(ValueError, match=r"two \(N, 3\) arrays"):
        per_image_error(pred[:, :2], truth[:, :2])


def test_a_clearly_better_row_holds_and_its_interval_contains_the_truth():
    base = noisy()
    better = base * 0.9                                   # 10 % better on every image
    c = compare(better[None], base[None], "KD", "Base")
    assert c.verdict == "holds" and c.high < 0
    assert c.relative == pytest.approx(-10.0)
    assert c.low <= -10.0 <= c.high and c.high - c.low < 1e-6   # a constant ratio: no spread at all
    worse = compare(base[None] * 1.2 + 0.1, base[None])
    assert worse.verdict == "fails" and worse.low > 0


def test_identical_rows_are_within_noise():
    base = noisy()
    c = compare(base[None], base[None])
    assert c.difference == 0 and c.relative == 0 and c.low <= 0 <= c.high and c.verdict == "within noise"
    other = compare(noisy(seed=1)[None], base[None])       # two unrelated rows of the same level
    assert other.verdict == "within noise" and other.low < 0 < other.high


def test_pairing_cancels_per_image_difficulty():
    rng = np.random.default_rng(3)
    difficulty = rng.gamma(2.0, 5.0, size=300)            # images differ a lot
    base = difficulty + rng.normal(0, 0.3, 300)
    row = difficulty - 0.5 + rng.normal(0, 0.3, 300)      # small, consistent gain
    paired = compare(row[None], base[None])
    # unpaired: resample each row's images independently
    draws = np.random.default_rng(0).integers(0, 300, size=(2, 2000, 300))
    unpaired = 100 * (row[draws[0]].mean(1) - base[draws[1]].mean(1)) / base[draws[1]].mean(1)
    lo, hi = np.percentile(unpaired, [2.5, 97.5])
    assert paired.verdict == "holds" and lo < 0 < hi     # only the paired test sees the gain
    assert (paired.high - paired.low) < 0.3 * (hi - lo)


def test_a_constant_gain_per_image_gives_a_narrow_interval():
    base = noisy(seed=6) + 2.0
    c = compare(base[None] - 0.5, base[None])            # exactly 0.5 degrees better on every image
    assert c.difference == pytest.approx(-0.5) and c.verdict == "holds"
    assert c.low <= c.relative <= c.high
    assert c.high - c.low < 0.2 * abs(c.relative)        # only the baseline's level varies


def test_disagreeing_seeds_widen_the_interval():
    base = noisy()
    same = np.stack([base * 0.95] * 3)
    spread = np.stack([base * 0.85, base * 0.95, base * 1.05])    # same mean, seeds disagree
    tight, wide = compare(same, base[None]), compare(spread, base[None])
    assert tight.relative == pytest.approx(wide.relative)
    assert (wide.high - wide.low) > 5 * (tight.high - tight.low)
    assert wide.verdict == "within noise" and tight.verdict == "holds"
    assert wide.per_seed_relative == pytest.approx((-15.0, -5.0, 5.0)) and wide.seeds_row == 3


def test_deterministic_for_a_seed():
    base, row = noisy(seed=4), noisy(seed=5)
    assert compare(row[None], base[None], seed=7) == compare(row[None], base[None], seed=7)
    a, b = compare(row[None], base[None], seed=7), compare(row[None], base[None], seed=8)
    assert (a.low, a.high) != (b.low, b.high)            # the seed does drive the draws ...
    width = a.high - a.low
    assert abs(a.low - b.low) < 0.15 * width and abs(a.high - b.high) < 0.15 * width   # ... not the answer
    d = b.as_dict()
    assert set(d) >= {"row", "baseline", "relative", "low", "high", "verdict", "per_seed_relative"}
    assert isinstance(d["per_seed_relative"], list)
    assert json.loads(json.dumps(d)) == d and d["low"] == round(b.low, 4)


def test_interval_covers_the_true_change_about_as_often_as_its_level():
    rng = np.random.default_rng(11)
    hits, trials = 0, 150
    for t in range(trials):                               # population: the row is 10 % better on average
        difficulty = rng.gamma(2.0, 3.0, size=150)
        base = difficulty * rng.gamma(20.0, 1 / 20.0, size=150)
        row = 0.9 * difficulty * rng.gamma(20.0, 1 / 20.0, size=150)
        c = compare(row[None], base[None], resamples=400, seed=t)
        hits += c.low <= -10.0 <= c.high
    assert 0.85 <= hits / trials <= 0.995


def test_large_inputs_stay_within_memory():
    rng = np.random.default_rng(2)
    base = rng.gamma(2.0, 3.0, size=(1, 2000))
    students = base * rng.uniform(0.8, 1.0, size=(5, 1))
    tracemalloc.start()
    try:
        c = compare(students, base, resamples=2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6 and c.seeds_row == 5 and c.verdict in {"holds", "within noise"}


def test_bad_inputs_are_named():
    base = noisy(10)
    with pytest.raises(ValueError, match="KD: expected per-image errors of shape"):
        compare(base, base[None], "KD")
    with pytest.raises(ValueError, match="same images"):
        compare(base[None], base[None, :5])
    with pytest.raises(ValueError, match="finite"):
        compare(np.full((1, 10), np.nan), base[None])
    with pytest.raises(ValueError, match="Base: errors must be finite and non-negative"):
        compare(base[None], -base[None], baseline="Base")
    with pytest.raises(ValueError, match="level"):
        compare(base[None], base[None], level=1.5)
    with pytest.raises(ValueError, match="at least 2 test images"):
        compare(base[None, :1], base[None, :1])
    with pytest.raises(ValueError, match="positive"):
        compare(base[None], np.zeros((1, 10)))
    assert verdict(-2, -1) == "holds" and verdict(1, 2) == "fails" and verdict(-1, 1) == "within noise"
