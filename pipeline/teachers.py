"""Several teachers (issue 15): how a student learns from a set of teacher caches.

Teachers are named caches (``paths.teachers``), each written by its own labelling stage
(:mod:`pipeline.cache`): ``ensemble``, the convolutional ensemble (the stronger teacher), and
``base``, the same network on the box alone (the weaker one, the Base row of table 5). A
distillation method (``distill.method.<name>``) names the teachers it reads and their roles:

* ``loss: kl``: paper eq. 7 against one target distribution per crop.

  - One teacher (``teacher``): the paper's single-teacher KD.
  - ODKD's orderly dual teacher (Zhao et al.): a ``primary`` (weaker) teacher first, then the
    senior (``teacher``). The target is (1 - w) P_primary + w P_senior with w a function of the
    epoch (:func:`senior_weight`): 0 before ``handover`` x epochs and 1 from there (``order:
    switch``), or rising linearly from 0 at the first epoch to 1 at the handover (``ramp``).
    The gradient of KL(P || Q) in the student Q is linear in the target P, so mixing the
    targets is mixing the two teachers' KL terms.
  - ``floor``: ODKD binarises the teachers' heatmaps to remove their noise; for a distribution
    the analogue (:func:`filter_noise`) zeroes the bins below ``floor`` x the row's peak and
    renormalises.

* ``loss: assistive``: KD-Loss (Fard & Mahoor, CVIU 2022) on the expected angles, with a
  ``tough`` teacher (trained on the ground truth: the base network) and a ``tolerant`` one
  (smoother: the ensemble); the formula is :func:`pipeline.losses.kd_loss`. It supervises the
  expected angle only; ``eq7_weight`` > 0 adds eq. 7 against the tolerant teacher's
  distribution beside it.

* ``loss: ce``: the hard-label control, eq. 7's ground-truth term alone; it reads no teacher
  (the ``CE-<backbone>`` row: what the schedule and the views give without any teacher).

Every teacher's distributions and angles are its answers on the very view the student sees
(:mod:`pipeline.views`, :mod:`pipeline.distill`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import numpy as np

from .config import InRange, NonNegativeFloat, PositiveFloat, Probability, check_fields

ENSEMBLE, BASE = "ensemble", "base"   # the two teachers the pipeline labels (paths.teachers)
RUN_SEPARATOR = "-"   # run names are <backbone>-<method>-seed<k>: a method name has no "-"


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """One distillation method (a value of ``distill.method``)."""
    loss: Literal["kl", "assistive", "ce"] = "kl"
    teacher: str = ENSEMBLE            # kl: the teacher of eq. 7 (ODKD: the senior, taught last)
    primary: Optional[str] = None      # kl: ODKD's primary (weaker) teacher, taught first; null: one teacher
    order: Literal["switch", "ramp"] = "switch"   # ODKD: primary -> senior at once, or blended over epochs
    handover: Annotated[float, InRange(0, 1)] = 0.5   # ODKD: share of the epochs before the senior alone
    floor: Annotated[float, InRange(0, 1, high_open=True)] = 0.0   # noise filter: bins < floor x peak -> 0
    tough: str = BASE                  # assistive: teacher trained on the ground truth
    tolerant: str = ENSEMBLE           # assistive: teacher with smoother targets
    # KD-Loss constants (the values of the authors' public code)
    main_weight: NonNegativeFloat = 2.0
    alpha_tough: float = 1.9
    alpha_tough_inner: float = -0.45
    alpha_tolerant: float = 1.8
    alpha_tolerant_inner: float = -0.4
    beta: Probability = 0.15
    # KD-Loss was made for normalised coordinates: angles are divided by this many degrees
    # (99: the pose range [-99, 99] becomes [-1, 1], as for the regression head of eq. 3)
    angle_unit: PositiveFloat = 99.0
    # assistive: weight of eq. 7 (ground-truth CE and KL to the tolerant teacher's distribution)
    # added to KD-Loss, which alone supervises only the expected angle (issue 23, item 7)
    eq7_weight: NonNegativeFloat = 0.0

    def __post_init__(self):
        check_fields(self)

    def teachers(self) -> tuple[str, ...]:
        """The teachers this method reads, in role order (primary, senior / tough, tolerant);
        none for the hard-label control."""
        if self.loss == "ce":
            return ()
        if self.loss == "assistive":
            return (self.tough, self.tolerant)
        return (self.primary, self.teacher) if self.primary is not None else (self.teacher,)

    @property
    def single_teacher(self) -> bool:
        return len(set(self.teachers())) == 1

    @property
    def control(self) -> bool:
        """The hard-label control: no teacher at all."""
        return not self.teachers()


def senior_weight(method: MethodConfig, epoch: int, epochs: int) -> float:
    """w of the ODKD target (1 - w) P_primary + w P_senior at ``epoch`` (0-based) of ``epochs``;
    1 for a method with one teacher."""
    if method.primary is None:
        return 1.0
    handover = method.handover * epochs
    if method.order == "switch":
        return 0.0 if epoch < handover else 1.0
    return 1.0 if handover <= 0 else min(1.0, epoch / handover)


def filter_noise(probs: np.ndarray, floor: float) -> np.ndarray:
    """(..., q) distributions with every bin below ``floor`` x its row's peak set to 0, rows
    renormalised (the peak always stays); ``floor`` 0 leaves them as they are."""
    probs = np.asarray(probs, dtype=np.float64)
    if floor <= 0:
        return probs
    kept = np.where(probs >= floor * probs.max(axis=-1, keepdims=True), probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)
