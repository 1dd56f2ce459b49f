"""The weights that ship inside the package: they load by name, and they do their job on unseen content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoanyup.models.basicavsr import CONFIGS, BasicAVSR
from videoanyup.tasks.avsr.degradation import bicubic_upscale, degrade
from videoanyup.tasks.flow.weights import load_spynet
from videoanyup.tasks.metrics import psnr, quantize


def _panning_clip(frames: int, height: int, width: int, step=(1, 2)) -> torch.Tensor:
    """A scikit-image picture panning by `step` pixels per frame: `(1, T, 3, H, W)` in [0, 1]."""
    import skimage.data

    picture = skimage.data.chelsea()  # a cat: texture, edges (not among the training sources)
    dy, dx = step
    clip = np.stack([picture[40 + t * dy : 40 + t * dy + height, 60 + t * dx : 60 + t * dx + width] for t in range(frames)])
    return torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)


def test_lite_loads_by_name_and_is_trained():
    """The shipped lite weights (an early, 520-step CPU checkpoint) beat bilinear upsampling — the network's
    zero-residual starting point — at ×2 and ×4, and bicubic at ×4, on a clip no training saw."""
    import torch.nn.functional as F

    model = BasicAVSR.from_pretrained("lite").eval()
    assert model.config == CONFIGS["lite"] and "bidirectional" in model.trained_modes
    hr = _panning_clip(5, 96, 128)  # (1, 5, 3, 96, 128)
    for scale in (2, 4):
        lr = quantize(degrade(hr[0], (96 // scale, 128 // scale)))  # (5, 3, h, w)
        with torch.no_grad():
            out = quantize(model(lr[None], size=(96, 128), mode="bidirectional")[0])
        bilinear = quantize(F.interpolate(lr, size=(96, 128), mode="bilinear", align_corners=False))
        bicubic = quantize(bicubic_upscale(lr, (96, 128)))
        score = lambda x: psnr(x, hr[0], crop_border=4).mean().item()  # noqa: E731
        assert score(out) > score(bilinear) + 0.01, f"×{scale}: {score(out):.2f} dB vs bilinear {score(bilinear):.2f}"
        if scale == 4:
            assert score(out) > score(bicubic) + 0.1, f"×4: {score(out):.2f} dB vs bicubic {score(bicubic):.2f}"


def test_synthetic_spynet_finds_a_translation():
    spynet = load_spynet("synthetic").eval()
    clip = _panning_clip(2, 128, 160, step=(3, 4))[0]  # frame 1 is frame 0 moved by (-3, -4)
    with torch.no_grad():
        flow = spynet(clip[:1], clip[1:])  # ref = frame 0, supp = frame 1: content of p is at p − (4, 3)
    inner = flow[0, :, 16:-16, 16:-16]
    truth = torch.tensor([-4.0, -3.0]).view(2, 1, 1)
    epe = (inner - truth).norm(dim=0).mean()
    assert epe < 0.3 * truth.norm(), f"EPE {epe:.2f} px against a zero-flow EPE of {truth.norm():.2f}"


def test_unknown_bundled_name_is_named():
    with pytest.raises(ValueError, match="bundled basicavsr weights"):
        BasicAVSR.from_pretrained("no-such-weights")
