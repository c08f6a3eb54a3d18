"""Head-pose conventions: the one place that says what an angle means.

Every pose in this project is a triple of degrees in the order (pitch, yaw, roll).

Frame and rotation (the *project convention*)
---------------------------------------------
Camera frame as in OpenCV: x to the image right, y to the image bottom, z away from the
camera. The head frame coincides with it for a frontal face (the nose points along -z).
A pose (pitch, yaw, roll) is the rotation that takes head coordinates to camera coordinates

    R = Rx(pitch) @ Ry(yaw) @ Rz(roll)            (intrinsic X-Y-Z,
                                                   scipy: from_euler("XYZ", ...))

with right-handed elementary rotations. In image terms:
    pitch > 0: the face looks down;   yaw > 0: the face turns to the image left;
    roll > 0: the face turns clockwise on the screen.

Dataset formats (each has exactly one function here)
----------------------------------------------------
* 300W-LP / AFLW2000 ``Pose_Para[0][:3]`` = (phi, gamma, theta) radians of 3DDFA, whose
  model frame has y up and z towards the viewer. Conjugating its rotation by diag(1,-1,-1)
  gives R = Rx(-phi) Ry(gamma) Rz(theta): our pose is degrees(Pose_Para[:3]) * (-1, 1, 1).
  This is the label convention of the paper's authors (pitch negated w.r.t. Hopenet's).
* BIWI ``frame_XXXXX_pose.txt``: the 3x3 matrix (as its rows are stored) is R of our
  convention; the angles are its intrinsic-XYZ decomposition (the authors' conversion).
* AFLW ``FacePose`` (roll, pitch, yaw radians): our pose is degrees(-pitch, yaw, -roll),
  the conversion of the authors' AFLW reader and of HopeNet's, so that protocol 2 labels
  are theirs (pitch and roll negated).

Pose-changing augmentations
---------------------------
* Horizontal flip (x -> -x): R' = F R F with F = diag(-1, 1, 1), i.e. (p, y, r) -> (p, -y, -r).
* In-plane image rotation by ``angle`` degrees counter-clockwise on the screen (OpenCV's
  ``getRotationMatrix2D`` sign): R' = Rz(-angle) @ R. With the intrinsic XYZ order roll is
  not the outermost rotation, so all three angles change; we go through the matrix.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

ANGLE_NAMES = ("pitch", "yaw", "roll")
ANGLE_LIMIT = 99.0
EULER_ORDER = "XYZ"  # scipy: upper case = intrinsic
CONVENTION = "opencv-camera;R=Rx(pitch)Ry(yaw)Rz(roll);degrees;pitch>0=down"
_POSE_PARA_SIGNS = np.array([-1.0, 1.0, 1.0])
_AFLW_SIGNS = np.array([-1.0, 1.0, -1.0])
# A matrix is taken for a rotation when max|R^T R - I| and |det R - 1| are both within this.
ROTATION_TOLERANCE = 1e-3


def _as_poses(pose) -> np.ndarray:
    arr = np.asarray(pose, dtype=np.float64)
    if arr.shape[-1] != 3:
        raise ValueError(f"a pose has 3 angles (pitch, yaw, roll); got shape {arr.shape}")
    return arr


def rotation_from_pose(pose) -> np.ndarray:
    """(..., 3) degrees -> (..., 3, 3) rotation matrices R = Rx(p) Ry(y) Rz(r)."""
    arr = _as_poses(pose)
    flat = arr.reshape(-1, 3)
    mats = Rotation.from_euler(EULER_ORDER, flat, degrees=True).as_matrix()
    return mats.reshape(arr.shape[:-1] + (3, 3))


def pose_from_rotation(matrix) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) degrees (pitch, yaw, roll); yaw in [-90, 90]."""
    mats = np.asarray(matrix, dtype=np.float64)
    if mats.shape[-2:] != (3, 3):
        raise ValueError(f"expected 3x3 rotation matrices, got shape {mats.shape}")
    flat = mats.reshape(-1, 3, 3)
    if not np.all(np.isfinite(flat)):
        raise ValueError("not a rotation matrix (non-finite entries)")
    orthonormal = np.abs(np.swapaxes(flat, 1, 2) @ flat - np.eye(3)).max()
    det = np.abs(np.linalg.det(flat) - 1.0).max()
    if orthonormal > ROTATION_TOLERANCE or det > ROTATION_TOLERANCE:
        raise ValueError(f"not a rotation matrix: max|R^T R - I| = {orthonormal:.3g}, "
                         f"|det R - 1| = {det:.3g} (tolerance {ROTATION_TOLERANCE:g})")
    poses = Rotation.from_matrix(flat).as_euler(EULER_ORDER, degrees=True)
    return poses.reshape(mats.shape[:-2] + (3,))


