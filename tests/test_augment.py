from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.augment import AugmentConfig, Augmenter, augmentation_grid, pose_preserving_chain, sample_rng
from pipeline.image import crop_box, load_rgb
from pipeline.manifest import Sample
from pipeline.pose import flip_pose, rotate_pose_in_plane, rotation_from_pose

# A mirror-symmetric "head" of coloured dots in the head frame (x right, y down, nose -z).
HEAD_POINTS = [((0, 0, -1.0), (255, 0, 0)),                 # nose
               ((-0.45, -0.35, -0.7), (0, 255, 0)), ((0.45, -0.35, -0.7), (0, 255, 0)),  # eyes
               ((0, 0.55, -0.6), (0, 0, 255)),              # chin
               ((0, -0.9, -0.2), (255, 255, 0)),            # forehead
               ((-0.9, 0, 0), (255, 0, 255)), ((0.9, 0, 0), (255, 0, 255))]              # ears
SIZE = 96
BOX = (16, 16, 80, 80)


def render(pose, size=SIZE):
    """Orthographic rendering of HEAD_POINTS under ``pose`` (pipeline.pose convention)."""
    img = np.full((size, size, 3), 40, np.uint8)
    rot = rotation_from_pose(pose)
    cam = [(rot @ np.array(p), c) for p, c in HEAD_POINTS]
    for xyz, colour in sorted(cam, key=lambda t: -t[0][2]):  # far first
        centre = (int(round(size / 2 - 0.5 + 26 * xyz[0])), int(round(size / 2 - 0.5 + 26 * xyz[1])))
        cv2.circle(img, centre, 5, colour, -1, cv2.LINE_AA)
    return img


