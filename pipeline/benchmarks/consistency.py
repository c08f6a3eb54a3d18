"""``pipeline bench consistency``: what a network must get right on any photo, without labels.

For every face the detector finds, the network's pose p on the photo is compared with its pose
on two transforms of the photo whose true pose follows from p exactly (:mod:`pipeline.pose`):

* the mirrored photo (its boxes mirrored too): :func:`pipeline.pose.flip_pose`, (p, -y, -r);
* the photo turned by +t and -t degrees about the face (the box stays where the face is):
  :func:`pipeline.pose.rotate_pose_in_plane`, R' = Rz(-t) R, which changes all three angles.

The deviation is the network's angle on the transform less the angle the rule gives, wrapped to
[-180, 180); reported as the mean |deviation| per angle (pitch, yaw, roll) over the faces, per
transform. A correct network scores 0 whatever the photos; a synthetic-trained network that
does not transfer to real photos rarely stays consistent. A network that always answers the
same frontal pose is consistent under the mirror, so the mean |angle| it predicts is reported
beside it, and the rotation rows catch it (roll must follow the turn).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..image import ImageError, load_rgb
from ..pose import ANGLE_NAMES, flip_pose, rotate_pose_in_plane
from ..predict import PoseEstimator, PredictError
from ..predict_sources import VIDEO_SUFFIXES, expand
from ..relabel.haar import mirror_boxes


def wrapped(difference: np.ndarray) -> np.ndarray:
    """Angle differences in degrees, wrapped to [-180, 180)."""
    return (np.asarray(difference, dtype=np.float64) + 180.0) % 360.0 - 180.0


def face_deviations(estimator: PoseEstimator, image: np.ndarray, angle: float) -> tuple[np.ndarray, dict]:
    """(poses (N, 3) of the N faces found, {transform: (N, 3) deviations in degrees})."""
    faces = estimator(image)
    boxes = [face.box for face in faces]
    poses = np.array([(f.pitch, f.yaw, f.roll) for f in faces], dtype=np.float64).reshape(-1, 3)
    if not faces:
        return poses, {}
    mirrored = estimator.angles(np.ascontiguousarray(image[:, ::-1]), mirror_boxes(boxes, image.shape[1]))
    out = {"mirror": wrapped(mirrored - flip_pose(poses))}
    for turn in (angle, -angle):
        out[f"rotate {turn:+g}"] = wrapped(estimator.angles(image, boxes, angle_ccw=turn)
                                           - rotate_pose_in_plane(poses, turn))
    return poses, out


def run(estimator: PoseEstimator, inputs: Sequence[str], angle: float = 15.0) -> dict:
    """Mean |deviation| per transform and angle over every face of the photos of ``inputs``
    (files and folders, as ``pipeline predict`` takes them; unreadable files are counted)."""
    if not 0 < angle < 180:
        raise PredictError(f"angle: the in-plane turn must be in (0, 180) degrees, got {angle}")
    sources, other = expand(inputs)
    photos = [s for s in sources if not s.isdigit() and Path(s).suffix.lower() not in VIDEO_SUFFIXES]
    poses, deviations, unreadable, no_face = [], {}, [], 0
    for source in photos:
        try:
            image = load_rgb(source)
        except ImageError as exc:            # names the file
            unreadable.append(str(exc))
            continue
        found, by_transform = face_deviations(estimator, image, angle)
        no_face += not len(found)
        poses.append(found)
        for name, d in by_transform.items():
            deviations.setdefault(name, []).append(d)
    faces = int(sum(len(p) for p in poses))
    mean = lambda arrays: dict(zip(ANGLE_NAMES, np.abs(np.concatenate(arrays)).mean(axis=0).round(3).tolist()))
    return {"min_score": estimator.detector.min_score, "angle": angle,
            "images": len(photos) - len(unreadable), "faces": faces, "no_face": no_face,
            "unreadable": unreadable, "skipped": other + len(sources) - len(photos),
            "predicted": mean(poses) if faces else None,
            "deviation": {name: mean(d) for name, d in deviations.items()}}


def report(r: dict, title: str) -> str:
    lines = [f"{title}: label-free consistency on {r['faces']} faces of {r['images']} photos "
             f"(min score {r['min_score']}; {r['no_face']} photos without a face, "
             f"{len(r['unreadable'])} unreadable" + (f" (e.g. {r['unreadable'][0]})" if r["unreadable"] else "")
             + f", {r['skipped']} files skipped: not photos)"]
    if not r["faces"]:
        return "\n".join(lines + ["  no face found: nothing to measure"])
    lines.append(f"  {'mean |deviation|, degrees':<34}" + "".join(f"{a:>8}" for a in ANGLE_NAMES))
    rules = {"mirror": "mirror: (p, -y, -r)"}
    for name, values in r["deviation"].items():
        label = rules.get(name, f"{name.replace('rotate', 'turn')} deg: Rz rule")
        lines.append(f"  {label:<34}" + "".join(f"{values[a]:8.2f}" for a in ANGLE_NAMES))
    lines.append(f"  {'mean |angle| predicted (scale)':<34}" + "".join(f"{r['predicted'][a]:8.2f}" for a in ANGLE_NAMES))
    return "\n".join(lines)
