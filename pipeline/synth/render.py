"""Perspective rendering of a :class:`~pipeline.synth.head.Head` by ray casting with a z-buffer.

Each ellipsoid part is intersected analytically with the camera rays of the pixels inside
its projected bounds; the nearest hit wins (z-buffer). Shading is Lambertian with one
directional light plus ambient. The image is rendered ``supersample`` times larger and
area-averaged down (anti-aliasing). The pose enters only as ``rotation`` (head -> camera,
:func:`pipeline.pose.rotation_from_pose`) and ``translation`` (head centre, camera frame, mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .head import BROW, EYE, FACE_PARTS, HAIR, LIPS, Head, Part


@dataclass(frozen=True)
class Camera:
    """Pinhole camera, OpenCV frame; pixel centres at integer coordinates."""
    width: int
    height: int
    focal: float
    cx: float
    cy: float

    def scaled(self, k: int) -> "Camera":
        return Camera(self.width * k, self.height * k, self.focal * k,
                      (self.cx + 0.5) * k - 0.5, (self.cy + 0.5) * k - 0.5)


@dataclass(frozen=True)
class Light:
    direction: np.ndarray     # (3,) camera frame, the way the light travels
    ambient: float
    diffuse: float
    tint: np.ndarray          # (3,) RGB multiplier


@dataclass
class Render:
    image: np.ndarray         # HxWx3 float RGB in [0, 1] (background black)
    coverage: np.ndarray      # HxW float in [0, 1]: how much of the pixel the head covers
    face_mask: np.ndarray     # HxW bool: pixels of the face parts (not hair, not neck)
    depth: np.ndarray         # (H*k)xW*k z-buffer at the supersampled resolution (inf = empty)
    supersample: int


def to_camera(points_head: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    return points_head @ rotation.T + translation


def project(points_cam: np.ndarray, camera: Camera) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixel coordinates (perspective division)."""
    z = points_cam[:, 2]
    return np.stack([camera.focal * points_cam[:, 0] / z + camera.cx,
                     camera.focal * points_cam[:, 1] / z + camera.cy], axis=1)


def _bounds(centre: np.ndarray, radius: float, camera: Camera):
    """Pixel rectangle that surely contains a sphere (corners of its bounding box)."""
    z_near = max(centre[2] - radius, 1e-3)
    xs = [camera.focal * (centre[0] + s * radius) / z + camera.cx for s in (-1, 1) for z in (z_near, centre[2] + radius)]
    ys = [camera.focal * (centre[1] + s * radius) / z + camera.cy for s in (-1, 1) for z in (z_near, centre[2] + radius)]
    x0, x1 = max(int(np.floor(min(xs))), 0), min(int(np.ceil(max(xs))) + 1, camera.width)
    y0, y1 = max(int(np.floor(min(ys))), 0), min(int(np.ceil(max(ys))) + 1, camera.height)
    return x0, x1, y0, y1


def _paint(part: Part, q: np.ndarray) -> np.ndarray:
    """Albedo at unit-sphere local points q (N, 3): irises, mouth line, hair strands."""
    colour = np.broadcast_to(part.colour, q.shape).copy()
    if part.kind == EYE:
        iris = q[:, 2] < -0.80
        colour[iris] = part.detail
        colour[q[:, 2] < -0.93] = 0.03
    elif part.kind == LIPS:
        colour[np.abs(q[:, 1]) < 0.12] *= 0.35
    elif part.kind in (HAIR, BROW):
        colour *= (0.85 + 0.15 * np.sin(40 * q[:, 0] + 9 * q[:, 2]))[:, None]
    return colour


def _hair_kept(part: Part, p_head: np.ndarray) -> np.ndarray:
    """Hair cap: keep points above the hairline, which falls from the forehead to the nape."""
    front, back = part.hairline
    t = np.clip(0.5 + (p_head[:, 2] - part.centre[2]) / (1.2 * part.radii[2]), 0, 1)
    return p_head[:, 1] < front + (back - front) * t ** 1.5


