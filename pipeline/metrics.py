"""Mean absolute error of head-pose predictions: per angle and mean, per head, per dataset
(the numbers of the paper's tables). Angles in degrees, (pitch, yaw, roll)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import bins
from .data import PoseDataset
from .manifest import Sample
from .pose import ANGLE_NAMES


def mae_summary(pred, target) -> dict[str, float]:
    """{"pitch", "yaw", "roll", "mae"}: mean |pred - target| per angle and their mean."""
    err = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64))
    per_angle = err.reshape(-1, 3).mean(axis=0)
    return {**{n: float(v) for n, v in zip(ANGLE_NAMES, per_angle)}, "mae": float(per_angle.mean())}


def decode_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw head outputs -> degrees: eq. 3 for "reg", eq. 2 for the RvC heads."""
    return {name: bins.decode_regression(out.float()) if name == "reg"
            else bins.decode_logits(out, int(name[1:])) for name, out in outputs.items()}


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: PoseDataset, batch_size: int = 64,
                    device: str | torch.device = "cpu", workers: int = 0) -> tuple[dict, np.ndarray]:
    """({head: (N, 3) degrees}, (N, 3) labels) for every item of ``dataset``, in order."""
    was_training = model.training
    model.eval()
    preds, poses = defaultdict(list), []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    for batch in loader:
        for name, angles in decode_outputs(model(batch["image"].to(device))).items():
            preds[name].append(angles.cpu().double().numpy())
        poses.append(batch["pose"].double().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in preds.items()}, np.concatenate(poses).reshape(-1, 3)


def evaluate(model: torch.nn.Module, samples: Sequence[Sample], batch_size: int = 64,
             device: str | torch.device = "cpu", workers: int = 0) -> dict:
    """{dataset: {head: mae_summary}} over ``samples`` (crop to box, no augmentation)."""
    dataset = PoseDataset(samples, model.input_size)
    preds, poses = predict_dataset(model, dataset, batch_size, device, workers)
    names = np.array([s.dataset for s in samples])
    return {name: {head: mae_summary(p[names == name], poses[names == name]) for head, p in preds.items()}
            for name in sorted(set(names))}


def trivial_mae(train_poses, target_poses) -> dict[str, float]:
    """The baseline every model must beat: always predict the mean training pose."""
    mean = np.asarray(train_poses, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    target = np.asarray(target_poses, dtype=np.float64).reshape(-1, 3)
    return mae_summary(np.broadcast_to(mean, target.shape), target)
