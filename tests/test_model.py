import numpy as np
import pytest
import torch

from pipeline import bins
from pipeline.model import (CheckpointError, WeightsError, build_model, checkpoint_meta,
                            checkpoint_sha256, load_checkpoint)
from pipeline.pose import CONVENTION
from pipeline.files import atomic_write_bytes


def _save(model, path, **extra):
    torch.save({"model": model.state_dict(),
                "meta": checkpoint_meta(model, {"lr": 1e-3}, "ab" * 32), **extra}, path)


def test_forward_shapes_and_keys():
    torch.manual_seed(0)
    model = build_model("resnet18", input_size=32).eval()
    out = model(torch.zeros(2, 3, 32, 32))
    assert list(out) == ["reg", "b1", "b2", "b3", "b4"]
    assert out["reg"].shape == (2, 3)
    assert [out[bins.head_name(b)].shape[-1] for b in (1, 2, 3, 4)] == [198, 99, 66, 50]
    assert model.bin_sizes == (1, 2, 3, 4) and model.input_size == 32
    assert model.prediction_head == "b1"
    pred = model.predict(torch.zeros(1, 3, 32, 32))
    assert pred.shape == (1, 3) and torch.all(pred.abs() <= 98.5)


def test_student_has_only_b1():
    model = build_model("resnet18", bin_sizes=(1,), regression=False, input_size=32).eval()
    assert list(model(torch.zeros(1, 3, 32, 32))) == ["b1"]


def test_bad_backbone_and_bin_size():
    with pytest.raises(ValueError, match="backbone"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="bin size"):
        build_model("resnet18", bin_sizes=(5,))


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", input_size=32).eval()
    path = tmp_path / "best.pt"
    _save(model, path)
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    for key, value in model(x).items():
        assert torch.allclose(value, loaded(x)[key])
    for key in ("config", "bin_sizes", "input_size", "backbone", "convention", "angle_names",
                "manifest_sha256"):
        assert key in meta
    assert meta["convention"] == CONVENTION and meta["input_size"] == 32
    assert np.allclose(meta["bins"]["b1"], bins.centres(1))
    assert len(checkpoint_sha256(path)) == 64


def test_checkpoint_with_other_convention_is_refused(tmp_path):
    model = build_model("resnet18", bin_sizes=(1,), regression=False, input_size=32)
    path = tmp_path / "old.pt"
    _save(model, path)
    data = torch.load(path, weights_only=True)
    data["meta"]["convention"] = "hopenet"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="old.pt.*convention"):
        load_checkpoint(path)


def test_garbage_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "garbage.pt"
    atomic_write_bytes(path, b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing.pt.*not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_local_weights_from_a_teacher_checkpoint(tmp_path):
    torch.manual_seed(1)
    teacher = build_model("resnet18", input_size=32)
    path = tmp_path / "teacher.pt"
    _save(teacher, path)
    student = build_model("resnet18", bin_sizes=(1,), regression=False, weights=path, input_size=32)
    assert torch.equal(student.backbone.conv1.weight, teacher.backbone.conv1.weight)


def test_imagenet_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    import torchvision.models._api as tv_api  # where WeightsEnum.get_state_dict downloads
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        build_model("resnet18", weights="imagenet")
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in str(err.value)
