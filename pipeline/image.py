"""Image loading and the face crop: the one place where pixels enter the project.

* Images are converted to RGB exactly once, here, at load (OpenCV reads BGR), and back to
  BGR only here, when encoded for writing.
* The crop maps the box (x1, y1, x2, y2) onto an ``out_h`` x ``out_w`` image by stretching
  (no aspect keep), optionally grown by ``pad`` pixels *of the output scale* on every side,
  with the pixels taken from the image (paper section 3.3: Z = box scaled to h x w, then
  grown by p). Outside the image the crop is black (0). The crop is one affine warp, so a
  window of a padded crop equals the crop of the shifted box exactly. The augmentations'
  rotation and mirror are folded into the same warp (:func:`crop_affine`).
* Normalisation: ImageNet mean/std on RGB in [0, 1], CHW float32.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from .errors import PipelineError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageError(PipelineError):
    pass


# A face box must have at least this fraction of its area inside its image.
MIN_BOX_INSIDE = 0.5


def truncated_jpeg(data: bytes) -> bool:
    """True for a JPEG whose last scan has no end-of-image marker after it: the file was cut.
    (OpenCV 4.10 decodes such a file with only a warning, the missing rows grey; 4.14 refuses it.)
    0xFF is byte-stuffed inside scan data, so FF DA / FF D9 there are real markers."""
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; missing, empty, undecodable or truncated files raise
    ImageError naming them (every reader of images comes here)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file not found")
    data = path.read_bytes()
    if not data:                       # cv2.imdecode asserts on an empty buffer
        raise ImageError(f"{path}: empty file (0 bytes)")
    if truncated_jpeg(data):
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker after its last scan)")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:                  # a decoder that asserts instead of returning None
        bgr = None
    if bgr is None:
        raise ImageError(f"{path}: not a readable image (corrupt or truncated)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_box(box, width: int, height: int, where: str = "") -> tuple[float, float, float, float]:
    """Validate (x1, y1, x2, y2): finite, positive size, at least MIN_BOX_INSIDE of its area
    inside the ``width`` x ``height`` image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    prefix = f"{where}: " if where else ""
    if not np.all(np.isfinite([x1, y1, x2, y2])):
        raise ImageError(f"{prefix}box {box} has non-finite coordinates")
    if x2 <= x1 or y2 <= y1:
        raise ImageError(f"{prefix}box {box} is empty (need x2 > x1 and y2 > y1)")
    inside = (max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
              / ((x2 - x1) * (y2 - y1)))
    if inside < MIN_BOX_INSIDE:
        raise ImageError(f"{prefix}box {box} lies mostly outside the {width}x{height} image "
                         f"({inside:.0%} of it inside, need {MIN_BOX_INSIDE:.0%})")
    return x1, y1, x2, y2


def crop_affine(box, out_h: int, out_w: int, pad: int = 0, angle_ccw: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2x3 matrix mapping source pixels to the (out_h + 2 pad) x (out_w + 2 pad) crop.

    In source -> crop order: rotate by ``angle_ccw`` degrees (OpenCV sign) about the box
    centre in pixel-index coordinates, stretch the box to out_h x out_w grown by ``pad``,
    then mirror the crop (x -> out_w + 2 pad - 1 - x) if ``flip``. With no rotation and no
    flip the matrix is the plain stretch (no products), so the plain crop stays exact."""
    x1, y1, x2, y2 = (float(v) for v in box)
    rx, ry = out_w / (x2 - x1), out_h / (y2 - y1)
    # box edges x1..x2 map to crop edges pad..pad+out_w; pixel centres sit at index + 0.5
    matrix = np.array([[rx, 0.0, pad - x1 * rx + 0.5 * rx - 0.5],
                       [0.0, ry, pad - y1 * ry + 0.5 * ry - 0.5]], dtype=np.float64)
    if not (angle_ccw or flip):
        return matrix
    matrix = np.vstack([matrix, [0, 0, 1]])
    if flip:
        mirror = np.array([[-1.0, 0, out_w + 2 * pad - 1], [0, 1, 0], [0, 0, 1]])
        matrix = mirror @ matrix
    if angle_ccw:
        centre = ((x1 + x2) / 2.0 - 0.5, (y1 + y2) / 2.0 - 0.5)  # pixel-index coordinates
        matrix = matrix @ np.vstack([cv2.getRotationMatrix2D(centre, angle_ccw, 1.0), [0, 0, 1]])
    return matrix[:2]


def crop_box(image: np.ndarray, box, out_h: int, out_w: int, pad: int = 0,
             angle_ccw: float = 0.0, flip: bool = False) -> np.ndarray:
    """Stretch ``box`` to out_h x out_w, grown by ``pad`` output pixels on each side,
    optionally rotated and mirrored (:func:`crop_affine`): the project's one crop warp."""
    matrix = crop_affine(box, out_h, out_w, pad, angle_ccw, flip)
    return cv2.warpAffine(image, matrix, (out_w + 2 * pad, out_h + 2 * pad),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_tensor_batch(images: np.ndarray) -> torch.Tensor:
    """NxHxWx3 uint8 RGB -> Nx3xHxW float32, ImageNet-normalised."""
    arr = (images.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, ImageNet-normalised."""
    return to_tensor_batch(image[None])[0]


def encode_image(rgb: np.ndarray, suffix: str = ".png", jpeg_quality: int = 95) -> bytes:
    """HxWx3 uint8 RGB -> bytes of a .png or .jpg file."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageError(f"could not encode a {rgb.shape} image as {suffix}")
    return encoded.tobytes()
