"""``pipeline predict``: images, folders, video files and cameras through a
:class:`pipeline.predict.PoseEstimator`, one row per face to CSV or JSON, optionally annotated
copies (pose axes and box). A file that cannot be read, a frame that cannot be decoded and an
image without a face are counted and reported, never fatal."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .draw import draw_axes
from .files import atomic_write_bytes, output_folder
from .image import ImageError, load_rgb
from .pose import rotation_from_pose
from .predict import Face, PoseEstimator, PredictError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
COLUMNS = ["source", "frame", "x1", "y1", "x2", "y2", "score", "pitch", "yaw", "roll"]
MATRIX_COLUMNS = [f"r{i}{j}" for i in range(3) for j in range(3)]


@dataclass
class Summary:
    frames: int = 0
    faces: int = 0
    no_face: int = 0
    unreadable: list[str] = field(default_factory=list)   # "source: why"
    other_files: int = 0           # files of the folders given that are neither images nor videos
    interrupted: bool = False

    def line(self) -> str:
        return (f"{self.frames} images/frames, {self.faces} faces, {self.no_face} without a face, "
                f"{len(self.unreadable)} unreadable" + (f" (e.g. {self.unreadable[0]})" if self.unreadable else "")
                + (f", {self.other_files} other files skipped (not an image or video suffix)" if self.other_files else "")
                + (" (stopped by Ctrl-C; the rows so far are written)" if self.interrupted else ""))


def expand(inputs: Sequence[str]) -> tuple[list[str], int]:
    """(image files, the images of folders (recursive, sorted), video files and camera indices;
    the number of other files in those folders)."""
    out, other = [], 0
    for item in inputs:
        path = Path(item)
        if item.isdigit() or path.is_file():
            out.append(item)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            media = [str(p) for p in files if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
            out, other = out + media, other + len(files) - len(media)
        else:
            raise PredictError(f"{item}: no such file, folder or camera index")
    return out, other


def _frames(source: str, summary: Summary) -> Iterator[tuple[int, Optional[np.ndarray]]]:
    """(frame index, RGB image or None when undecodable) of an image, video or camera."""
    if not source.isdigit() and Path(source).suffix.lower() not in VIDEO_SUFFIXES:
        try:
            yield 0, load_rgb(source)
        except ImageError as exc:      # names the file
            summary.unreadable.append(str(exc))
        return
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        summary.unreadable.append(f"{source}: cannot open the video or camera")
        return
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame is not None else None
            index += 1
    finally:
        capture.release()


CUBE_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
FACE_SIDE = {1, 3, 5, 7}          # corners with z = 1: the face side (towards the camera), drawn yellow


def cube_2d(pose, size: float) -> np.ndarray:
    """Image-plane offsets (8 x (dx, dy)) of the corners of a cube of side ``size`` centred on
    the head and turned with it (orthographic, y down, as :func:`pipeline.pose.axes_2d`);
    bits 2, 1, 0 of corner k give its x, y, z side, z = 1 the face side."""
    corners = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], float) - 0.5
    corners[:, 2] *= -1           # the face looks along the head's -z (the nose axis)
    return (rotation_from_pose(pose) @ corners.T)[:2].T * size


def draw_cube(image: np.ndarray, pose, centre, size: float) -> np.ndarray:
    out = image.copy()
    points = [(int(round(centre[0] + dx)), int(round(centre[1] + dy))) for dx, dy in cube_2d(pose, size)]
    for a, b in sorted(CUBE_EDGES, key=lambda edge: set(edge) <= FACE_SIDE):   # the face side on top
        colour = (255, 255, 0) if {a, b} <= FACE_SIDE else (200, 200, 200)
        cv2.line(out, points[a], points[b], colour, 1, cv2.LINE_AA)
    return out


def annotate(image: np.ndarray, faces: Sequence[Face], cube: bool = False) -> np.ndarray:
    """RGB copy with each face's box and pose axes (x red, y green, nose blue), or a cube."""
    out = image.copy()
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        pose, centre = (face.pitch, face.yaw, face.roll), ((x1 + x2) / 2, (y1 + y2) / 2)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 0), 1)
        out = draw_cube(out, pose, centre, (x2 - x1) * 0.5) if cube else \
            draw_axes(out, pose, centre=centre, size=(x2 - x1) * 0.6)
    return out