# --- dataset formats -------------------------------------------------------------------

def pose_from_pose_para(pose_para) -> np.ndarray:
    """300W-LP / AFLW2000 ``Pose_Para`` (1x7 or 7, radians first) -> our pose in degrees."""
    para = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if para.size < 3:
        raise ValueError(f"Pose_Para needs at least 3 values, got {para.size}")
    return np.degrees(para[:3]) * _POSE_PARA_SIGNS


def pose_para_from_pose(pose) -> np.ndarray:
    """Inverse of :func:`pose_from_pose_para` for the three angles (radians)."""
    return np.radians(_as_poses(pose) * _POSE_PARA_SIGNS)


def pose_from_biwi_matrix(matrix) -> np.ndarray:
    """BIWI ``_pose.txt`` 3x3 rotation (rows as stored) -> our pose in degrees."""
    return pose_from_rotation(matrix)


def biwi_matrix_from_pose(pose) -> np.ndarray:
    return rotation_from_pose(pose)


def pose_from_aflw(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """AFLW ``FacePose`` columns (radians) -> our pose in degrees."""
    return np.degrees(np.array([pitch, yaw, roll], dtype=np.float64)) * _AFLW_SIGNS


def aflw_from_pose(pose) -> np.ndarray:
    """Inverse of :func:`pose_from_aflw`: (pitch, yaw, roll) radians for FacePose."""
    return np.radians(_as_poses(pose) * _AFLW_SIGNS)


# --- filters and augmentations ---------------------------------------------------------

def in_range(pose, limit: float = ANGLE_LIMIT) -> np.ndarray:
    """True where all three |angle| <= limit (the paper keeps only those samples)."""
    arr = _as_poses(pose)
    return np.all(np.isfinite(arr), axis=-1) & np.all(np.abs(arr) <= limit, axis=-1)


def flip_pose(pose) -> np.ndarray:
    """Label of the horizontally mirrored image: (pitch, -yaw, -roll)."""
    return _as_poses(pose) * np.array([1.0, -1.0, -1.0])


def rotate_pose_in_plane(pose, angle_ccw_deg) -> np.ndarray:
    """Label of the image rotated by ``angle_ccw_deg`` counter-clockwise (OpenCV sign).

    Exact through matrices: R' = Rz(-angle) @ R (positive z rotation is clockwise on screen).
    """
    arr = _as_poses(pose)
    angle = np.broadcast_to(np.asarray(angle_ccw_deg, dtype=np.float64), arr.shape[:-1])
    rz = Rotation.from_euler("z", -angle.reshape(-1, 1), degrees=True).as_matrix()
    rotated = rz @ rotation_from_pose(arr).reshape(-1, 3, 3)
    return pose_from_rotation(rotated).reshape(arr.shape)


def axes_2d(pose, size: float = 1.0) -> np.ndarray:
    """Image-plane endpoints (3 axes x (dx, dy)) of the head's x (red), y (green) and
    nose (-z, blue) axes under orthographic projection, for drawing; y points down."""
    rot = rotation_from_pose(pose)
    head_axes = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]]).T  # columns
    cam = rot @ head_axes
    return (cam[:2, :].T * size)
