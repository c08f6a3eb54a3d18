"""The pose convention module, checked against scipy and against image geometry."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline import pose as P

RNG = np.random.default_rng(0)


def random_poses(n, limit=89.0):
    return RNG.uniform(-limit, limit, size=(n, 3))


def elementary(axis, deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_rotation_is_rx_ry_rz_product():
    for p, y, r in random_poses(20):
        expected = elementary("x", p) @ elementary("y", y) @ elementary("z", r)
        np.testing.assert_allclose(P.rotation_from_pose([p, y, r]), expected, atol=1e-12)


def test_matches_scipy_intrinsic_xyz_and_round_trips():
    poses = random_poses(200)
    mats = P.rotation_from_pose(poses)
    np.testing.assert_allclose(mats, Rotation.from_euler("XYZ", poses, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(P.pose_from_rotation(mats), poses, atol=1e-9)


def test_pose_from_rotation_rejects_non_rotations():
    with pytest.raises(ValueError, match="rotation"):
        P.pose_from_rotation(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError):
        P.pose_from_rotation(np.full((3, 3), np.nan))
    sheared = P.rotation_from_pose([10.0, 20.0, 30.0]) @ np.array([[1, 0.2, 0], [0, 1, 0], [0, 0, 1]])
    assert np.linalg.det(sheared) == pytest.approx(1.0)   # det alone does not catch it
    with pytest.raises(ValueError, match=r"R\^T R - I\| = 0.2.*tolerance 0.001"):
        P.pose_from_rotation(sheared)
    nearly = P.rotation_from_pose([10.0, 20.0, 30.0]).round(6)    # as BIWI files store it
    np.testing.assert_allclose(P.pose_from_rotation(nearly), [10.0, 20.0, 30.0], atol=1e-3)


def test_pose_para_pitch_is_negated_and_round_trips():
    para = np.array([[0.3, -0.5, 0.2, 10.0, 20.0, 30.0, 0.001]])
    got = P.pose_from_pose_para(para)
    np.testing.assert_allclose(got, [-np.degrees(0.3), np.degrees(-0.5), np.degrees(0.2)])
    np.testing.assert_allclose(P.pose_from_pose_para(P.pose_para_from_pose(got)), got)


def test_pose_para_matches_3ddfa_rotation_conjugated_to_opencv_frame():
    # 3DDFA's RotationMatrix(phi, gamma, theta) in its y-up, z-to-viewer model frame.
    phi, gamma, theta = 0.4, -0.7, 0.25
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(phi), s(phi)], [0, -s(phi), c(phi)]])
    ry = np.array([[c(gamma), 0, -s(gamma)], [0, 1, 0], [s(gamma), 0, c(gamma)]])
    rz = np.array([[c(theta), s(theta), 0], [-s(theta), c(theta), 0], [0, 0, 1]])
    flip_yz = np.diag([1.0, -1.0, -1.0])
    r_opencv = flip_yz @ (rx @ ry @ rz) @ flip_yz
    ours = P.pose_from_pose_para([phi, gamma, theta, 0, 0, 0, 1])
    np.testing.assert_allclose(P.rotation_from_pose(ours), r_opencv, atol=1e-12)


def test_biwi_matrix_round_trip():
    poses = random_poses(50)
    np.testing.assert_allclose(P.pose_from_biwi_matrix(P.biwi_matrix_from_pose(poses)), poses, atol=1e-9)


def test_aflw_is_the_authors_and_hopenets_conversion():
    # their readers: degrees of (-pitch, yaw, -roll) from FacePose radians
    got = P.pose_from_aflw(0.1, 0.2, -0.3)
    np.testing.assert_allclose(got, np.degrees([-0.1, 0.2, 0.3]))
    np.testing.assert_allclose(P.aflw_from_pose(got), [0.1, 0.2, -0.3])


def test_image_directions_of_the_convention():
    nose = np.array([0.0, 0.0, -1.0])  # frontal face looks at the camera (-z)
    down = P.rotation_from_pose([30, 0, 0]) @ nose
    left = P.rotation_from_pose([0, 30, 0]) @ nose
    assert down[1] > 0.4  # pitch > 0: nose goes down the image (y down)
    assert left[0] < -0.4  # yaw > 0: nose goes to the image left
    x_axis = P.rotation_from_pose([0, 0, 30]) @ np.array([1.0, 0, 0])
    assert x_axis[1] > 0.4  # roll > 0: head x axis goes down on the right: clockwise on screen


def test_in_range_filter():
    poses = np.array([[0, 0, 0], [99, -99, 99], [99.5, 0, 0], [0, np.nan, 0]])
    assert P.in_range(poses).tolist() == [True, True, False, False]


def test_flip_matches_mirror_conjugation():
    mirror = np.diag([-1.0, 1.0, 1.0])
    for pose in random_poses(50):
        expected = mirror @ P.rotation_from_pose(pose) @ mirror
        np.testing.assert_allclose(P.rotation_from_pose(P.flip_pose(pose)), expected, atol=1e-12)
    np.testing.assert_allclose(P.flip_pose([10, 20, 30]), [10, -20, -30])


def project(points_cam, centre, focal):
    return points_cam[:, :2] / points_cam[:, 2:3] * focal + centre


def test_in_plane_rotation_matches_rotating_the_image():
    """Project a 3D head, rotate the 2D points with OpenCV's image rotation, and compare with
    the projection of the corrected pose (orthographic-like: distant camera)."""
    head = RNG.normal(size=(30, 3))
    centre = np.array([100.0, 100.0])
    focal, distance = 5000.0, 1000.0
    for pose in random_poses(20, limit=60):
        angle = RNG.uniform(-15, 15)
        cam = head @ P.rotation_from_pose(pose).T + [0, 0, distance]
        pts = project(cam, centre, focal)
        m = cv2.getRotationMatrix2D(tuple(centre), angle, 1.0)
        rotated_pts = pts @ m[:, :2].T + m[:, 2]
        new_pose = P.rotate_pose_in_plane(pose, angle)
        cam2 = head @ P.rotation_from_pose(new_pose).T + [0, 0, distance]
        np.testing.assert_allclose(project(cam2, centre, focal), rotated_pts, atol=1e-6)


def test_in_plane_rotation_changes_all_angles_exactly():
    pose = np.array([30.0, 50.0, 10.0])
    new = P.rotate_pose_in_plane(pose, 15.0)
    expected = Rotation.from_euler("z", -15.0, degrees=True).as_matrix() @ P.rotation_from_pose(pose)
    np.testing.assert_allclose(P.rotation_from_pose(new), expected, atol=1e-12)
    assert abs(new[0] - pose[0]) > 0.5 and abs(new[1] - pose[1]) > 0.5  # not a roll shift
    frontal = P.rotate_pose_in_plane([0, 0, 5], 10)
    np.testing.assert_allclose(frontal, [0, 0, -5], atol=1e-9)  # pure roll: roll - angle


def test_rotation_batches_keep_shape():
    poses = random_poses(6).reshape(2, 3, 3)
    assert P.rotation_from_pose(poses).shape == (2, 3, 3, 3)
    assert P.rotate_pose_in_plane(poses, 5.0).shape == (2, 3, 3)
