"""Face-box relabeling (paper section 4.2): every sample gets its box from ONE detector,
the same way for training data, test data and ``predict``.

Backends: ``haar`` (:mod:`.haar`), ``yunet`` (:mod:`.yunet`), ``mtcnn`` (:mod:`.mtcnn`, the
detector of ``pipeline predict``), ``landmarks`` (the rule in
:mod:`.landmarks`, also every detector's fallback) and ``json`` (published box files,
:mod:`.published`). Choosing among faces: :mod:`.matching`. The parallel run, fallbacks,
errors, the report and the stage's job (:func:`relabel`): :mod:`.runner`. Params: :mod:`.config`.
"""
from .config import HaarConfig, MtcnnConfig, RelabelConfig, YuNetConfig
from .errors import DetectorError, RelabelError
from .haar import HaarDetector, mirror_boxes
from .landmarks import enlarge_box
from .matching import choose_box
from .mtcnn import MtcnnDetector
from .published import PublishedBoxes
from .runner import (FALLBACK_REASONS, Outcome, boxes_table, build_report, make_detector, relabel,
                     relabel_sample, relabel_samples)
from .yunet import YuNetDetector

__all__ = [
    "HaarConfig", "MtcnnConfig", "RelabelConfig", "YuNetConfig", "MtcnnDetector", "DetectorError", "RelabelError",
    "HaarDetector", "mirror_boxes", "enlarge_box", "choose_box", "PublishedBoxes",
    "FALLBACK_REASONS", "Outcome", "boxes_table", "build_report", "make_detector",
    "relabel", "relabel_sample", "relabel_samples", "YuNetDetector",
]
