"""The views a teacher labels and a student replays (pipeline/views.py)."""
import dataclasses

import numpy as np
import pytest

from pipeline.augment import View
from pipeline.config import ConfigError
from pipeline.views import VIEW_COLUMNS, ViewsConfig, draw_views, replayed_view

KEYS = [f"300W_LP/HELEN/HELEN_{i:06d}" for i in range(40)]
CFG = ViewsConfig(count=6, seed=3, rotate=15.0, box_shift=0.08, box_scale=0.08)


def test_view_zero_is_the_plain_crop_and_the_others_stay_within_the_config():
    views = draw_views(CFG, KEYS)
    assert views.shape == (40, 6, len(VIEW_COLUMNS)) and views.dtype == np.float32
    assert all(View.from_row(row) == View() for row in views[:, 0])
    drawn = [View.from_row(row) for row in views[:, 1:].reshape(-1, len(VIEW_COLUMNS))]
    assert max(abs(v.angle_ccw) for v in drawn) <= 15.0 and max(abs(v.angle_ccw) for v in drawn) > 10
    assert max(max(abs(s) for s in v.shift) for v in drawn) <= 0.08
    assert all(0.92 <= v.scale <= 1.08 for v in drawn)
    assert 0.3 < np.mean([v.flip for v in drawn]) < 0.7
    assert (views[..., -1] == -1).all()            # fresh photometric steps: no seed stored


def test_views_depend_on_the_seed_and_the_key_alone():
    views = draw_views(CFG, KEYS)
    again = draw_views(CFG, list(reversed(KEYS)) + ["AFLW2000/other"])      # other order, another key
    np.testing.assert_array_equal(again[:40][::-1], views)
    assert not np.array_equal(draw_views(dataclasses.replace(CFG, seed=4), KEYS), views)
    # fewer views are the first views of more: a smaller R is a prefix of a larger one
    np.testing.assert_array_equal(draw_views(dataclasses.replace(CFG, count=3), KEYS), views[:, :3])
    assert draw_views(ViewsConfig(), KEYS).shape[1] == 1      # the default: the plain crop only


def test_replayed_photometric_views_carry_exact_seeds_from_view_one_on():
    views = draw_views(dataclasses.replace(CFG, photometric="replay"), KEYS)
    seeds = views[..., -1]
    assert (seeds[:, 0] == -1).all() and (seeds[:, 1:] >= 0).all() and (seeds[:, 1:] < 2 ** 24).all()
    assert np.array_equal(seeds, np.round(seeds)) and len(np.unique(seeds[:, 1:])) > 150
    fresh = draw_views(CFG, KEYS)       # the geometry is the same as with fresh views only for view 0
    np.testing.assert_array_equal(views[:, 0], fresh[:, 0])


def test_each_image_shows_every_view_once_every_count_epochs():
    for index in range(5):
        order = [replayed_view(0, epoch, index, 6) for epoch in range(12)]
        assert sorted(order[:6]) == sorted(order[6:]) == list(range(6)) and order[:6] != order[6:]
    assert {replayed_view(0, 3, i, 6) for i in range(40)} == set(range(6))   # images differ in an epoch
    assert all(replayed_view(0, e, 0, 1) == 0 for e in range(4))


def test_the_block_is_checked_where_it_is_declared():
    with pytest.raises(ConfigError, match="views.count: expected int >= 1, got 0"):
        ViewsConfig(count=0)
    with pytest.raises(ConfigError, match=r"views.box_shift: expected float in \[0, 1\)"):
        ViewsConfig(box_shift=1.5)
    assert CFG.describe() == ('{"box_scale": 0.08, "box_shift": 0.08, "count": 6, "flip": true, "photometric": "fresh", '
                              '"rotate": 15.0, "seed": 3}')
