"""PSNR / SSIM as published: against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videoanyup.tasks.metrics import QualitySums, gaussian_window, psnr, quantize, rgb_to_y, ssim


def test_psnr_of_a_constant_offset_is_exact():
    x = torch.rand(4, 3, 20, 24) * 0.8
    assert torch.allclose(psnr(x + 0.1, x), torch.full((4,), 20.0, dtype=torch.float64))  # MSE 0.01
    assert torch.allclose(psnr(x + 0.01, x), torch.full((4,), 40.0, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_border_crop_ignores_the_border():
    target = torch.zeros(1, 3, 16, 16)
    pred = target.clone()
    pred[..., :2, :] = 1.0  # wrong only in the top two rows
    assert torch.isinf(psnr(pred, target, crop_border=2)).all()
    assert psnr(pred, target, crop_border=1).item() == pytest.approx(10 * math.log10(14 * 14 / 14))  # 1 of 14 rows


def test_y_channel_is_matlab_rgb2ycbcr():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert rgb_to_y(rgb).item() == pytest.approx((16 + 65.481) / 255)
    assert rgb_to_y(torch.ones(3, 1, 1)).item() == pytest.approx(235 / 255)
    assert rgb_to_y(torch.zeros(3, 1, 1)).item() == pytest.approx(16 / 255)
    # Y of a grey offset d is 219/255·d, so PSNR-Y of a constant offset is known exactly
    x = torch.rand(2, 3, 12, 12) * 0.5
    expected = 10 * math.log10(1 / (0.1 * 219 / 255) ** 2)
    assert torch.allclose(psnr(x + 0.1, x, y_channel=True), torch.full((2,), expected, dtype=torch.float64))


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with explicit 11×11 windows (valid positions), one channel in [0, 1]."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 16, 17, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(3, 16, 17, generator=g, dtype=torch.float64)).clamp(0, 1)
    by_hand = np.mean([_ssim_by_hand(pred[c].numpy(), target[c].numpy()) for c in range(3)])
    assert ssim(pred, target).item() == pytest.approx(by_hand, abs=1e-10)
    y_by_hand = _ssim_by_hand(rgb_to_y(pred)[0].numpy(), rgb_to_y(target)[0].numpy())
    assert ssim(pred, target, y_channel=True).item() == pytest.approx(y_by_hand, abs=1e-10)
    cropped = _ssim_by_hand(pred[0, 2:-2, 2:-2].numpy(), target[0, 2:-2, 2:-2].numpy())
    assert ssim(pred[:1].expand(3, -1, -1), target[:1].expand(3, -1, -1), crop_border=2).item() == pytest.approx(cropped, abs=1e-10)


def test_ssim_identity_and_window():
    x = torch.rand(2, 3, 3, 20, 20)
    assert torch.allclose(ssim(x, x), torch.ones(2, 3, dtype=torch.float64))
    window = gaussian_window()
    assert window.shape == (11, 11) and window.sum().item() == pytest.approx(1.0)
    assert ssim(x, 1 - x).mean() < 0.5


def test_quality_sums_average_over_all_frames():
    target = torch.rand(5, 3, 24, 24) * 0.8
    sums = QualitySums(["x2"], crop_border=4)
    sums.update("x2", target[:2] + 0.1, target[:2])  # 20 dB frames
    sums.update("x2", target[2:] + 0.01, target[2:])  # 40 dB frames
    means = sums.means()["x2"]
    assert means["frames"] == 5
    assert means["psnr"] == pytest.approx((2 * 20 + 3 * 40) / 5)  # per frame, then over frames
    with pytest.raises(ValueError, match="key"):
        sums.update("x3", target, target)


def test_quantize_and_bad_inputs():
    assert torch.equal(quantize(torch.tensor([-0.2, 0.5, 1.3])), torch.tensor([0.0, 128 / 255, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8), crop_border=4)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(3, 10, 10), torch.rand(3, 10, 10))