def render(head: Head, rotation: np.ndarray, translation: np.ndarray, camera: Camera,
           light: Light, supersample: int = 2) -> Render:
    cam = camera.scaled(supersample)
    h, w = cam.height, cam.width
    depth = np.full((h, w), np.inf)
    albedo = np.zeros((h, w, 3))
    normal = np.zeros((h, w, 3))
    face = np.zeros((h, w), bool)
    translation = np.asarray(translation, float)
    for part in head.parts:
        centre_cam = rotation @ part.centre + translation
        x0, x1, y0, y1 = _bounds(centre_cam, float(part.radii.max()), cam)
        if x0 >= x1 or y0 >= y1:
            continue
        vs, us = np.mgrid[y0:y1, x0:x1]
        rays = np.stack([(us.ravel() - cam.cx) / cam.focal, (vs.ravel() - cam.cy) / cam.focal,
                         np.ones(us.size)], axis=1)            # z = 1: t is the depth
        to_local = part.rotation.T @ rotation.T                  # camera -> part frame
        origin = to_local @ (-translation) - part.rotation.T @ part.centre
        d = (rays @ to_local.T) / part.radii
        o = origin / part.radii
        a = np.einsum("ij,ij->i", d, d)
        b = 2 * d @ o
        c = o @ o - 1.0
        disc = b * b - 4 * a * c
        hit = disc > 0
        sq = np.sqrt(np.where(hit, disc, 0))
        t = (-b - sq) / (2 * a)
        inner = np.zeros_like(hit)
        if part.kind == HAIR:  # clipped cap: front surface if kept, else its inside
            p_near = (rays * t[:, None]) @ rotation - translation @ rotation
            keep = _hair_kept(part, p_near)
            t_far = (-b + sq) / (2 * a)
            p_far = (rays * t_far[:, None]) @ rotation - translation @ rotation
            inner = ~keep & _hair_kept(part, p_far)
            t = np.where(keep, t, t_far)
            hit &= keep | inner
        flat = (vs.ravel(), us.ravel())
        hit &= (t > 0) & (t < depth[flat])
        if not hit.any():
            continue
        idx = (flat[0][hit], flat[1][hit])
        q = o + t[hit, None] * d[hit]
        n_cam = (q / part.radii) @ to_local                      # ellipsoid gradient, camera frame
        n_cam /= np.linalg.norm(n_cam, axis=1, keepdims=True)
        n_cam[inner[hit]] *= -1
        depth[idx] = t[hit]
        albedo[idx] = _paint(part, q)
        normal[idx] = n_cam
        face[idx] = part.name in FACE_PARTS
    covered = np.isfinite(depth)
    lambert = np.clip(-(normal @ light.direction), 0, None)
    shade = (light.ambient + light.diffuse * lambert)[..., None] * light.tint
    image = np.where(covered[..., None], albedo * shade, 0.0)
    size = (camera.width, camera.height)
    return Render(image=cv2.resize(image, size, interpolation=cv2.INTER_AREA),
                  coverage=cv2.resize(covered.astype(np.float64), size, interpolation=cv2.INTER_AREA),
                  face_mask=cv2.resize(face.astype(np.float64), size, interpolation=cv2.INTER_AREA) > 0.5,
                  depth=depth, supersample=supersample)


def visible(points_cam: np.ndarray, result: Render, camera: Camera, tolerance_mm: float = 4.0) -> np.ndarray:
    """True where a point lies inside the image and is not hidden behind the rendered head."""
    k = result.supersample
    px = project(points_cam, camera.scaled(k))
    inside = (px[:, 0] >= 0) & (px[:, 0] <= k * camera.width - 1) & (px[:, 1] >= 0) & (px[:, 1] <= k * camera.height - 1)
    out = np.zeros(len(points_cam), bool)
    ix = np.clip(np.round(px[:, 0]).astype(int), 0, k * camera.width - 1)
    iy = np.clip(np.round(px[:, 1]).astype(int), 0, k * camera.height - 1)
    out[inside] = points_cam[inside, 2] <= result.depth[iy[inside], ix[inside]] + tolerance_mm
    return out
