"""Everything around the head: backgrounds, lighting, occluders and the camera degradations
(blur, noise; JPEG quality is chosen here and applied by the writer). Each set has a style,
so the test sets come from shifted conditions (AFLW2000-like: cluttered, harsher light)."""
from __future__ import annotations

import cv2
import numpy as np

from .render import Light

STYLES = ("300W_LP", "AFLW2000", "BIWI")
# P(gradient, shapes, texture) backgrounds per style
_BACKGROUND_MIX = {"300W_LP": (0.45, 0.3, 0.25), "AFLW2000": (0.1, 0.4, 0.5), "BIWI": (0.0, 1.0, 0.0)}
_OCCLUSION = {"300W_LP": 0.12, "AFLW2000": 0.25, "BIWI": 0.03}


def _colour(rng, lo=0.0, hi=1.0) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def background(rng: np.random.Generator, height: int, width: int, style: str) -> np.ndarray:
    """HxWx3 float RGB in [0, 1]: a gradient, random shapes, or a smooth noise texture."""
    kind = rng.choice(3, p=_BACKGROUND_MIX[style])
    dark = 0.6 if style == "AFLW2000" else 1.0
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    if kind == 0:
        a, b = _colour(rng, 0.1, dark), _colour(rng, 0.1, dark)
        angle = rng.uniform(0, 2 * np.pi)
        s = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)[..., None]
        return a * (1 - s) + b * s
    if kind == 1:
        img = np.ones((height, width, 3)) * _colour(rng, 0.1, dark)
        for _ in range(rng.integers(3, 12)):
            col = tuple(float(c) for c in _colour(rng, 0.0, dark))
            x, y = (int(v) for v in rng.integers(0, (width, height)))
            size = int(rng.integers(max(width // 12, 2), max(width // 2, 3)))
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), col, -1)
            elif shape == 1:
                cv2.circle(img, (x, y), size // 2, col, -1, cv2.LINE_AA)
            else:
                x2, y2 = (int(v) for v in rng.integers(0, (width, height)))
                cv2.line(img, (x, y), (x2, y2), col, int(rng.integers(1, 5)), cv2.LINE_AA)
        return img
    cells = int(rng.integers(3, 10))
    low = rng.uniform(0, 1, (cells, cells, 1))
    noise = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    a, b = _colour(rng, 0.0, dark), _colour(rng, 0.2, 1.0)
    grain = rng.normal(0, 0.04, (height, width, 1))
    return np.clip(a * (1 - noise) + b * noise + grain, 0, 1)


def lighting(rng: np.random.Generator, style: str) -> Light:
    """A random directional light from the camera's half-space, ambient and tint."""
    direction = np.array([rng.uniform(-1, 1), rng.uniform(-0.8, 1), rng.uniform(0.4, 1.5)])
    if style == "AFLW2000":  # harsher, coloured light
        ambient, diffuse = rng.uniform(0.15, 0.4), rng.uniform(0.7, 1.1)
        tint = rng.uniform(0.8, 1.15, 3)
    else:
        ambient, diffuse = rng.uniform(0.3, 0.55), rng.uniform(0.5, 0.85)
        tint = rng.uniform(0.93, 1.07, 3)
    return Light(direction / np.linalg.norm(direction), ambient, diffuse, tint)


def occlude(rng: np.random.Generator, image: np.ndarray, box, eyes_px: np.ndarray, style: str) -> np.ndarray:
    """Sometimes draw an occluder over the face: an object blob or dark glasses (in place)."""
    if rng.uniform() >= _OCCLUSION[style]:
        return image
    x1, y1, x2, y2 = box
    size = max(x2 - x1, y2 - y1)
    col = tuple(float(c) for c in _colour(rng))
    if rng.uniform() < 0.3:  # glasses across the eye landmarks
        p, q = eyes_px.min(axis=0), eyes_px.max(axis=0)
        cv2.line(image, (int(p[0]), int((p[1] + q[1]) / 2)), (int(q[0]), int((p[1] + q[1]) / 2)),
                 (0.05, 0.05, 0.05), max(int(size * 0.12), 2), cv2.LINE_AA)
        return image
    cx, cy = rng.uniform(x1, x2), rng.uniform(y1 + 0.3 * (y2 - y1), y2 + 0.2 * (y2 - y1))
    axes = (max(int(size * rng.uniform(0.12, 0.3)), 1), max(int(size * rng.uniform(0.12, 0.35)), 1))
    cv2.ellipse(image, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    return image


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera effects on float RGB: sometimes a Gaussian blur, always some sensor noise."""
    if rng.uniform() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.3))
    image = image + rng.normal(0, rng.uniform(0.0, 0.03), image.shape)
    return np.clip(image, 0, 1)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
