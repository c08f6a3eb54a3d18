"""Writers of tiny datasets in the REAL on-disk formats (300W-LP / AFLW2000 ``.mat``, BIWI
``hpdb`` folders with ``_pose.txt``, the AFLW sqlite tables, published JSON box files).
Poses are given in the raw units of each format, so the tests check our conversions."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import scipy.io
from PIL import Image


def write_image(path: Path, width: int = 48, height: int = 40, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def face_landmarks(x1: float, y1: float, x2: float, y2: float, count: int = 68) -> np.ndarray:
    """2 x count points spanning exactly the box (x1, y1, x2, y2), as ``pt2d`` stores them."""
    t = np.linspace(0.0, 1.0, count)
    xs = x1 + (x2 - x1) * t
    ys = y1 + (y2 - y1) * t[::-1]
    return np.stack([xs, ys])


def write_3ddfa(image_path: Path, pose_para_rad: Optional[Sequence[float]],
                pt2d: Optional[np.ndarray], width: int = 48, height: int = 40,
                extra: Optional[dict] = None) -> Path:
    """A 300W-LP / AFLW2000 pair: the jpg and its same-stem .mat (Pose_Para 1x7 radians
    first, then scale and translation; pt2d 2xK). None leaves the variable out."""
    write_image(image_path, width, height, seed=len(image_path.name))
    mat = dict(extra or {})
    if pose_para_rad is not None:
        mat["Pose_Para"] = np.array([[*pose_para_rad, 0.001, 100.0, 120.0, 10.0]], dtype=np.float32)
    if pt2d is not None:
        mat["pt2d"] = np.asarray(pt2d, dtype=np.float64)
    scipy.io.savemat(str(image_path.with_suffix(".mat")), mat)
    return image_path


def pose_txt(matrix: np.ndarray, translation: Sequence[float]) -> str:
    """The real BIWI layout: 3 rotation rows, a blank line, the translation; trailing spaces."""
    rows = ["".join(f"{v:.6f} " for v in row) for row in np.asarray(matrix)]
    return "\n".join(rows) + "\n\n" + "".join(f"{v:.4f} " for v in translation) + "\n"


def write_biwi_frame(root: Path, subject: str, frame: int, matrix: np.ndarray,
                     translation: Sequence[float] = (10.0, 20.0, 900.0),
                     width: int = 64, height: int = 48) -> Path:
    folder = root / "BIWI" / "hpdb" / subject
    image = write_image(folder / f"frame_{frame:05d}_rgb.png", width, height, seed=frame)
    (folder / f"frame_{frame:05d}_pose.txt").write_text(pose_txt(matrix, translation))
    return image


def write_aflw(root: Path, faces: Iterable[dict], image_size: tuple[int, int] = (64, 48),
               extra_images: Sequence[str] = ()) -> Path:
    """AFLW database with the real tables. Each face: face_id, filepath (relative to
    flickr/), pose (roll, pitch, yaw radians) or None, rect (x, y, w, h) or None, and
    optional coords {feature_id: (x, y)}. Images are written for every filepath."""
    folder = root / "AFLW"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "aflw.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE FaceImages(image_id INTEGER PRIMARY KEY, db_id TEXT, file_id TEXT,
                                filepath TEXT, bw INTEGER, width INTEGER, height INTEGER);
        CREATE TABLE Faces(face_id INTEGER PRIMARY KEY, file_id TEXT, db_id TEXT);
        CREATE TABLE FacePose(face_id INTEGER, roll REAL, pitch REAL, yaw REAL,
                              annot_type_id INTEGER);
        CREATE TABLE FaceRect(face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER,
                              annot_type_id INTEGER);
        CREATE TABLE FeatureCoords(face_id INTEGER, feature_id INTEGER, x REAL, y REAL);
    """)
    faces = list(faces)
    paths = sorted({f["filepath"] for f in faces} | set(extra_images))
    width, height = image_size
    for image_id, filepath in enumerate(paths, start=1):
        file_id = Path(filepath).name
        con.execute("INSERT INTO FaceImages VALUES (?, 'flickr', ?, ?, 0, ?, ?)",
                    (image_id, file_id, filepath, width, height))
        write_image(folder / "flickr" / filepath, width, height, seed=image_id)
    for face in faces:
        fid = face["face_id"]
        con.execute("INSERT INTO Faces VALUES (?, ?, 'flickr')", (fid, Path(face["filepath"]).name))
        if face.get("pose") is not None:
            con.execute("INSERT INTO FacePose VALUES (?, ?, ?, ?, 1)", (fid, *face["pose"]))
        if face.get("rect") is not None:
            con.execute("INSERT INTO FaceRect VALUES (?, ?, ?, ?, ?, 1)", (fid, *face["rect"]))
        for feature_id, (x, y) in sorted(face.get("coords", {}).items()):
            con.execute("INSERT INTO FeatureCoords VALUES (?, ?, ?, ?)", (fid, feature_id, x, y))
    con.commit()
    con.close()
    return db


def write_box_json(path: Path, entries: dict[str, list[dict]]) -> Path:
    """Published box file: {"relative/file.jpg": [{"bbox": [...], "type"?, "faceid"?}]}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path