def diff(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("angle,flip", [(12.0, False), (-14.0, False), (0.0, True), (10.0, True)])
def test_warp_and_label_correction_agree(angle, flip):
    pose = np.array([20.0, 35.0, 10.0])
    seen = crop_box(render(pose), BOX, 64, 64, angle_ccw=angle, flip=flip)
    label = rotate_pose_in_plane(pose, angle)
    label = flip_pose(label) if flip else label
    expected = crop_box(render(label), BOX, 64, 64)
    wrong = rotate_pose_in_plane(pose, -angle)
    wrong = crop_box(render(wrong if flip else flip_pose(wrong)), BOX, 64, 64)
    assert diff(seen, expected) < 0.4 * diff(seen, wrong)
    assert diff(seen, expected) < 4.0


def test_no_augmentation_is_the_plain_crop():
    image = render(np.array([5.0, -20.0, 3.0]))
    off = AugmentConfig(flip=False, rotate=0, color=False, channel=False, median_blur=False,
                        shadow_noise=False, coarse_dropout=False)
    assert pose_preserving_chain(off) is None
    crop, pose = Augmenter(off, 64)(image, BOX, (5.0, -20.0, 3.0), sample_rng(0, 0, 0))
    assert np.array_equal(crop, crop_box(image, BOX, 64, 64))
    assert np.allclose(pose, (5.0, -20.0, 3.0))


def test_chain_order_and_switches():
    names = [type(t).__name__ for t in pose_preserving_chain(AugmentConfig()).transforms]
    assert names == ["OneOf", "OneOf", "MedianBlur", "OneOf", "CoarseDropout"]
    only = AugmentConfig(color=False, channel=False, shadow_noise=False, coarse_dropout=False)
    assert [type(t).__name__ for t in pose_preserving_chain(only).transforms] == ["MedianBlur"]
    with pytest.raises(ValueError, match="rotate"):
        AugmentConfig(rotate=-1)


def test_deterministic_per_seed_epoch_index():
    image = render(np.array([0.0, 30.0, 0.0]))
    aug = Augmenter(AugmentConfig(), 48)
    runs = [aug(image, BOX, (0.0, 30.0, 0.0), sample_rng(7, 1, i)) for i in (3, 3, 4)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    # a fresh Augmenter (as in another worker) gives the same result
    again = Augmenter(AugmentConfig(), 48)(image, BOX, (0.0, 30.0, 0.0), sample_rng(7, 1, 3))
    assert np.array_equal(runs[0][0], again[0])
    outs = [aug(image, BOX, (0.0, 30.0, 0.0), sample_rng(7, e, 3)) for e in range(8)]
    assert len({o[0].tobytes() for o in outs}) == 8
    assert len({round(o[1][2], 6) for o in outs}) == 8  # rotation changes roll every time


def test_grid_png(tmp_path):
    samples = []
    for i, pose in enumerate([(10.0, 40.0, 0.0), (-20.0, -30.0, 15.0)]):
        path = tmp_path / f"face{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(render(np.array(pose)), cv2.COLOR_RGB2BGR))
        samples.append(Sample(key=f"t/{i}", dataset="t", image=str(path), pose=pose, box=BOX))
    out = tmp_path / "grid.png"
    augmentation_grid(samples, AugmentConfig(), 64, seed=0, path=out, per_sample=3, cell=64)
    sheet = load_rgb(out)
    header, label, legend = 18, 96, 18                # column labels, sample keys, one legend line
    assert sheet.shape == (header + 2 * 64 + legend, label + 4 * 64, 3)
    assert (sheet[:header, label:] < 128).any() and (sheet[header:header + 128, :label] < 128).any()


@pytest.mark.parametrize("angle,flip", [(0.0, False), (12.0, False), (0.0, True), (-9.0, True)])
def test_padded_crop_matrix_is_the_crop_matrix_shifted_by_pad(angle, flip):
    from pipeline.image import crop_affine
    plain = crop_affine(BOX, 48, 64, 0, angle, flip)
    padded = crop_affine(BOX, 48, 64, 5, angle, flip)
    np.testing.assert_allclose(padded[:, :2], plain[:, :2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(padded[:, 2], plain[:, 2] + 5, rtol=0, atol=1e-9)
    # the box centre stays the crop centre whatever the rotation and mirror
    cx, cy = (BOX[0] + BOX[2]) / 2 - 0.5, (BOX[1] + BOX[3]) / 2 - 0.5
    np.testing.assert_allclose(plain @ [cx, cy, 1], [31.5, 23.5], atol=1e-9)


def test_box_jitter_moves_and_scales_within_bounds_and_is_off_by_default():
    from pipeline.augment import draw_view
    box = np.array([10.0, 20.0, 60.0, 120.0])                  # 50 x 100
    rng = np.random.default_rng(0)
    jittered = np.array([draw_view(rng, False, 0.0, 0.1, 0.2).box(box) for _ in range(500)])
    centre_shift = (jittered[:, :2] + jittered[:, 2:]) / 2 - [35.0, 70.0]
    side = jittered[:, 2:] - jittered[:, :2]
    assert np.abs(centre_shift[:, 0]).max() <= 5.0 + 1e-9 and np.abs(centre_shift[:, 1]).max() <= 10.0 + 1e-9
    assert np.abs(centre_shift).max(axis=0) @ [1, 1] > 10     # it does move, in both axes
    factor = side / [50.0, 100.0]
    np.testing.assert_allclose(factor[:, 0], factor[:, 1])   # aspect kept
    assert factor.min() >= 0.8 - 1e-9 and factor.max() <= 1.2 + 1e-9 and np.ptp(factor) > 0.3
    # default config: the crop is exactly the box (and the random stream is not consumed)
    image = np.random.default_rng(1).integers(0, 255, (140, 80, 3), dtype=np.uint8)
    plain = Augmenter(AugmentConfig(flip=False, rotate=0.0, color=False, channel=False, median_blur=False,
                                    shadow_noise=False, coarse_dropout=False), 32)
    out = plain.apply(image, box, (0.0, 0.0, 0.0), np.random.default_rng(2))
    np.testing.assert_array_equal(out.crop, crop_box(image, box, 32, 32))


@pytest.mark.parametrize("pose_changing", [{"box_shift": 0.05}, {"box_scale": 0.05}, {"rotate": 10.0},
                                           {"flip": True}])
def test_students_refuse_pose_changing_augmentations_of_their_own(pose_changing):
    from pipeline.student import DistillConfig
    with pytest.raises(ValueError, match="must be off for students: their pose-changing augmentations are the "
                                         "views their teacher caches were labelled on"):
        DistillConfig(manifest=Path("m.csv"), boxes=None, teachers={"ensemble": Path("c.h5")}, teacher=None,
                      checkpoint_dir=Path("s"), augment=AugmentConfig(**{"flip": False, "rotate": 0.0,
                                                                          **pose_changing}))


def test_a_view_cuts_the_augmenters_crop_and_label_and_round_trips_through_its_row():
    from pipeline.augment import View, draw_view
    from pipeline.pose import flip_pose, rotate_pose_in_plane
    image = np.random.default_rng(1).integers(0, 255, (140, 80, 3), dtype=np.uint8)
    box, pose = np.array([10.0, 20.0, 60.0, 120.0]), np.array([10.0, -35.0, 5.0])
    cfg = AugmentConfig(rotate=25.0, box_shift=0.1, box_scale=0.1, color=False, channel=False, median_blur=False,
                        shadow_noise=False, coarse_dropout=False)
    for seed in range(6):
        out = Augmenter(cfg, 32).apply(image, box, pose, np.random.default_rng(seed))
        view = draw_view(np.random.default_rng(seed), True, 25.0, 0.1, 0.1)     # the same draws, in order
        assert view == out.view and View.from_row(view.row()) == view
        np.testing.assert_array_equal(view.crop(image, box, 32, 32), out.crop)
        want = rotate_pose_in_plane(pose, view.angle_ccw)
        np.testing.assert_allclose(out.pose, flip_pose(want) if view.flip else want)
        # replaying the view gives the same crop (the student's path)
        again = Augmenter(cfg, 32).apply(image, box, pose, np.random.default_rng(99), view)
        np.testing.assert_array_equal(again.crop, out.crop)
    np.testing.assert_array_equal(View().box(box), box)     # the identity view is exactly the box
