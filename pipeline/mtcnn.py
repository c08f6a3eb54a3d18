"""MTCNN face detector (Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded
Convolutional Networks", 2016) in PyTorch, with the pretrained P-, R- and O-Net weights that the
`mtcnn` wheel (MIT licence) ships in ``mtcnn/assets/weights/*.lz4``: lists of Keras arrays read
with joblib. The package's own TensorFlow code is never imported, so nothing is downloaded.

Facts of that port this module relies on: inputs are RGB, NHWC, ``(pixel - 127.5) / 128``, not
transposed; Keras "same" max-pooling pads at the bottom/right first; R-Net and O-Net flatten
their last feature map in (width, height, channel) order; each head lists box regression
(dx1, dy1, dx2, dy2, in box widths/heights) before the face probability.

The cascade: an image pyramid through the fully convolutional P-Net (12 px cells, stride 2),
then R-Net on 24 px and O-Net on 48 px crops of the surviving boxes, each stage thresholding the
face probability, regressing the boxes and suppressing overlaps (IoU, torchvision's nms).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from .errors import PipelineError
from .image import crop_box

MIN_FACE = 20                    # pixels
PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.8)     # P-, R-, O-Net face probability (the published cascade's; O-Net's: min_score)
NMS_IOU = (0.5, 0.7, 0.7, 0.7)   # P-Net per scale, P-Net over scales, R-Net, O-Net


class DetectorWeightsError(PipelineError):
    pass


def _weights(name: str) -> list[np.ndarray]:
    spec = importlib.util.find_spec("mtcnn")
    path = Path(spec.origin).parent / "assets" / "weights" / f"{name}.lz4" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DetectorWeightsError("the MTCNN weights come with the `mtcnn` package: "
                                   'pip install -e ".[deploy]" (or use the haar detector)')
    import joblib
    return joblib.load(path)


def _conv(kernel: np.ndarray, bias: np.ndarray) -> nn.Conv2d:
    kh, kw, cin, cout = kernel.shape                  # Keras HWIO -> PyTorch OIHW
    conv = nn.Conv2d(cin, cout, (kh, kw))
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()
    conv.bias.data = torch.from_numpy(bias).float()
    return conv


def _prelu(alpha: np.ndarray) -> nn.PReLU:
    act = nn.PReLU(alpha.size)
    act.weight.data = torch.from_numpy(alpha.reshape(-1)).float()
    return act


def _dense(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    layer = nn.Linear(*weight.shape)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(weight.T)).float()
    layer.bias.data = torch.from_numpy(bias).float()
    return layer


def _pool_same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Keras/TF "same" max-pooling: output ceil(n / s), the padding's extra row/column at the end."""
    pads = []
    for n in (x.shape[3], x.shape[2]):                # F.pad order: width, then height
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), k, s)


class PNet(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.convs = nn.ModuleList([_conv(w[0], w[1]), _conv(w[3], w[4]), _conv(w[6], w[7])])
        self.acts = nn.ModuleList([_prelu(w[2]), _prelu(w[5]), _prelu(w[8])])
        self.box, self.face = _conv(w[9], w[10]), _conv(w[11], w[12])

    def forward(self, x):
        x = self.acts[0](self.convs[0](x))
        x = _pool_same(x, 2, 2)
        x = self.acts[2](self.convs[2](self.acts[1](self.convs[1](x))))
        return self.box(x), torch.softmax(self.face(x), dim=1)[:, 1]


class _HeadNet(nn.Module):
    """R-Net and O-Net: conv/PReLU/pool blocks, (W, H, C) flatten, dense + PReLU, heads."""

    def __init__(self, w, pools, n_convs):
        super().__init__()
        self.convs = nn.ModuleList([_conv(w[3 * i], w[3 * i + 1]) for i in range(n_convs)])
        self.acts = nn.ModuleList([_prelu(w[3 * i + 2]) for i in range(n_convs)])
        self.pools = pools                                 # (kernel, stride, same) after conv i, or None
        k = 3 * n_convs
        self.dense, self.dense_act = _dense(w[k], w[k + 1]), _prelu(w[k + 2])
        self.box, self.face = _dense(w[k + 3], w[k + 4]), _dense(w[-2], w[-1])

    def forward(self, x):
        for conv, act, pool in zip(self.convs, self.acts, self.pools):
            x = act(conv(x))
            if pool is not None:
                k, s, same = pool
                x = _pool_same(x, k, s) if same else F.max_pool2d(x, k, s)
        x = self.dense_act(self.dense(x.permute(0, 3, 2, 1).flatten(1)))
        return self.box(x), torch.softmax(self.face(x), dim=1)[:, 1]


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes + offsets * size


def _square(boxes: np.ndarray) -> np.ndarray:
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _keep(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    if not len(boxes):
        return np.zeros(0, np.int64)
    return nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), iou).numpy()


def _normalise(images: np.ndarray) -> torch.Tensor:
    """NHWC uint8 RGB -> NCHW float32, (pixel - 127.5) / 128."""
    return torch.from_numpy(np.ascontiguousarray(((images.astype(np.float32) - 127.5) / 128).transpose(0, 3, 1, 2)))


class MTCNN:
    """``detector(rgb_image)`` -> [(box (x1, y1, x2, y2), face probability)], best first; a box
    needs O-Net's probability above ``min_score`` (the project's default: ``relabel.mtcnn.min_score``)."""

    def __init__(self, min_face: int = MIN_FACE, min_score: float = THRESHOLDS[2]):
        self.min_face, self.thresholds = min_face, THRESHOLDS[:2] + (min_score,)
        self.pnet = PNet(_weights("pnet")).eval()
        self.rnet = _HeadNet(_weights("rnet"), [(3, 2, True), (3, 2, False), None], 3).eval()
        self.onet = _HeadNet(_weights("onet"), [(3, 2, True), (3, 2, False), (2, 2, True), None], 4).eval()

    def _proposals(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        scale, boxes, scores = 12.0 / self.min_face, [], []
        while min(h, w) * scale >= 12:
            size = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
            offsets, prob = self.pnet(_normalise(cv2.resize(image, size, interpolation=cv2.INTER_AREA)[None]))
            i, j = np.nonzero(prob[0].numpy() > self.thresholds[0])
            if len(i):
                cells = np.stack([2 * j, 2 * i, 2 * j + 12, 2 * i + 12], axis=1) / scale
                b = _regress(cells, offsets[0].numpy()[:, i, j].T)
                s = prob[0].numpy()[i, j]
                kept = _keep(cells, s, NMS_IOU[0])
                boxes.append(b[kept])
                scores.append(s[kept])
            scale *= PYRAMID_FACTOR
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0)
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        kept = _keep(boxes, scores, NMS_IOU[1])
        return _square(boxes[kept]), scores[kept]

    def _refine(self, net, image, boxes, size, threshold, iou) -> tuple[np.ndarray, np.ndarray]:
        if not len(boxes):
            return boxes, np.zeros(0)
        crops = np.stack([crop_box(image, tuple(b), size, size) for b in boxes])
        offsets, prob = net(_normalise(crops))
        prob = prob.numpy()
        mask = prob > threshold
        boxes, prob = _regress(boxes[mask], offsets.numpy()[mask]), prob[mask]
        kept = _keep(boxes, prob, iou)
        return boxes[kept], prob[kept]

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
        boxes, _ = self._proposals(image)
        boxes, _ = self._refine(self.rnet, image, boxes, 24, self.thresholds[1], NMS_IOU[2])
        boxes, scores = self._refine(self.onet, image, _square(boxes), 48, self.thresholds[2], NMS_IOU[3])
        return [(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores)]
