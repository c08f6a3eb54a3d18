"""Contact sheet: samples of each synthetic set READ BACK from the written files (images,
.mat / pose.txt labels, box files) with their pose axes, boxes and landmarks drawn, so a
person can see that the labels fit the faces."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from ..boxes import read_box_json
from ..datasets import biwi
from ..draw import draw_axes, grid
from ..pose import pose_from_biwi_matrix, pose_from_pose_para

TILE = 128


def read_biwi_pose(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pose degrees, translation mm) from a BIWI ``frame_XXXXX_pose.txt``."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(rows) != 4 or any(len(r) != 3 for r in rows):
        raise ValueError(f"{path}: expected 3 rotation rows and 1 translation row of 3 numbers")
    values = np.array(rows, dtype=np.float64)
    return pose_from_biwi_matrix(values[:3]), values[3]


def _tile(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = TILE / max(h, w)
    small = cv2.resize(rgb, (max(int(round(w * k)), 1), max(int(round(h * k)), 1)), interpolation=cv2.INTER_AREA)
    out = np.zeros((TILE, TILE, 3), np.uint8)
    y0, x0 = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


def _annotated(image_path: Path, pose, box, points) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    x1, y1, x2, y2 = box
    cv2.rectangle(rgb, (int(x1), int(y1)), (int(x2), int(y2)), (255, 255, 0), 1)
    for x, y in points:
        if x >= 0 and y >= 0:
            cv2.circle(rgb, (int(round(x)), int(round(y))), 0, (255, 255, 255), -1)
    return draw_axes(rgb, pose, centre=((x1 + x2) / 2, (y1 + y2) / 2), size=(x2 - x1) * 0.6, thickness=1)


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def contact_sheet(root: Path, per_set: int = 24, columns: int = 12) -> np.ndarray:
    """HxWx3 RGB sheet: ``per_set`` samples of 300W_LP, AFLW2000 and BIWI, one labelled block each."""
    blocks = {}
    for dataset in ("300W_LP", "AFLW2000"):
        boxes = read_box_json(root / "boxes" / f"{dataset}.json")
        blocks[dataset] = []
        for mat_path in _spread(sorted((root / dataset).rglob("*.mat")), per_set):
            mat = scipy.io.loadmat(mat_path)
            rel = mat_path.relative_to(root / dataset).with_suffix(".jpg").as_posix()
            blocks[dataset].append(_tile(_annotated(mat_path.with_suffix(".jpg"), pose_from_pose_para(mat["Pose_Para"]),
                                                    boxes[rel][0].bbox, mat["pt2d"].T)))
    boxes = read_box_json(root / "boxes" / "BIWI.json")
    images = root / "BIWI" / biwi.IMAGES_DIR
    blocks["BIWI"] = []
    for pose_path in _spread(sorted(images.rglob("*_pose.txt")), per_set):
        image_path = pose_path.with_name(pose_path.name.replace("_pose.txt", "_rgb.png"))
        rel = image_path.relative_to(images).as_posix()
        blocks["BIWI"].append(_tile(_annotated(image_path, read_biwi_pose(pose_path)[0], boxes[rel][0].bbox, [])))
    tiles, labels = [], []
    for dataset, block in blocks.items():
        rows = -(-len(block) // columns)
        tiles += block + [np.zeros((TILE, TILE, 3), np.uint8)] * (rows * columns - len(block))
        labels += [dataset] * rows
    if not tiles:
        raise ValueError(f"{root}: no samples to put on a contact sheet")
    return grid(tiles, columns, row_labels=labels,
                legend=["yellow: the face box of the published box file; white dots: 2D landmarks",
                        "axes: the label's pose, x red, y green, nose (z) blue"])
