"""Pose distributions of the synthetic sets, as labels in the project convention.

* 300W-LP-like: wide yaw (to about +-90), narrower pitch and roll.
* AFLW2000-like: more frontal yaw, a little more pitch (a shifted distribution).
* BIWI-like: smooth per-subject trajectories (sums of slow sinusoids), all in range.
A fraction ``out_of_range`` of the image sets gets one angle beyond 99 degrees, so the
[-99, 99] filter has something to remove downstream. Every label is canonicalised through
the rotation matrix, so the written angles are exactly the ones the readers decode.
"""
from __future__ import annotations

import numpy as np

from ..pose import ANGLE_LIMIT, pose_from_rotation, rotation_from_pose


def canonical(pose) -> np.ndarray:
    """The intrinsic-XYZ angles of the pose's rotation (yaw in [-90, 90])."""
    return pose_from_rotation(rotation_from_pose(pose))


def _beyond_limit(rng: np.random.Generator, pose: np.ndarray) -> np.ndarray:
    """Push pitch or roll past the [-99, 99] limit (yaw past 90 would re-decompose)."""
    axis = 0 if rng.uniform() < 0.6 else 2
    pose[axis] = rng.choice([-1.0, 1.0]) * rng.uniform(ANGLE_LIMIT + 1, 125)
    return pose


def sample_pose(rng: np.random.Generator, style: str, out_of_range: float) -> np.ndarray:
    """One (pitch, yaw, roll) label in degrees for the ``"300W_LP"`` or ``"AFLW2000"`` style."""
    if style == "300W_LP":
        yaw = rng.uniform(-89, 89) if rng.uniform() < 0.6 else rng.normal(0, 30)
        pose = np.array([rng.normal(0, 13), yaw, rng.normal(0, 9)])
    elif style == "AFLW2000":
        pose = np.array([rng.normal(0, 16), rng.normal(0, 32), rng.normal(0, 11)])
    else:
        raise ValueError(f"unknown pose style {style!r}")
    pose[1] = np.clip(pose[1], -89, 89)
    pose[[0, 2]] = np.clip(pose[[0, 2]], -95, 95)
    if rng.uniform() < out_of_range:
        pose = _beyond_limit(rng, pose)
    return canonical(pose)


def trajectory(rng: np.random.Generator, frames: int, fps: float = 6.0) -> np.ndarray:
    """(frames, 3) smooth BIWI-like head motion: yaw sweeps wide, pitch and roll less."""
    t = np.arange(frames) / fps
    amplitude = np.array([35.0, 70.0, 25.0]) * rng.uniform(0.5, 1.0, 3)
    out = np.zeros((frames, 3))
    for axis in range(3):
        weights = rng.dirichlet(np.ones(3))
        for weight, freq, phase in zip(weights, rng.uniform(0.03, 0.25, 3), rng.uniform(0, 2 * np.pi, 3)):
            out[:, axis] += amplitude[axis] * weight * np.sin(2 * np.pi * freq * t + phase)
    return canonical(out)
