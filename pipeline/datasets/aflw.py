"""AFLW reader: ``<root>/AFLW/aflw.sqlite`` and the images under ``<root>/AFLW/flickr/``.

Tables used (real schema): FaceImages(image_id, db_id, file_id, filepath, bw, width, height),
Faces(face_id, file_id, db_id), FacePose(face_id, roll, pitch, yaw, annot_type_id),
FaceRect(face_id, x, y, w, h, annot_type_id), FeatureCoords(face_id, feature_id, x, y).
``filepath`` is relative to ``flickr/`` (``0/image00002.jpg``). One sample per face; key
``AFLW/flickr/<filepath without .jpg>#<face_id>``. Box = FaceRect (x, y, w, h); where a face
has several pose or rect rows, the one with the smallest annot_type_id is used. Landmarks:
the 21 AFLW points by feature_id, -1 where a point is not annotated.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np

from .. import pose as posemod
from ..manifest import Sample
from .common import (BadItem, DatasetError, Record, checked_pose, image_size, make_key,
                     read_in_order)

NAME = "AFLW"
DB_NAME = "aflw.sqlite"
IMAGES_DIR = "flickr"
NUM_FEATURES = 21


@dataclass(frozen=True)
class FaceRow:
    face_id: int
    filepath: str                                  # relative to flickr/
    pose: Optional[tuple[float, float, float]]     # FacePose (roll, pitch, yaw) radians
    rect: Optional[tuple[float, float, float, float]]  # FaceRect (x, y, w, h)
    landmarks: np.ndarray                          # (NUM_FEATURES, 2), -1 = missing


def _query(db_path: Path, sql: str) -> list[tuple]:
    if not db_path.is_file():
        raise DatasetError(f"{db_path}: AFLW database not found")
    try:
        con = sqlite3.connect(f"file:{db_path.resolve().as_posix()}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise DatasetError(f"{db_path}: cannot read the AFLW tables ({exc})") from None


def _first_per_face(rows: list[tuple]) -> dict[int, tuple]:
    out: dict[int, tuple] = {}
    for face_id, *values in rows:            # rows come ordered by face_id, annot_type_id
        out.setdefault(int(face_id), tuple(values))
    return out


def list_faces(data_root: str | Path) -> list[FaceRow]:
    """All faces of the database, sorted by (image filepath, face_id)."""
    db = Path(data_root) / NAME / DB_NAME
    images = _query(db, "SELECT f.face_id, i.filepath FROM Faces f JOIN FaceImages i "
                        "ON i.file_id = f.file_id ORDER BY f.face_id, i.image_id")
    poses = _first_per_face(_query(db, "SELECT face_id, roll, pitch, yaw FROM FacePose "
                                       "ORDER BY face_id, annot_type_id"))
    rects = _first_per_face(_query(db, "SELECT face_id, x, y, w, h FROM FaceRect "
                                       "ORDER BY face_id, annot_type_id"))
    coords: dict[int, np.ndarray] = {}
    for face_id, feature_id, x, y in _query(db, "SELECT face_id, feature_id, x, y "
                                                "FROM FeatureCoords ORDER BY face_id, feature_id"):
        if 1 <= int(feature_id) <= NUM_FEATURES:
            pts = coords.setdefault(int(face_id), np.full((NUM_FEATURES, 2), -1.0))
            pts[int(feature_id) - 1] = (x, y)
    faces = []
    for face_id, (filepath,) in _first_per_face(images).items():
        if filepath is None:
            raise DatasetError(f"{db}: face {face_id} has no image filepath")
        faces.append(FaceRow(face_id, str(filepath).replace("\\", "/"), poses.get(face_id),
                             rects.get(face_id),
                             coords.get(face_id, np.full((NUM_FEATURES, 2), -1.0))))
    if not faces:
        raise DatasetError(f"{db}: no faces in the database")
    return sorted(faces, key=lambda f: (f.filepath, f.face_id))


def first_images(data_root: str | Path, count: int = 2000) -> set[str]:
    """Protocol 2 test images (filepaths): the first ``count`` .jpg FaceImages, ordered by file name
    (the basename, e.g. ``image00002.jpg``; ties broken by the full filepath). These are
    the images AFLW2000 was taken from."""
    db = Path(data_root) / NAME / DB_NAME
    paths = {str(p).replace("\\", "/") for (p,) in _query(db, "SELECT filepath FROM FaceImages")
             if p is not None and str(p).lower().endswith(".jpg")}
    ordered = sorted(paths, key=lambda p: (PurePosixPath(p).name, p))
    return set(ordered[:count])


def read_face(dataset_dir: Path, face: FaceRow) -> Record:
    image = dataset_dir / IMAGES_DIR / face.filepath
    size = image_size(image)
    where = f"{dataset_dir / DB_NAME} (face {face.face_id})"
    if face.pose is None:
        raise DatasetError(f"{where}: no FacePose row")
    roll, pitch, yaw = (np.nan if v is None else float(v) for v in face.pose)
    pose = checked_pose(posemod.pose_from_aflw(pitch, yaw, roll), where)
    box = None
    if face.rect is not None and None not in face.rect:
        x, y, w, h = (float(v) for v in face.rect)
        box = (x, y, x + w, y + h)
    rel = f"{IMAGES_DIR}/{face.filepath}"
    sample = Sample(key=make_key(NAME, rel, face.face_id), dataset=NAME, image=str(image),
                    pose=pose, box=box, subject=str(face.face_id), landmarks=face.landmarks)
    return Record(sample, rel, size)


def read(data_root: str | Path, workers: int = 1) -> tuple[list[Record], list[BadItem]]:
    folder = Path(data_root) / NAME
    return read_in_order(list_faces(data_root), lambda f: read_face(folder, f),
                         lambda f: f"{NAME} face {f.face_id}", desc=NAME, workers=workers)