def _row(source: str, frame: int, face: Face, matrix: bool) -> dict:
    row = {"source": source, "frame": frame, **dict(zip(("x1", "y1", "x2", "y2"), face.box)),
           "score": face.score,
           "pitch": face.pitch, "yaw": face.yaw, "roll": face.roll}
    if matrix:
        row.update(zip(MATRIX_COLUMNS, face.rotation().ravel().tolist()))
    return row


def write_rows(path: Path, rows: list[dict], matrix: bool) -> None:
    if path.suffix.lower() == ".json":
        atomic_write_bytes(path, (json.dumps(rows, indent=1) + "\n").encode())
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS + (MATRIX_COLUMNS if matrix else []), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                     for r in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _annotated_name(source: str, used: set[str]) -> str:
    """A file stem for the annotated copy of ``source``, unique in this run."""
    stem = f"camera{source}" if source.isdigit() else Path(source).stem
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}-{k}", k + 1
    used.add(name)
    return name


def predict_sources(estimator: PoseEstimator, inputs: Sequence[str], out: Path,
                    annotate_dir: Optional[Path] = None, matrix: bool = False, cube: bool = False) -> Summary:
    """Every face of ``inputs`` (see :func:`expand`) into ``out`` (.csv or .json); annotated
    images (``<stem>.jpg``) and videos (``<stem>.mp4``, the source's frame rate) into
    ``annotate_dir`` (axes, or a cube). Ctrl-C (the way to stop a camera) stops the run and
    still writes every row found so far."""
    sources, other = expand(inputs)
    summary, rows, used = Summary(other_files=other), [], set()
    if out.is_dir():                   # found now, not after a long video
        raise PredictError(f"{out}: is a folder; --out takes a .csv or .json file")
    output_folder(out.parent)
    if annotate_dir is not None:
        output_folder(annotate_dir)
    try:
        for source in tqdm(sources, unit="file", desc="predict", disable=len(sources) < 2):
            is_video = source.isdigit() or Path(source).suffix.lower() in VIDEO_SUFFIXES
            total, fps = None, 25.0
            if is_video and not source.isdigit():
                capture = cv2.VideoCapture(source)
                total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
                fps = capture.get(cv2.CAP_PROP_FPS) or fps
                capture.release()
            name = _annotated_name(source, used) if annotate_dir is not None else ""
            writer = None
            try:
                with tqdm(total=total, unit="frame", desc=Path(source).name, disable=not is_video) as bar:
                    for index, image in _frames(source, summary):
                        bar.update()
                        summary.frames += 1
                        if image is None:
                            summary.unreadable.append(f"{source}: frame {index} could not be decoded")
                            continue
                        faces = estimator(image)
                        summary.faces += len(faces)
                        summary.no_face += not faces
                        rows += [_row(source, index, face, matrix) for face in faces]
                        if annotate_dir is None:
                            continue
                        drawn = cv2.cvtColor(annotate(image, faces, cube), cv2.COLOR_RGB2BGR)
                        if not is_video:
                            cv2.imwrite(str(annotate_dir / f"{name}.jpg"), drawn)
                            continue
                        if writer is None:
                            writer = cv2.VideoWriter(str(annotate_dir / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                                     fps, (drawn.shape[1], drawn.shape[0]))
                        writer.write(drawn)
            finally:
                if writer is not None:
                    writer.release()
    except KeyboardInterrupt:
        summary.interrupted = True
    write_rows(out, rows, matrix)
    return summary
