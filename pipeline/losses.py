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


def hard_label_loss(outputs: dict[str, torch.Tensor], batch: dict, head: str = "b1") -> tuple[torch.Tensor, dict]:
    """The control of eq. 7: its ground-truth cross-entropy alone (no teacher), for the
    student's single RvC head."""
    ce = rvc_cross_entropy(outputs[head].float(), batch["pose"], int(head[1:]))
    return ce, {"loss_ce": float(ce.detach())}


def assistive_term(d: torch.Tensor, r: torch.Tensor, alpha: float, alpha_inner: float,
                   beta: float) -> torch.Tensor:
    """KD-Loss's assistive term a_T per coordinate, for the student's error ``d`` = |y_hat - y|
    and the teacher's ``r`` = |t - y| (same shape): alpha (d - r) where d > r (the student is
    worse than the teacher); alpha_inner (r - d) where beta r <= d <= r (alpha_inner < 0: a
    reward for being better); 0 where d < beta r."""
    return torch.where(d > r, alpha * (d - r),
                       torch.where(d >= beta * r, alpha_inner * (r - d), torch.zeros_like(d)))


def kd_loss(student: torch.Tensor, truth: torch.Tensor, tough: torch.Tensor, tolerant: torch.Tensor,
            main_weight: float = 2.0, alpha_tough: float = 1.9, alpha_tough_inner: float = -0.45,
            alpha_tolerant: float = 1.8, alpha_tolerant_inner: float = -0.4, beta: float = 0.15
            ) -> tuple[torch.Tensor, dict]:
    """KD-Loss (Fard & Mahoor, CVIU 2022) on (B, 3) coordinates: the student's ``student``, the
    ground truth ``truth``, the tough and tolerant teachers' ``tough``, ``tolerant``.

    Per coordinate, d = |student - truth|, e = r_Tol = |tolerant - truth|; main loss
    m = 3 d if d <= e, else d^2 - e^2 + 3 e. Total = main_weight mean(m) + mean(a_Tou) + mean(a_Tol)
    (:func:`assistive_term` with r_Tou = |tough - truth| and r_Tol)."""
    d = (student - truth).abs()
    r_tough, r_tolerant = (tough - truth).abs(), (tolerant - truth).abs()
    main = torch.where(d <= r_tolerant, 3 * d, d ** 2 - r_tolerant ** 2 + 3 * r_tolerant).mean()
    a_tough = assistive_term(d, r_tough, alpha_tough, alpha_tough_inner, beta).mean()
    a_tolerant = assistive_term(d, r_tolerant, alpha_tolerant, alpha_tolerant_inner, beta).mean()
    total = main_weight * main + a_tough + a_tolerant
    return total, {"loss_main": float(main.detach()), "loss_tough": float(a_tough.detach()),
                   "loss_tolerant": float(a_tolerant.detach())}


def assistive_distillation_loss(outputs: dict[str, torch.Tensor], batch: dict, method,
                                head: str = "b1", w_cls: float = 0.05) -> tuple[torch.Tensor, dict]:
    """KD-Loss (:func:`kd_loss`) on the student's expected angles (eq. 2 of its RvC ``head``),
    all in units of ``method.angle_unit`` degrees. ``batch["teacher_angles"]`` (B, 2, 3):
    the tough and the tolerant teacher's angles for the crop (:mod:`pipeline.teachers`).
    With ``method.eq7_weight`` > 0, plus that weight times eq. 7 (:func:`distillation_loss`,
    ``w_cls``) against ``batch["teacher"]``, the tolerant teacher's distribution."""
    unit = method.angle_unit
    student = bins.decode_logits(outputs[head].float(), int(head[1:])) / unit
    teachers = batch["teacher_angles"].float() / unit
    total, parts = kd_loss(student, batch["pose"].float() / unit, teachers[:, 0], teachers[:, 1],
                           method.main_weight, method.alpha_tough, method.alpha_tough_inner,
                           method.alpha_tolerant, method.alpha_tolerant_inner, method.beta)
    if method.eq7_weight > 0:   # the distribution too, not only its expected angle
        eq7, eq7_parts = distillation_loss(outputs, batch, w_cls, head)
        total, parts = total + method.eq7_weight * eq7, {**parts, **eq7_parts}
    return total, parts
