"""Alterations of training clips: the degradations (the clean frame is the target) and the scene events (the
altered frame is the target), and that a clip step feeds the altered frames to the backbone and the guidance alike,
builds its references from the right clip, and supervises the shot test on cuts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lightning")

from videoanyup.backbones.base import Backbone  # noqa: E402
from videoanyup.models.videoanyup import VideoAnyUp  # noqa: E402
from videoanyup.tasks.upsampler import system as system_module  # noqa: E402
from videoanyup.tasks.upsampler.alterations import draw_alteration  # noqa: E402
from videoanyup.tasks.upsampler.degrade import KINDS, degrade_clips, draw_degradation, gaussian_blur, grey_box  # noqa: E402
from videoanyup.tasks.upsampler.events import EVENTS, draw_event  # noqa: E402
from videoanyup.tasks.upsampler.system import UpsamplerSystem, step_draws  # noqa: E402


STAND_IN = "dinov2_vits14"  # a registered name the system accepts; its backbone is replaced by a PoolBackbone


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


@pytest.mark.parametrize("kind", KINDS)
def test_every_degradation_changes_one_frame_and_stays_in_range(kind):
    frames = torch.rand(2, 3, 3, 24, 24, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(10)
    degradation = draw_degradation(g, 2, 3, (24, 24), kinds=(kind,), sigma=(2.0, 3.0))
    out = degrade_clips(frames, degradation, g)
    for b in range(2):
        for t in range(3):
            assert torch.equal(out[b, t], frames[b, t]) != (t == int(degradation.frames[b]))
    assert out.min() >= 0 and out.max() <= 1
    if kind in ("blur", "motion_blur", "defocus"):  # detail lost, the mean kept
        b, t = 0, int(degradation.frames[0])
        detail = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
        assert detail(out[b, t]) < 0.6 * detail(frames[b, t])
        assert abs(float(out[b, t].mean() - frames[b, t].mean())) < 0.02
    if kind == "dropped":
        assert (out[0, int(degradation.frames[0])] == 0.5).all()


@pytest.mark.parametrize("kind", EVENTS)
def test_scene_events_say_what_they_altered_and_which_pairs_they_broke(kind):
    frames = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    other = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(12))
    g = torch.Generator().manual_seed(13)
    for _ in range(6):
        event = draw_event(g, 2, 5, (16, 16), kinds=(kind,))
        out = event.apply(frames, other)
        altered, broken = event.altered(5), event.broken_pairs(5)
        for b in range(2):
            start = int(event.start[b])
            if kind == "cut":
                assert start >= 1 and torch.equal(out[b, :start], other[b, :start]) and torch.equal(out[b, start:], frames[b, start:])
                assert broken[b].tolist() == [j == start - 1 for j in range(4)]
                continue
            for t in range(5):
                assert torch.equal(out[b, t], frames[b, t]) == (not bool(altered[b, t])) or kind == "exposure"
            assert bool(altered[b, start]) and not altered[b, :start].any()
            assert broken[b].tolist() == [bool(altered[b, j] != altered[b, j + 1]) for j in range(4)]
        if kind == "fade":
            assert event.gain <= 0.6 and (out[altered[:, :, None, None, None].expand_as(out)] <= frames.max() * 0.6 + 1e-6).all()
    with pytest.raises(ValueError, match="kinds"):
        draw_event(g, 1, 3, (8, 8), kinds=("flash",))
    if kind == "cut":
        with pytest.raises(ValueError, match="other shot"):
            draw_event(g, 1, 3, (8, 8), kinds=("cut",)).apply(frames[:1, :3])


def test_alterations_follow_their_probabilities():
    g = torch.Generator().manual_seed(14)
    drawn = [draw_alteration(g, 1, 5, (16, 16), degrade_probability=0.5, event_probability=0.3, degradations=KINDS,
                             events=EVENTS, blur_sigma=(1.0, 2.0)) for _ in range(400)]
    degraded = sum(a is not None and a.degradation is not None for a in drawn) / 400
    events = sum(a is not None and a.event is not None for a in drawn) / 400
    assert abs(degraded - 0.5) < 0.08 and abs(events - 0.3) < 0.08


@pytest.mark.parametrize("kind", ["blur", "noise", "box"])
def test_degraded_step_feeds_the_degraded_frame_and_keeps_references_clean(kind, monkeypatch):
    net = VideoAnyUp.from_config("tiny")
    system = UpsamplerSystem(
        net, backbones=[STAND_IN], grids=(4,), zooms=(2,), modes=["unidirectional"], degrade_probability=1.0,
        degradations=[kind], spynet_weights=None, temporal_weight=0.0,
    )
    backbone = PoolBackbone(4)
    system._backbones[STAND_IN] = backbone
    frames = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    draws = step_draws(0, 5, 0, 6, backbones=[STAND_IN], grids=[4], zooms=[2], modes=["unidirectional"])
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
    again = step_draws(0, 5, 0, 6, backbones=[STAND_IN], grids=[4], zooms=[2], modes=["unidirectional"])
    degraded = system.alter(frames, again, None).inputs
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
    with pytest.raises(ValueError, match="events"):
        UpsamplerSystem(net, events=["flash"], spynet_weights=None)
    with pytest.raises(ValueError, match="sum <= 1"):
        UpsamplerSystem(net, degrade_probability=0.7, event_probability=0.5, spynet_weights=None)


@pytest.mark.parametrize("mode", ["unidirectional", "perframe"])
def test_altered_term_is_the_crop_loss_of_the_degraded_frames_where_neighbours_are_read(mode, monkeypatch):
    net = VideoAnyUp.from_config("tiny")
    system = UpsamplerSystem(
        net, backbones=[STAND_IN], grids=(4,), zooms=(2,), modes=[mode], degrade_probability=1.0,
        degradations=["box"], spynet_weights=None, temporal_weight=0.0, altered_weight=0.5,
    )
    system._backbones[STAND_IN] = PoolBackbone(4)
    frames = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    draws = step_draws(0, 7, 0, 6, backbones=[STAND_IN], grids=[4], zooms=[2], modes=[mode])
    calls = []
    loss = system_module.feature_loss
    monkeypatch.setattr(system_module, "feature_loss", lambda pred, target: calls.append((pred, target)) or loss(pred, target))
    terms = system.losses(frames, dict(draws))
    if mode == "perframe":  # nothing could restore the degraded frame: no extra weight on it
        assert "altered" not in terms and len(calls) == 1
        return
    again = step_draws(0, 7, 0, 6, backbones=[STAND_IN], grids=[4], zooms=[2], modes=[mode])
    index = system.alter(frames, again, None).altered.flatten().nonzero()[:, 0]  # rows of the degraded frames
    assert len(index) == 2
    (crop_pred, crop_target), (pred, target) = calls
    assert torch.equal(pred, crop_pred[index]) and torch.equal(target, crop_target[index])
    assert torch.equal(terms["altered"], loss(crop_pred[index], crop_target[index]))
    total = system.weighted(terms)
    assert torch.allclose(total, system.weighted({k: v for k, v in terms.items() if k != "altered"}) + 0.5 * terms["altered"])


def test_a_cut_step_supervises_the_shot_test_and_targets_the_scene():
    """A cut: frames before it come from the other clip, the targets are each frame's own (the scene), the shot
    test's logits get a binary cross-entropy with label 0 on the cut's pair and 1 elsewhere, and every frame of
    the clip against the other clip's frame at the same time is a negative pair too."""
    net = VideoAnyUp.from_config("tiny")
    system = UpsamplerSystem(
        net, backbones=[STAND_IN], grids=(4,), zooms=(2,), modes=["unidirectional"], event_probability=1.0,
        events=["cut"], spynet_weights=None, temporal_weight=0.0, shot_weight=1.0,
    )
    system._backbones[STAND_IN] = PoolBackbone(4)
    frames = torch.rand(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(15))
    other = torch.rand(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(16))
    draws = step_draws(0, 9, 0, 4, backbones=[STAND_IN], grids=[4], zooms=[2], modes=["unidirectional"])
    seen = {}
    forward = net.forward

    def spy(feats, video, **options):
        seen["video"] = video.clone()
        return forward(feats, video, **options)

    net.forward = spy
    try:
        terms = system.losses(frames, dict(draws), other)
    finally:
        del net.forward
    again = step_draws(0, 9, 0, 4, backbones=[STAND_IN], grids=[4], zooms=[2], modes=["unidirectional"])
    clip = system.alter(frames, again, other)
    cut = int(clip.broken[0].nonzero()[0]) + 1
    assert torch.equal(seen["video"][0, :cut], other[0, :cut]) and torch.equal(seen["video"][0, cut:], frames[0, cut:])
    assert clip.same_shot[0].tolist() == [float(j != cut - 1) for j in range(3)] and clip.labelled.all()
    logits = system._shot_logits[0].detach().view(1, 3)
    from videoanyup.models.frame_step import shot_logits_between

    with torch.no_grad():
        cross = shot_logits_between(net, clip.scene[0], other[0], (4, 4))  # (T,), all another shot
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.cat([logits[0], cross]), torch.cat([clip.same_shot[0], torch.zeros(4)])
    )
    assert torch.allclose(terms["shot"], expected, atol=1e-5)


def test_blur_sigma_range_is_honoured_and_checked():
    g = torch.Generator().manual_seed(5)
    sigmas = [draw_degradation(g, 1, 3, (16, 16), kinds=("blur",), sigma=(5.0, 8.0)).sigma for _ in range(20)]
    assert min(sigmas) >= 5.0 and max(sigmas) <= 8.0 and max(sigmas) - min(sigmas) > 0.5
    net = VideoAnyUp.from_config("tiny")
    with pytest.raises(ValueError, match=r"blur_sigma must be \(low, high\)"):
        UpsamplerSystem(net, blur_sigma=(4.0, 2.0), spynet_weights=None)
    with pytest.raises(ValueError, match="altered_weight=-1.0 and shot_weight=0.0 must be >= 0"):
        UpsamplerSystem(net, altered_weight=-1.0, spynet_weights=None)
