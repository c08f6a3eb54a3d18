"""Drawing pose axes on images (contact sheets, augmentation grids, figure 7)."""
from __future__ import annotations

import cv2
import numpy as np

from .pose import axes_2d

AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # RGB: head x red, y green, nose blue


def draw_axes(image: np.ndarray, pose, centre=None, size: float | None = None,
              thickness: int = 2) -> np.ndarray:
    """Draw the head axes of ``pose`` on a copy of an RGB image (y down, orthographic)."""
    out = image.copy()
    h, w = out.shape[:2]
    cx, cy = centre if centre is not None else (w / 2.0, h / 2.0)
    size = size if size is not None else min(h, w) / 3.0
    for (dx, dy), colour in zip(axes_2d(pose, size), AXIS_COLOURS):
        cv2.line(out, (int(round(cx)), int(round(cy))), (int(round(cx + dx)), int(round(cy + dy))),
                 colour, thickness, cv2.LINE_AA)
    return out


FONT, FONT_SCALE, LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 14   # LINE: pixels per line of text
WHITE, INK = (255, 255, 255), (20, 20, 20)


def _text_band(width: int, lines, background=WHITE) -> np.ndarray:
    """A strip ``width`` pixels wide holding ``lines`` of text (cut to fit), one per LINE pixels."""
    band = np.full((LINE * len(lines) + 4, width, 3), background, np.uint8)
    for i, line in enumerate(lines):
        while line and cv2.getTextSize(line, FONT, FONT_SCALE, 1)[0][0] > width - 4:
            line = line[:-1]
        cv2.putText(band, line, (2, LINE * (i + 1) - 2), FONT, FONT_SCALE, INK, 1, cv2.LINE_AA)
    return band


def _centred(band: np.ndarray, height: int) -> np.ndarray:
    """``band`` centred vertically in a white block ``height`` pixels high (cut if taller)."""
    out = np.full((height, band.shape[1], 3), WHITE, np.uint8)
    top = max(0, (height - band.shape[0]) // 2)
    part = band[:height - top]
    out[top:top + len(part)] = part
    return out


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with a line of text below it."""
    return np.vstack([image, _text_band(image.shape[1], [text])])


def grid(images, columns: int, row_labels=None, column_labels=None, legend=()) -> np.ndarray:
    """Tile equally sized HxWx3 images into a grid (missing cells black), with optional labels:
    ``column_labels`` above the columns, ``row_labels`` in a band left of the rows, and
    ``legend`` lines below the sheet."""
    images = list(images)
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    if column_labels:
        sheet = np.vstack([np.hstack([_text_band(w, [label]) for label in column_labels][:columns]
                                     + [_text_band(w, [""])] * max(0, columns - len(column_labels))), sheet])
    if row_labels:
        cells = [_text_band(max(w // 2, 96), str(label).split("\n")) for label in row_labels[:rows]]
        cells += [_text_band(cells[0].shape[1], [""])] * (rows - len(cells))
        band = np.vstack([np.full((sheet.shape[0] - rows * h, cells[0].shape[1], 3), WHITE, np.uint8)]
                         + [_centred(cell, h) for cell in cells])
        sheet = np.hstack([band, sheet])
    if legend:
        sheet = np.vstack([sheet, _text_band(sheet.shape[1], list(legend))])
    return sheet


def save_figure(fig, path) -> None:
    """A matplotlib figure as a PNG at ``path`` (100 dpi, written atomically); closes the figure."""
    import io

    import matplotlib.pyplot as plt

    from .files import atomic_write_bytes
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
