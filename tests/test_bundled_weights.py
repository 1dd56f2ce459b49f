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


@pytest.mark.parametrize("mode", ["bidirectional", "unidirectional", "lookahead"])
def test_lite_loads_by_name_and_is_trained(mode):
    """The shipped lite weights (one network trained for all three modes on a 2-core CPU) beat bicubic
    upsampling — lite's zero-residual starting point (`skip: bicubic`) — at ×2 and ×4, in every mode, on a
    clip no training saw. (Bilinear is no bar here: on this furry picture it scores above bicubic at ×4.)"""
    model = BasicAVSR.from_pretrained("lite").eval()
    assert model.config == CONFIGS["lite"] and model.config.skip == "bicubic"
    assert set(model.trained_modes) == {"bidirectional", "unidirectional", "lookahead"}
    hr = _panning_clip(5, 96, 128)  # (1, 5, 3, 96, 128)
    for scale, margin in ((2, 0.03), (4, 0.1)):
        lr = quantize(degrade(hr[0], (96 // scale, 128 // scale)))  # (5, 3, h, w)
        with torch.no_grad():
            out = quantize(model(lr[None], size=(96, 128), mode=mode)[0])
        bicubic = quantize(bicubic_upscale(lr, (96, 128)))
        score = lambda x: psnr(x, hr[0], crop_border=4).mean().item()  # noqa: E731
        assert score(out) > score(bicubic) + margin, f"×{scale}: {score(out):.2f} dB vs bicubic {score(bicubic):.2f}"


def _readme_python_block(after_heading: str) -> str:
    """The first ```python block of the README after the line `after_heading`."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rest = text[text.index(after_heading) :]
    start = rest.index("```python\n") + len("```python\n")
    return rest[start : rest.index("```", start)]


def test_readme_basicavsr_example_runs_as_written():
    """The README's BasicAVSR example (bundled lite; batch at an asymmetric scale, a stream with flush) runs
    unchanged, gives the sizes its comments state, and its stream gives every frame of the clip."""
    code = _readme_python_block("**Train and evaluate BasicAVSR")
    assert "BasicAVSR.from_pretrained(\"lite\")" in code and "stream.flush()" in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    lr, frames = namespace["lr"], namespace["frames"]
    assert namespace["hr"].shape == (1, lr.shape[1], 3, 60, 118)
    assert len(frames) == lr.shape[1] and all(f.shape == (1, 3, 48, 64) for f in frames)


def test_synthetic_spynet_finds_a_translation():
    spynet = load_spynet("synthetic").eval()
    clip = _panning_clip(2, 128, 160, step=(3, 4))[0]  # frame 1 is frame 0 moved by (-3, -4)
    with torch.no_grad():
        flow = spynet(clip[:1], clip[1:])  # ref = frame 0, supp = frame 1: content of p is at p − (4, 3)
    inner = flow[0, :, 16:-16, 16:-16]
    truth = torch.tensor([-4.0, -3.0]).view(2, 1, 1)
    epe = (inner - truth).norm(dim=0).mean()
    assert epe < 0.3 * truth.norm(), f"EPE {epe:.2f} px against a zero-flow EPE of {truth.norm():.2f}"


def test_videoanyup_default_loads_by_name_and_beats_bilinear_on_an_unseen_backbone_and_image():
    """The shipped VideoAnyUp (trained on three random backbones, seeds 0–2) upsamples the features of a
    random DINOv2 ViT-S/14 it never saw (seed 123) on a photo no training used (scikit-image's stereo
    motorcycle): the crop objective at ×4 — the 4g grid against the backbone run on that region — is far
    below bilinear's, and `upsample(feats, video)` uses these weights by default."""
    import skimage.data
    import torch.nn.functional as F

    import videoanyup as vau
    from videoanyup.backbones import build_backbone
    from videoanyup.models.videoanyup import VideoAnyUp
    from videoanyup.tasks.upsampler.losses import feature_loss
    from videoanyup.tasks.upsampler.objective import crop_targets, lr_features, take_windows

    model = VideoAnyUp.from_pretrained("default").eval()
    assert set(model.trained_modes) == {"bidirectional", "unidirectional", "lookahead", "perframe"}
    assert model.config == VideoAnyUp.from_config("default").config  # the shipped architecture
    torch.manual_seed(123)
    backbone = build_backbone("dinov2_vits14", random=True)
    left = skimage.data.stereo_motorcycle()[0]  # (500, 741, 3)
    image = torch.from_numpy(np.ascontiguousarray(left[:, 120:620])).permute(2, 0, 1).float().div(255)[None]
    image = F.interpolate(image, size=(160, 160), mode="area")  # (1, 3, 160, 160)
    grid, zoom = 8, 4
    windows = torch.tensor([[8, 12], [20, 4], [0, 24], [12, 16]])  # top-left cells of 8×8 windows of the 32² grid
    images = image.expand(len(windows), -1, -1, -1)
    with torch.no_grad():
        lr = lr_features(backbone, images, grid)  # (4, 384, 8, 8)
        target = crop_targets(backbone, images, windows, grid=grid, zoom=zoom)  # (4, 384, 8, 8)
        out = model(lr[:1], image, size=(zoom * grid, zoom * grid), mode="perframe").expand(len(windows), -1, -1, -1)
    bilinear = F.interpolate(lr, size=(zoom * grid,) * 2, mode="bilinear", align_corners=False)
    ours = feature_loss(take_windows(out, windows, grid), target).item()
    reference = feature_loss(take_windows(bilinear, windows, grid), target).item()
    assert ours < 0.8 * reference, f"crop objective ×4: VideoAnyUp {ours:.3f} vs bilinear {reference:.3f}"
    feats, video = lr[:1, None], image[:, None]  # (1, 1, 384, 8, 8), (1, 1, 3, 160, 160)
    default = vau.upsample(feats, video, size=(32, 32), mode="perframe")
    assert torch.allclose(default[:, 0], out[:1], atol=1e-5)


def test_unknown_bundled_name_is_named():
    with pytest.raises(ValueError, match="bundled basicavsr weights"):
        BasicAVSR.from_pretrained("no-such-weights")
