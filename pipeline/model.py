"""The head-pose network of paper section 3.2 (fig. 2): a backbone (ResNet in the paper; the
registry is :mod:`pipeline.backbones`), one regression
head (eq. 3) and RvC heads (eq. 2) with bin sizes 1, 2, 3, 4; the bin-1 head predicts.

``forward`` returns raw outputs, ``{"reg": (B, 3), "b1": (B, 3, 198), "b2": (B, 3, 99), ...}``;
decoding to degrees lives in :mod:`pipeline.bins` (``decode_logits``, ``decode_regression``).
Weights are an explicit argument, as in torchvision's builders: ``None`` (random init),
``"imagenet"`` (from the backbone's registry entry) or a local file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from . import bins
from .backbones import BACKBONES, WeightsError, check_backbone
from .errors import PipelineError, one_line
from .files import file_sha256
from .pose import ANGLE_NAMES, CONVENTION

DEFAULT_INPUT_SIZE = 224

__all__ = ["BACKBONES", "WeightsError", "HeadPoseNet", "build_model", "load_checkpoint"]


class CheckpointError(PipelineError):
    pass


class HeadPoseNet(nn.Module):
    """Backbone (pooled features) -> {"reg": raw (B, 3), "bK": logits (B, 3, 198/K)}."""

    def __init__(self, backbone: nn.Module, feature_dim: int, backbone_name: str,
                 bin_sizes: Sequence[int], regression: bool, input_size: int):
        super().__init__()
        if not bin_sizes:
            raise ValueError("a head-pose network needs at least one RvC head")
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.bin_sizes = tuple(sorted(int(b) for b in bin_sizes))
        self.regression = bool(regression)
        self.input_size = int(input_size)
        self.rvc = nn.ModuleDict({bins.head_name(b): nn.Linear(feature_dim, 3 * bins.num_bins(b))
                                  for b in self.bin_sizes})
        self.reg = nn.Linear(feature_dim, 3) if self.regression else None

    @property
    def prediction_head(self) -> str:
        """The RvC head with the smallest bin size gives the prediction (section 3.2)."""
        return bins.head_name(self.bin_sizes[0])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        out = {}
        if self.reg is not None:
            out["reg"] = self.reg(features)
        for name, head in self.rvc.items():
            out[name] = head(features).view(x.shape[0], 3, -1)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3) degrees from the prediction head (eq. 2)."""
        logits = self(x)[self.prediction_head]
        return bins.decode_logits(logits, self.bin_sizes[0])


def _local_backbone_state(path: Path) -> dict:
    """A trunk state dict (e.g. torchvision's ``resnet50-*.pth``) or one of our checkpoints
    (its backbone)."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable torch weights file ({one_line(exc)})") from None
    if isinstance(data, dict) and "model" in data and "meta" in data:
        prefix = "backbone."
        return {k[len(prefix):]: v for k, v in data["model"].items() if k.startswith(prefix)}
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(data).__name__}")
    return data


def build_model(backbone: str, bin_sizes: Sequence[int] = bins.BIN_SIZES, regression: bool = True,
                weights: Optional[str | Path] = None,
                input_size: int = DEFAULT_INPUT_SIZE) -> HeadPoseNet:
    """Backbone + heads. ``weights``: None/"none", "imagenet" or a local file path."""
    check_backbone(backbone)
    for b in bin_sizes:
        bins.num_bins(b)  # validates the bin size
    entry = BACKBONES[backbone]
    net, feature_dim = entry.build(int(input_size))
    if weights is not None and str(weights) != "none":
        state = entry.imagenet_state() if str(weights) == "imagenet" else _local_backbone_state(Path(weights))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(f"{weights}: weights do not fit {backbone} "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return HeadPoseNet(net, feature_dim, backbone, bin_sizes, regression, input_size)


# --- checkpoints ----------------------------------------------------------------------

def weights_fingerprint(weights: Optional[str | Path]) -> str:
    """What the initial weights are: "none", "imagenet" (torchvision's pinned DEFAULT file), or
    the sha256 of a local weights file (so a replaced file is a different start)."""
    if weights is None or str(weights) in ("none", "imagenet"):
        return str(weights or "none")
    path = Path(weights)
    return f"sha256:{file_sha256(path)}" if path.is_file() else f"missing:{path}"


def checkpoint_meta(model: HeadPoseNet, config: dict, manifest_sha256: str,
                    inputs: Optional[dict] = None) -> dict:
    """What a checkpoint says about itself: enough to rebuild and to check compatibility.
    ``inputs``: content fingerprints of what training read (samples, initial weights, teacher
    cache), part of the run's identity (:func:`pipeline.train.run_identity`)."""
    return {
        "config": config,
        "inputs": inputs or {},
        "backbone": model.backbone_name,
        "bin_sizes": list(model.bin_sizes),
        "regression": model.regression,
        "input_size": model.input_size,
        "bins": {bins.head_name(b): bins.centres(b).tolist() for b in model.bin_sizes},
        "convention": CONVENTION,
        "angle_names": list(ANGLE_NAMES),
        "manifest_sha256": manifest_sha256,
    }


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The raw checkpoint dict ({"model", "meta", ...}); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (run the train-teacher stage)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({one_line(exc)})") from None
    if not isinstance(data, dict) or "model" not in data or "meta" not in data:
        raise CheckpointError(f"{path}: not a head-pose checkpoint (needs 'model' and 'meta')")
    meta = data["meta"]
    if meta.get("convention") != CONVENTION or tuple(meta.get("angle_names", ())) != ANGLE_NAMES:
        raise CheckpointError(f"{path}: pose convention {meta.get('convention')!r} / "
                              f"{meta.get('angle_names')} differs from this code's {CONVENTION!r}")
    return data


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[HeadPoseNet, dict]:
    """Rebuild the network of a checkpoint (eval mode) and return it with its meta."""
    data = read_checkpoint(path, map_location)
    meta = data["meta"]
    model = build_model(meta["backbone"], meta["bin_sizes"], meta["regression"],
                        weights=None, input_size=meta["input_size"])
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match its meta ({one_line(exc)})") from None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval(), meta


def checkpoint_sha256(path: str | Path) -> str:
    return file_sha256(path)
