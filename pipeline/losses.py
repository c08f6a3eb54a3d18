"""Training losses. A loss is ``loss_fn(outputs, batch) -> (scalar tensor, {name: float})``
so the training engine can take any of them (stage 1 here, distillation later)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import bins


def rvc_cross_entropy(logits: torch.Tensor, pose: torch.Tensor, bin_size: int) -> torch.Tensor:
    """Eq. 4, L^(j): cross-entropy of one RvC head summed over the three angles (batch mean).

    logits (B, 3, q), pose (B, 3) degrees; the target class is the bin holding the angle.
    """
    target = bins.angle_to_class(pose, bin_size)                      # (B, 3)
    per_angle = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, 3)
    return per_angle.sum(dim=1).mean()


def regression_mae(raw: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Eq. 4, L^reg: MAE (mean over angles and batch, degrees) of 99 tanh(out) (eq. 3)."""
    return (bins.decode_regression(raw.float()) - pose.float()).abs().mean()


def teacher_loss(outputs: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict]:
    """Paper eq. 4: (L^reg + sum_j L^(j)) / (M + 1) over the heads present in ``outputs``
    ("reg" and the RvC heads "b1".."b4"); ``batch["pose"]`` is (B, 3) degrees."""
    pose = batch["pose"]
    parts = {}
    if "reg" in outputs:
        parts["reg"] = regression_mae(outputs["reg"], pose)
    for name, logits in outputs.items():
        if name != "reg":
            parts[name] = rvc_cross_entropy(logits, pose, int(name[1:]))
    total = sum(parts.values()) / len(parts)
    return total, {f"loss_{k}": float(v.detach()) for k, v in parts.items()}


def distillation_loss(outputs: dict[str, torch.Tensor], batch: dict, w_cls: float = 0.05,
                      head: str = "b1") -> tuple[torch.Tensor, dict]:
    """Paper eq. 7: (w_cls * CE(ground truth) + KL(ensemble || student)) / 2 for the student's
    single RvC head; CE and KL are each summed over the three angles (batch mean).

    ``batch["pose"]`` (B, 3) degrees, ``batch["teacher"]`` (B, 3, q) the ensemble distribution
    of eq. 6 for the student's crop (from the cache, see :mod:`pipeline.distill`)."""
    logits = outputs[head].float()
    ce = rvc_cross_entropy(logits, batch["pose"], int(head[1:]))
    teacher = batch["teacher"].float()
    # KL(P || Q) = sum P (log P - log Q); kl_div takes log Q and P, and gives 0 where P = 0
    kl = F.kl_div(torch.log_softmax(logits, dim=-1), teacher, reduction="none").sum(dim=(1, 2)).mean()
    total = (w_cls * ce + kl) / 2
    return total, {"loss_ce": float(ce.detach()), "loss_kl": float(kl.detach())}
