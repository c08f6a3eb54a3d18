"""`pipeline bench consistency`: the mirror and in-plane rotation rules checked on the astronaut,
against computations that share none of its code (np.fliplr / np.rot90 of the photo, scipy's
rotations), and on networks built to pass or to fail them."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from skimage import data as skimage_data
from typer.testing import CliRunner

from pipeline.benchmarks.consistency import face_deviations, report, run
from pipeline.cli import app
from pipeline.image import crop_box, to_tensor_batch
from pipeline.predict import PoseEstimator
from test_deploy import checkpoint  # noqa: F401  (the fixture: a student checkpoint and its ONNX export)

ASTRONAUT = skimage_data.astronaut()


def euler_after_turn(pose, turn_ccw):
    """scipy's own: the pose of the head after the photo turns ``turn_ccw`` degrees counter-clockwise
    (a clockwise rotation about the camera's z axis, which points into the image)."""
    turned = Rotation.from_euler("z", -turn_ccw, degrees=True) * Rotation.from_euler("XYZ", pose, degrees=True)
    return turned.as_euler("XYZ", degrees=True)


class Constant:
    """A network that ignores the photo: the same pose for every crop."""
    def __init__(self, pose, input_size):
        self.pose, self.input_size = np.asarray(pose, np.float32), input_size

    def __call__(self, batch):
        return np.repeat(self.pose[None], len(batch), axis=0)


class MirrorSymmetric:
    """A network made exactly mirror-consistent, (f(x) + flip(f(mirror x))) / 2, plus a yaw bias
    (a bias the mirror cannot cancel: a deviation of twice the bias)."""
    def __init__(self, net, yaw_bias=0.0):
        self.net, self.input_size, self.bias = net, net.input_size, np.float32([0.0, yaw_bias, 0.0])

    def __call__(self, batch):
        mirrored = self.net(np.ascontiguousarray(batch[..., ::-1])) * np.float32([1, -1, -1])
        return (self.net(batch) + mirrored) / 2 + self.bias


def test_a_network_that_ignores_the_photo_deviates_by_the_rules_themselves(checkpoint):
    pt, _, _ = checkpoint
    estimator = PoseEstimator(pt, detector="haar")
    pose = (10.0, 20.0, 5.0)
    estimator.net = Constant(pose, estimator.net.input_size)
    _, deviations = face_deviations(estimator, ASTRONAUT, 15.0)
    np.testing.assert_allclose(np.abs(deviations["mirror"][0]), [0.0, 40.0, 10.0], atol=1e-4)
    for turn in (15.0, -15.0):
        np.testing.assert_allclose(np.abs(deviations[f"rotate {turn:+g}"][0]),
                                   np.abs(np.asarray(pose) - euler_after_turn(pose, turn)), atol=1e-4)
    assert np.abs(deviations["rotate +15"][0][2]) > 14     # roll must follow the turn: it did not


def test_the_mirror_row_is_zero_for_a_symmetric_network_and_twice_a_yaw_bias(checkpoint):
    pt, _, _ = checkpoint
    estimator = PoseEstimator(pt)                                       # MTCNN: her one face
    raw = estimator.net
    estimator.net = MirrorSymmetric(raw)
    poses, deviations = face_deviations(estimator, ASTRONAUT, 15.0)
    assert len(poses) == 1 and np.abs(deviations["mirror"]).max() < 0.01   # cv2 warps at 1/32 px
    estimator.net = MirrorSymmetric(raw, yaw_bias=30.0)
    _, biased = face_deviations(estimator, ASTRONAUT, 15.0)
    np.testing.assert_allclose(np.abs(biased["mirror"][0]), [0.0, 60.0, 0.0], atol=0.01)


@pytest.mark.parametrize("k", [1, -1])
def test_deviations_match_np_rot90_and_np_fliplr_of_the_photo(checkpoint, k):
    """A turn of 90 degrees needs no interpolation (np.rot90), so the bench's crops and rules can be
    checked against the photo turned and mirrored by numpy (to cv2's 1/32 px warp grid)."""
    pt, _, _ = checkpoint
    estimator = PoseEstimator(pt, detector="haar")                    # a square box: it turns onto itself
    size, height, width = estimator.net.input_size, *ASTRONAUT.shape[:2]
    net = lambda image, box: estimator.net(to_tensor_batch(crop_box(image, box, size, size)[None]).numpy())[0]
    poses, deviations = face_deviations(estimator, ASTRONAUT, 90.0)
    (x1, y1, x2, y2), pose = estimator(ASTRONAUT)[0].box, poses[0]
    mirrored = net(np.ascontiguousarray(np.fliplr(ASTRONAUT)), (width - x2, y1, width - x1, y2))
    np.testing.assert_allclose(deviations["mirror"][0], mirrored - pose * [1, -1, -1], atol=0.02)
    turned = np.ascontiguousarray(np.rot90(ASTRONAUT, k))              # k = 1: counter-clockwise
    box = (y1, width - x2, y2, width - x1) if k == 1 else (height - y2, x1, height - y1, x2)
    expected = net(turned, box) - euler_after_turn(pose, 90.0 * k)
    np.testing.assert_allclose(deviations[f"rotate {90 * k:+g}"][0], (expected + 180) % 360 - 180, atol=0.02)


def test_command_on_a_folder_reports_means_and_counts_what_it_skipped(checkpoint, tmp_path):
    _, onnx_path, _ = checkpoint
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), cv2.cvtColor(ASTRONAUT, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "mirrored.png"), cv2.cvtColor(np.fliplr(ASTRONAUT), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "wall.png"), np.full((120, 120, 3), 128, np.uint8))
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.txt").write_text("not a photo")
    estimator = PoseEstimator(onnx_path)
    r = run(estimator, [str(photos)], 15.0)
    assert (r["images"], r["faces"], r["no_face"], r["skipped"]) == (3, 2, 1, 1)
    assert r["unreadable"] == [f"{photos / 'empty.jpg'}: empty file (0 bytes)"]
    by_face = [face_deviations(estimator, cv2.cvtColor(cv2.imread(str(photos / n)), cv2.COLOR_BGR2RGB), 15.0)[1]
               for n in ("astronaut.png", "mirrored.png")]
    for name in ("mirror", "rotate +15", "rotate -15"):          # the mean over the two faces, per angle
        mean = np.abs(np.concatenate([d[name] for d in by_face])).mean(axis=0)
        assert list(r["deviation"][name].values()) == pytest.approx(mean, abs=1e-3)
    result = CliRunner().invoke(app, ["bench", "consistency", str(photos), "--model", str(onnx_path)])
    assert result.exit_code == 0, result.output
    assert "label-free consistency on 2 faces of 3 photos" in result.output and "1 unreadable" in result.output
    assert result.output.strip().endswith(report(r, f"{onnx_path} (mtcnn)").splitlines()[-1])
    bad = CliRunner().invoke(app, ["bench", "consistency", str(photos), "--model", str(onnx_path), "--angle", "0"])
    assert bad.exit_code == 1 and "angle: the in-plane turn must be in (0, 180)" in bad.output
