"""The real on-disk formats of 300W-LP, AFLW2000, BIWI and the published box files, written
byte-for-byte deterministically (a fixed MAT-file header instead of scipy's timestamp)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import scipy.io

from ..image import encode_image
from ..pose import biwi_matrix_from_pose, pose_para_from_pose

# MAT v5 header: 116 bytes of text (scipy writes the creation time here), then the
# subsystem offset, version and endianness, which scipy's bytes keep.
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by pipeline.synth (deterministic header)"


def mat_bytes(variables: dict) -> bytes:
    """A MATLAB v5 file of ``variables`` with a fixed header (same input -> same bytes)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=False, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER_TEXT.ljust(116, b" ")
    return bytes(data)


def pose_para(pose, translation_px, scale: float) -> np.ndarray:
    """1x7 ``Pose_Para``: the angles (radians, :func:`pipeline.pose.pose_para_from_pose`),
    a translation (projected head centre x, y-up image y, 0) and a scale (pixels per mm)."""
    return np.concatenate([pose_para_from_pose(pose), translation_px, [scale]])[None, :]


def write_300wlp(path: Path, image: np.ndarray, quality: int, pose, pt2d_68: np.ndarray,
                 translation_px, scale: float) -> None:
    """``<NAME>.jpg`` + ``<NAME>.mat`` with ``Pose_Para`` (1x7) and ``pt2d`` (2x68 pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".jpg").write_bytes(encode_image(image, ".jpg", quality))
    path.with_suffix(".mat").write_bytes(mat_bytes({
        "Pose_Para": pose_para(pose, translation_px, scale),
        "pt2d": np.ascontiguousarray(pt2d_68.T, dtype=np.float64)}))


def write_aflw2000(path: Path, image: np.ndarray, quality: int, pose, pt3d_68: np.ndarray,
                   pt2d_21: np.ndarray, translation_px, scale: float) -> None:
    """``imageNNNNN.jpg`` + ``.mat``: ``Pose_Para`` 1x7, ``pt3d_68`` 3x68 (x, y pixels and
    depth), ``pt2d`` 2x21 AFLW points with -1 where a point is not visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".jpg").write_bytes(encode_image(image, ".jpg", quality))
    path.with_suffix(".mat").write_bytes(mat_bytes({
        "Pose_Para": pose_para(pose, translation_px, scale),
        "pt3d_68": np.ascontiguousarray(pt3d_68.T, dtype=np.float64),
        "pt2d": np.ascontiguousarray(pt2d_21.T, dtype=np.float64)}))


def biwi_pose_text(pose, translation_mm) -> str:
    """``frame_XXXXX_pose.txt``: 3 rows of the rotation, a blank line, the translation (mm)."""
    rows = [" ".join(f"{v:.6f}" for v in row) + " " for row in biwi_matrix_from_pose(pose)]
    return "\n".join(rows) + "\n\n" + " ".join(f"{v:.3f}" for v in translation_mm) + " \n"


def write_biwi(frame_prefix: Path, image: np.ndarray, pose, translation_mm) -> None:
    """``frame_XXXXX_rgb.png`` + ``frame_XXXXX_pose.txt`` beside it."""
    frame_prefix.parent.mkdir(parents=True, exist_ok=True)
    frame_prefix.with_name(frame_prefix.name + "_rgb.png").write_bytes(encode_image(image))
    frame_prefix.with_name(frame_prefix.name + "_pose.txt").write_text(biwi_pose_text(pose, translation_mm))


def box_json_bytes(boxes: dict[str, tuple[tuple[float, float, float, float], str]]) -> bytes:
    """Published box file: ``{"rel/path.jpg": [{"bbox": [x1, y1, x2, y2], "type": ...}]}``."""
    data = {key: [{"bbox": [round(float(v), 2) for v in box], "type": kind}]
            for key, (box, kind) in sorted(boxes.items())}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
