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


def grid(images, columns: int) -> np.ndarray:
    """Tile equally sized HxWx3 images into a grid (missing cells black)."""
    images = list(images)
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
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
