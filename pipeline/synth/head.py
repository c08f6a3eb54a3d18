"""A parametric 3D head: a union of ellipsoid parts (skull, jaw, nose, eyes, brows, lips,
ears, neck, hair cap) in the head frame, and its 68 landmarks as points on those surfaces.

Head frame = the camera frame of a frontal face (:mod:`pipeline.pose`): x to the image right,
y down, z away from the camera; the face looks along -z. Units are millimetres and the
origin is the centre of rotation. An identity is a random draw of the part sizes, positions
and colours (:func:`random_head`), so every image can show another person.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

SKIN, HAIR, EYE, LIPS, BROW = "skin", "hair", "eye", "lips", "brow"
# Parts that a face detector would put inside its box (hair and neck are left out).
FACE_PARTS = ("skull", "jaw", "nose", "eye_r", "eye_l", "brow_r", "brow_l", "lips", "ear_r", "ear_l")

# iBUG 68 left/right correspondence: the landmark order of the mirrored face.
FLIP_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])

# AFLW's 21 points (AFLW2000 ``pt2d``), image left first, from the 68 (ears extra).
AFLW21_FROM_68 = (17, 19, 21, 22, 24, 26, 36, "eye_r_centre", 39, 42, "eye_l_centre", 45,
                  "ear_r", 31, 30, 35, "ear_l", 48, "mouth_centre", 54, 8)


@dataclass(frozen=True)
class Part:
    name: str
    kind: str                 # SKIN / HAIR / EYE / LIPS / BROW: how it is painted
    centre: np.ndarray        # (3,) head frame, mm
    radii: np.ndarray         # (3,) semi-axes in the part frame
    rotation: np.ndarray      # (3, 3) part frame -> head frame
    colour: np.ndarray        # (3,) RGB in [0, 1]
    detail: Optional[np.ndarray] = None   # iris colour for eyes
    hairline: tuple[float, float] = (0.0, 0.0)  # hair cap: y of the hairline at the front, back


@dataclass(frozen=True)
class Head:
    parts: tuple[Part, ...]

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)


def _rot(x_deg=0.0, y_deg=0.0, z_deg=0.0) -> np.ndarray:
    return Rotation.from_euler("XYZ", [x_deg, y_deg, z_deg], degrees=True).as_matrix()


def _part(name, kind, centre, radii, colour, rotation=None, **kw) -> Part:
    return Part(name, kind, np.asarray(centre, float), np.asarray(radii, float),
                np.eye(3) if rotation is None else rotation, np.clip(np.asarray(colour, float), 0, 1), **kw)


def surface_point(part: Part, direction) -> np.ndarray:
    """The point of the part's surface in local unit-sphere direction ``direction``."""
    q = np.asarray(direction, float)
    q = q / np.linalg.norm(q)
    return part.centre + part.rotation @ (part.radii * q)


def _front_z(skull: Part, x: float, y: float) -> float:
    """z of the skull's front surface at head (x, y)."""
    u = ((x - skull.centre[0]) / skull.radii[0]) ** 2 + ((y - skull.centre[1]) / skull.radii[1]) ** 2
    return skull.centre[2] - skull.radii[2] * np.sqrt(max(1.0 - u, 0.0))


_SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.89, 0.68, 0.55], [0.76, 0.55, 0.40],
                        [0.55, 0.38, 0.26], [0.36, 0.24, 0.16]])
_HAIR_COLOURS = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.50, 0.33, 0.16],
                          [0.80, 0.65, 0.40], [0.55, 0.20, 0.08], [0.62, 0.62, 0.62]])
_IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.25, 0.40, 0.60], [0.30, 0.45, 0.25]])


