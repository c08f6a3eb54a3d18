import numpy as np
import pytest
import torch
from torch import nn

from pipeline import bins
from pipeline.ensemble import (AUTOCAST_PROB_TOL, EnsembleError, autocast_difference,
                               check_stride_padding, ensemble_distributions, num_windows, windows)
from pipeline.image import crop_box, to_tensor

torch.set_num_threads(1)
H = W = 16


class TinyPoseNet(nn.Module):
    """Random position-sensitive net with the model contract's output dict."""

    def __init__(self, bin_sizes=(1, 2, 3, 4), input_size=H):
        super().__init__()
        self.bin_sizes, self.input_size = tuple(bin_sizes), input_size
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        feat = 4 * (input_size // 2) ** 2
        self.heads = nn.ModuleDict({bins.head_name(b): nn.Linear(feat, 3 * bins.num_bins(b))
                                    for b in self.bin_sizes})
        self.reg = nn.Linear(feat, 3)

    def forward(self, x):
        f = torch.relu(self.conv(x)).flatten(1)
        out = {"reg": self.reg(f)}
        for name, head in self.heads.items():
            out[name] = 3 * head(f).unflatten(1, (3, -1))
        return out


def reference_ensemble(model, image, box, s, p):
    """Paper, literally: crop every shifted box from the IMAGE, one window at a time."""
    x1, y1, x2, y2 = box
    rx, ry = W / (x2 - x1), H / (y2 - y1)
    n = 2 * p // s + 1
    acc = {bins.head_name(b): 0.0 for b in model.bin_sizes}
    for i in range(n):
        for j in range(n):
            dy, dx = (s * i - p) / ry, (s * j - p) / rx
            crop = crop_box(image, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), H, W)
            with torch.no_grad():
                out = model(to_tensor(crop)[None])
            for k in acc:
                acc[k] = acc[k] + torch.softmax(out[k].double(), -1)[0]
    return {k: v / n ** 2 for k, v in acc.items()}


def test_number_of_windows_and_parameter_checks():
    assert num_windows(1, 0) == 1
    assert num_windows(5, 15) == 49 and num_windows(1, 8) == 289 and num_windows(15, 15) == 9
    with pytest.raises(EnsembleError, match="multiple of the stride"):
        check_stride_padding(2, 3)
    with pytest.raises(EnsembleError, match="stride"):
        check_stride_padding(0, 0)


def test_windows_are_views_at_eq5_offsets():
    z = torch.arange(2 * 3 * 20 * 22, dtype=torch.float32).reshape(2, 3, 20, 22)
    v = windows(z, 16, 18, 2)
    assert v.shape == (2, 3, 3, 3, 16, 18)
    assert v.data_ptr() == z.data_ptr()  # a view: no copy of Z
    assert torch.equal(v[1, 2, 1], z[1, :, 4:20, 2:20])
    with pytest.raises(EnsembleError, match="does not tile"):
        windows(z, 15, 18, 2)


@pytest.mark.parametrize("s,p", [(1, 0), (2, 4), (3, 3), (1, 2)])
def test_matches_reference_on_random_images(s, p):
    rng = np.random.default_rng(s * 10 + p)
    torch.manual_seed(p)
    model = TinyPoseNet().eval()
    images, boxes = [], []
    for _ in range(3):
        images.append(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
        # dyadic scales and positions: the shifted boxes' warps are then exact in floating
        # point (otherwise OpenCV's 1/32-pixel rounding of the two warps may differ by a level)
        x1, y1 = rng.integers(0, 120, 2) / 8
        bw, bh = rng.choice([8, 16, 32], 2)
        boxes.append((x1, y1, x1 + bw, y1 + bh))
    z = torch.stack([to_tensor(crop_box(im, b, H, W, p)) for im, b in zip(images, boxes)])
    got = ensemble_distributions(model, z, s, p, model.bin_sizes, max_windows=7)
    for n, (im, box) in enumerate(zip(images, boxes)):
        ref = reference_ensemble(model, im, box, s, p)
        for head, prob in ref.items():
            assert got[head].shape == (3, 3, prob.shape[-1])
            np.testing.assert_allclose(got[head][n].numpy(), prob.numpy(), atol=1e-5, rtol=0)
            np.testing.assert_allclose(got[head][n].sum(-1).numpy(), 1.0, atol=1e-5)


def test_ensemble_with_p0_is_the_plain_model():
    torch.manual_seed(0)
    model = TinyPoseNet(bin_sizes=(1,)).eval()
    z = torch.randn(2, 3, H, W)
    got = ensemble_distributions(model, z, 1, 0, (1,))["b1"]
    with torch.no_grad():
        plain = torch.softmax(model(z)["b1"], -1)
    assert torch.allclose(got, plain, atol=1e-6)


def test_missing_head_is_a_clear_error():
    model = TinyPoseNet(bin_sizes=(1,)).eval()
    with pytest.raises(EnsembleError, match="no head 'b2'"):
        ensemble_distributions(model, torch.zeros(1, 3, H + 4, W + 4), 2, 2, (1, 2))


def test_bf16_autocast_within_stated_tolerance_on_cpu():
    torch.manual_seed(1)
    model = TinyPoseNet().eval()
    z = torch.randn(2, 3, H + 8, W + 8)
    diff = autocast_difference(model, z, 2, 4, model.bin_sizes)
    assert 0 < diff <= AUTOCAST_PROB_TOL
