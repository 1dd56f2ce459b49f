"""Per-frame degradations of training clips: the operations, and that a degraded clip step feeds the degraded
frame to the backbone and the guidance alike while every reference stays clean."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lightning")

from videoanyup.backbones.base import Backbone  # noqa: E402
from videoanyup.models.videoanyup import VideoAnyUp  # noqa: E402
from videoanyup.tasks.upsampler import system as system_module  # noqa: E402
from videoanyup.tasks.upsampler.degrade import degrade_clips, draw_degradation, gaussian_blur, grey_box  # noqa: E402
from videoanyup.tasks.upsampler.system import UpsamplerSystem, step_draws  # noqa: E402


class PoolBackbone(Backbone):
    """Mean RGB of each p × p patch."""

    def __init__(self, patch_size: int) -> None:
        super().__init__(name="pool", patch_size=patch_size, embed_dim=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.unused = torch.nn.Parameter(torch.zeros(()))  # the system reads the device of a parameter

    def _encode(self, frames):
        return F.avg_pool2d(frames, self.patch_size)

    _embed = _encode


def test_blur_keeps_constants_and_the_mean_and_smooths():
    constant = torch.full((1, 3, 20, 24), 0.3)
    assert torch.allclose(gaussian_blur(constant, 2.0), constant, atol=1e-6)
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noise, 2.0)
    assert blurred.std() < 0.5 * noise.std()
    assert abs(float(blurred.mean() - noise.mean())) < 1e-2
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(noise, 0.0)


def test_box_and_one_frame_per_clip():
    frames = torch.rand(3, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    boxed = grey_box(frames[0], (2, 6, 3, 9))
    assert (boxed[..., 2:6, 3:9] == 0.5).all() and torch.equal(boxed[..., 6:, :], frames[0][..., 6:, :])
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        degradation = draw_degradation(g, 3, 4, (16, 16))
        out = degrade_clips(frames, degradation, g)
        for b in range(3):
            for t in range(4):
                same = torch.equal(out[b, t], frames[b, t])
                assert same != (t == int(degradation.frames[b]))
    with pytest.raises(ValueError, match="kinds"):
        draw_degradation(g, 1, 2, (8, 8), kinds=("smudge",))


@pytest.mark.parametrize("kind", ["blur", "noise", "box"])
def test_degraded_step_feeds_the_degraded_frame_and_keeps_references_clean(kind, monkeypatch):
    net = VideoAnyUp.from_config("tiny", temporal_window=3)
    system = UpsamplerSystem(
        net, backbones=["pool"], grids=(4,), zooms=(2,), modes=["unidirectional"], degrade_probability=1.0,
        degradations=[kind], spynet_weights=None, temporal_weight=0.0,
    )
    backbone = PoolBackbone(4)
    system._backbones["pool"] = backbone
    frames = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    draws = step_draws(0, 5, 0, 6, backbones=["pool"], grids=[4], zooms=[2], modes=["unidirectional"])
    seen = {}
    forward = net.forward

    def spy(feats, video, **options):
        seen["feats"], seen["video"] = feats.clone(), video.clone()
        return forward(feats, video, **options)

    references = []
    consistency = system_module.self_consistency_loss
    monkeypatch.setattr(system_module, "self_consistency_loss", lambda out, lr: references.append(lr) or consistency(out, lr))
    net.forward = spy
    try:
        system.losses(frames, dict(draws))
    finally:
        del net.forward
    # the same draws again: the degradation is a pure function of the step's generator
    again = step_draws(0, 5, 0, 6, backbones=["pool"], grids=[4], zooms=[2], modes=["unidirectional"])
    degradation = system.degradation(frames, again)
    degraded = degrade_clips(frames, degradation, again["generator"])
    assert torch.equal(seen["video"], degraded)  # the guidance is degraded ...
    assert not torch.equal(degraded, frames)
    pooled = F.avg_pool2d(F.interpolate(degraded.flatten(0, 1), size=16, mode="bilinear", antialias=True), 4)
    assert torch.allclose(seen["feats"].flatten(0, 1), pooled, atol=1e-6)  # ... and so is the backbone's input
    clean = F.avg_pool2d(frames.flatten(0, 1), 4)
    assert torch.allclose(references[0], clean, atol=1e-6)  # the self-consistency reference is clean


def test_bad_degradation_arguments():
    net = VideoAnyUp.from_config("tiny")
    with pytest.raises(ValueError, match="degrade_probability"):
        UpsamplerSystem(net, degrade_probability=1.5, spynet_weights=None)
    with pytest.raises(ValueError, match="degradations"):
        UpsamplerSystem(net, degradations=["smudge"], spynet_weights=None)


@pytest.mark.parametrize("mode", ["unidirectional", "perframe"])
def test_degraded_term_is_the_crop_loss_of_the_degraded_frames_where_neighbours_are_read(mode, monkeypatch):
    net = VideoAnyUp.from_config("tiny", temporal_window=3)
    system = UpsamplerSystem(
        net, backbones=["pool"], grids=(4,), zooms=(2,), modes=[mode], degrade_probability=1.0,
        degradations=["box"], spynet_weights=None, temporal_weight=0.0, degraded_weight=0.5,
    )
    system._backbones["pool"] = PoolBackbone(4)
    frames = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    draws = step_draws(0, 7, 0, 6, backbones=["pool"], grids=[4], zooms=[2], modes=[mode])
    calls = []
    loss = system_module.feature_loss
    monkeypatch.setattr(system_module, "feature_loss", lambda pred, target: calls.append((pred, target)) or loss(pred, target))
    terms = system.losses(frames, dict(draws))
    if mode == "perframe":  # nothing could restore the degraded frame: no extra weight on it
        assert "degraded" not in terms and len(calls) == 1
        return
    again = step_draws(0, 7, 0, 6, backbones=["pool"], grids=[4], zooms=[2], modes=[mode])
    index = torch.arange(2) * 3 + system.degradation(frames, again).frames  # rows of the degraded frames
    (crop_pred, crop_target), (pred, target) = calls
    assert torch.equal(pred, crop_pred[index]) and torch.equal(target, crop_target[index])
    assert torch.equal(terms["degraded"], loss(crop_pred[index], crop_target[index]))
    total = system.weighted(terms)
    assert torch.allclose(total, system.weighted({k: v for k, v in terms.items() if k != "degraded"}) + 0.5 * terms["degraded"])


def test_blur_sigma_range_is_honoured_and_checked():
    g = torch.Generator().manual_seed(5)
    sigmas = [draw_degradation(g, 1, 3, (16, 16), kinds=("blur",), sigma=(5.0, 8.0)).sigma for _ in range(20)]
    assert min(sigmas) >= 5.0 and max(sigmas) <= 8.0 and max(sigmas) - min(sigmas) > 0.5
    net = VideoAnyUp.from_config("tiny")
    with pytest.raises(ValueError, match=r"blur_sigma must be \(low, high\)"):
        UpsamplerSystem(net, blur_sigma=(4.0, 2.0), spynet_weights=None)
    with pytest.raises(ValueError, match="degraded_weight must be >= 0"):
        UpsamplerSystem(net, degraded_weight=-1.0, spynet_weights=None)