def random_head(rng: np.random.Generator) -> Head:
    """Draw one identity: sizes, feature placement, skin/hair/iris colours, hair style."""
    u = rng.uniform
    mix = u(0, 1)
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * (1 - 0.3 * mix) + 0.3 * mix * _SKIN_TONES[
        rng.integers(len(_SKIN_TONES))]
    skin = np.clip(tone * u(0.92, 1.08, 3), 0, 1)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2)
    skull = _part("skull", SKIN, [0, -12, 4], [u(70, 80), u(95, 108), u(92, 102)], skin)
    jaw_w = u(54, 66)
    jaw = _part("jaw", SKIN, [0, u(30, 40), u(-28, -20)], [jaw_w, u(56, 66), u(62, 70)], skin)
    parts = [skull, jaw]

    eye_x, eye_y = u(29, 35), u(-16, -8)
    eye_r = [u(13, 16), u(5.5, 7.5), 6.0]
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * u(0.7, 1.2)
    brow_y, brow_tilt = eye_y - u(14, 20), u(-12, 2)
    brow_r = [u(15, 20), u(2.5, 4.5), 5.0]
    ear_r, ear_y, ear_z = [u(7, 10), u(26, 33), u(15, 20)], u(-8, 2), u(6, 14)
    for side, sign in (("r", -1), ("l", 1)):  # mirror-symmetric: the flip tests rely on it
        x = sign * eye_x
        parts.append(_part(f"eye_{side}", EYE, [x, eye_y, _front_z(skull, x, eye_y) + 4.0], eye_r,
                           [0.93, 0.92, 0.88], rotation=_rot(0, -sign * 18, 0), detail=iris))
        parts.append(_part(f"brow_{side}", BROW, [x, brow_y, _front_z(skull, x, brow_y) + 1.5], brow_r,
                           hair * 0.8, rotation=_rot(0, -sign * 18, sign * brow_tilt)))
        parts.append(_part(f"ear_{side}", SKIN, [sign * (skull.radii[0] - 4), ear_y, ear_z], ear_r,
                           skin * 0.93, rotation=_rot(0, sign * 20, 0)))

    nose_y = u(8, 16)
    nose_len = u(22, 29)
    parts.append(_part("nose", SKIN, [0, nose_y, _front_z(skull, 0, nose_y) + u(2, 5)],
                       [u(9, 13), nose_len, u(12, 17)], skin * 0.98, rotation=_rot(-u(14, 24), 0, 0)))
    mouth_y = u(44, 52)
    parts.append(_part("lips", LIPS, [0, mouth_y, _front_z(jaw, 0, mouth_y) + 3.0],
                       [u(20, 27), u(7, 11), 7.0], skin * np.array([1.05, 0.68, 0.68]) * u(0.85, 1.0)))
    parts.append(_part("neck", SKIN, [0, 105, 25], [u(44, 52), 70, u(44, 52)], skin * 0.85))
    if u(0, 1) > 0.06:  # a few are bald
        front = -skull.radii[1] * u(0.45, 0.65) + skull.centre[1]
        back = u(10, 95)  # short ... long hair
        parts.append(_part("hair", HAIR, skull.centre + [0, -u(2, 8), u(2, 8)],
                           skull.radii * [u(1.04, 1.12), u(1.03, 1.08), u(1.04, 1.12)], hair,
                           hairline=(front, back)))
    return Head(tuple(parts))


def _ring(part: Part, phis, qz: float, sx: float = 1.0, sy: float = 1.0) -> list[np.ndarray]:
    return [surface_point(part, [sx * np.cos(f), sy * np.sin(f), qz]) for f in phis]


def landmarks_68(head: Head) -> np.ndarray:
    """(68, 3) iBUG-order landmarks in the head frame (subject's right = image left first)."""
    skull, jaw, nose, lips = (head.part(n) for n in ("skull", "jaw", "nose", "lips"))
    pts = []
    for k in range(17):  # jaw line: ear level on the skull, down round the jaw to the chin
        theta = np.pi * k / 16
        part = skull if k in (0, 16) else jaw
        pts.append(surface_point(part, [-np.cos(theta), 1.1 * np.sin(theta) - 0.15, -0.55 * np.sin(theta) - 0.3]))
    for side in ("r", "l"):
        brow = head.part(f"brow_{side}")
        pts += [surface_point(brow, [s, -0.3, -0.8]) for s in np.linspace(-0.85, 0.85, 5)]
    eye_top = head.part("eye_r").centre[1]
    pts.append(np.array([0.0, eye_top, _front_z(skull, 0.0, eye_top)]))
    pts += [surface_point(nose, q) for q in ([0, -0.7, -0.7], [0, -0.15, -1], [0, 0.45, -0.9])]
    pts += [surface_point(nose, [x, 0.75, -0.45 + 0.25 * abs(x)]) for x in (-0.8, -0.45, 0, 0.45, 0.8)]
    eye_phis = np.pi * np.array([1, 4 / 3, 5 / 3, 2, 1 / 3, 2 / 3])
    for side in ("r", "l"):  # outer/inner corner, upper lid, inner/outer corner, lower lid
        pts += _ring(head.part(f"eye_{side}"), eye_phis, -0.45)
    outer = np.pi * np.array([1, 7 / 6, 8 / 6, 9 / 6, 10 / 6, 11 / 6, 2, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    pts += _ring(lips, outer, -0.45)
    inner = np.pi * np.array([1, 5 / 4, 6 / 4, 7 / 4, 2, 1 / 4, 2 / 4, 3 / 4])
    pts += _ring(lips, inner, -0.9, sx=0.8, sy=0.12)
    return np.array(pts)


def aflw21(head: Head, lm68: np.ndarray) -> np.ndarray:
    """(21, 3) AFLW points: from the 68, plus eye centres, mouth centre and ear lobes."""
    extra = {
        "eye_r_centre": surface_point(head.part("eye_r"), [0, 0, -1]),
        "eye_l_centre": surface_point(head.part("eye_l"), [0, 0, -1]),
        "mouth_centre": (lm68[62] + lm68[66]) / 2,
        "ear_r": surface_point(head.part("ear_r"), [0, 0.9, -0.4]),
        "ear_l": surface_point(head.part("ear_l"), [0, 0.9, -0.4]),
    }
    return np.array([extra[i] if isinstance(i, str) else lm68[i] for i in AFLW21_FROM_68])
