"""The queries' guidance fused with the warped guidance of frames t±1 (`GuidanceFusion`).

Identity at initialisation, a copy of the warped guidance when the network says so, a neighbour behind a cut (gate
0) exactly as an absent one, bands equal to the whole, the fusion in the model's queries only (not in per frame,
not in the first frame), which neighbours each mode reads (causality), the cues as inputs, and the exact error on
bad shapes. The chunked, stream-equals-batch and invariance tests of `test_videoanyup.py` run the same model.
"""

import pytest
import torch

from tiny_networks import tiny_net
from videoanyup.functional.warp import flow_warp
from videoanyup.layers import guidance_fusion
from videoanyup.layers.frame_cues import PAIR_CUES
from videoanyup.layers.guidance_fusion import FusionNeighbour, GuidanceFusion

from conftest import attention_queries as queries  # noqa: E402


def maps(n=2, c=4, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g), 2 * torch.randn(n, 2, h, w, generator=g)


def side(guidance, flow, gate=1.0, cues=None, seed=0):
    """A `FusionNeighbour` with LR cues on a 3 × 4 grid."""
    n = guidance.shape[0]
    if cues is None:
        cues = torch.randn(n, PAIR_CUES, 3, 4, generator=torch.Generator().manual_seed(seed))
    return FusionNeighbour(guidance, flow, cues, torch.full((n,), float(gate)))


def clip(b=1, t=4, c=5, h=4, w=5, size=(11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, h, w, generator=g), torch.rand(b, t, 3, *size, generator=g)


def run(model, feats, video, **options):
    with torch.no_grad():
        return model(feats, video, **options)


def test_fusion_starts_as_the_identity():
    guidance, previous, flow = maps()
    fusion = GuidanceFusion(4, hidden=8)
    with torch.no_grad():
        assert torch.equal(fusion(guidance, side(previous, flow), None), guidance)
    assert torch.equal(fusion(guidance, side(previous, flow), None), guidance)  # with gradients too
    assert torch.equal(fusion(guidance, None, None), guidance)


def test_fusion_can_copy_the_warped_previous_guidance():
    """a = 1, b = 0 everywhere: the output is frame t−1's guidance carried along the flow, whatever frame t's."""
    guidance, previous, flow = maps(seed=1)
    fusion = GuidanceFusion(4, hidden=8)
    with torch.no_grad():
        fusion.net[-1].bias[:4] = 1.0 / guidance_fusion.OUTPUT_SCALE  # a₋ = 1
        out = fusion(guidance, side(previous, flow), None)
    assert torch.allclose(out, flow_warp(previous, flow, padding_mode="border"), atol=1e-6)
    shift = torch.zeros_like(flow)
    shift[:, 0] = 1.0  # read one pixel to the right
    with torch.no_grad():
        out = fusion(guidance, side(previous, shift), None)
    assert torch.allclose(out[..., :-1], previous[..., 1:], atol=1e-6)
    with torch.no_grad():  # a₊ = 1 with t+1 given: its warped guidance; with t+1 absent: frame t's own
        fusion.net[-1].bias[:4], fusion.net[-1].bias[4:8] = 0.0, 1.0 / guidance_fusion.OUTPUT_SCALE
        out = fusion(guidance, side(previous, flow), side(previous.flip(0), -flow))
        alone = fusion(guidance, side(previous, flow), None)
    assert torch.allclose(out, flow_warp(previous.flip(0), -flow, padding_mode="border"), atol=1e-6)
    assert torch.allclose(alone, guidance, atol=1e-6)


def test_a_neighbour_behind_a_cut_counts_as_absent():
    """Gate 0 (the shot test says "another shot"): whatever the network, frame t's own guidance, exactly as for a
    frame whose neighbours are outside the clip; gate 1 with the same weights moves it."""
    guidance, previous, flow = maps(seed=4)
    fusion = GuidanceFusion(4, hidden=8)
    torch.nn.init.normal_(fusion.net[-1].weight)
    torch.nn.init.normal_(fusion.net[-1].bias)
    with torch.no_grad():
        cut = fusion(guidance, side(previous, flow, gate=0.0), side(previous.flip(0), -flow, gate=0.0))
        same = fusion(guidance, side(previous, flow, gate=1.0), None)
    assert torch.equal(cut, guidance)
    assert (same - guidance).abs().max() > 1e-2


def test_the_cues_enter_the_gates():
    guidance, previous, flow = maps(seed=5)
    fusion = GuidanceFusion(4, hidden=8)
    torch.nn.init.normal_(fusion.net[-1].weight)
    cues = torch.zeros(2, PAIR_CUES, 3, 4)
    sharper = cues.clone()
    sharper[:, 0] = 3.0  # the neighbour has far more edge energy than frame t
    with torch.no_grad():
        plain = fusion(guidance, side(previous, flow, cues=cues), None)
        moved = fusion(guidance, side(previous, flow, cues=sharper), None)
    assert (moved - plain).abs().max() > 1e-3


def test_bands_without_gradients_equal_the_whole(monkeypatch):
    guidance, previous, flow = maps(n=1, h=9, w=5, seed=2)
    fusion = GuidanceFusion(4, hidden=8)
    torch.nn.init.normal_(fusion.net[-1].weight)
    whole = fusion(guidance, side(previous, flow), None).detach()  # gradients: one pass over the whole map
    monkeypatch.setattr(guidance_fusion, "BAND_PIXELS", 10)  # two rows per band, the last one short
    with torch.no_grad():
        banded = fusion(guidance, side(previous, flow), None)
    assert torch.allclose(banded, whole, atol=1e-6)


def test_bad_shapes_are_named():
    guidance, previous, flow = maps()
    fusion = GuidanceFusion(4)
    with pytest.raises(ValueError, match=r"guidance \(2, 4, 6, 7\), previous.guidance \(2, 4, 6, 6\) and its flow"):
        fusion(guidance, side(previous[..., :6], flow), None)
    with pytest.raises(ValueError, match=r"must be \(N, Cg, H, W\), \(N, Cg, H, W\) and \(N, 2, H, W\)"):
        fusion(guidance, side(previous, flow[:, :1]), None)


def test_the_fusion_changes_the_frames_with_a_neighbour_and_never_per_frame():
    net = tiny_net(seed=3)
    feats, video = clip(t=4, seed=5)
    with torch.no_grad():
        raw = net.guidance(video[0])  # (T, Cg, H, W): the video is at the output size
    assert torch.equal(queries(net, feats, video, "perframe"), raw)
    fused = queries(net, feats, video, "unidirectional")
    assert torch.equal(fused[0], raw[0])  # frame 0 has no predecessor
    assert (fused[1:] - raw[1:]).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    fused = queries(net, feats, video, "bidirectional")
    assert (fused - raw).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # frame 0 reads frame 1


def test_the_queries_of_frame_t_see_frame_t_minus_1_and_never_a_later_frame():
    net = tiny_net(seed=6)
    feats, video = clip(t=4, seed=6)
    with torch.no_grad():
        raw = net.guidance(video[0])  # (T, Cg, H, W): the video is at the output size
    base = queries(net, feats, video, "unidirectional")
    assert torch.allclose(base[0], raw[0], atol=1e-6) and (base[1:] - raw[1:]).abs().amax() > 1e-3
    changed = video.clone()
    changed[:, 1] = torch.rand_like(changed[:, 1])
    moved = queries(net, feats, changed, "unidirectional")
    assert torch.equal(moved[0], base[0])  # frame 0 does not see frame 1
    assert (moved[2] - base[2]).abs().amax() > 1e-3  # frame 2's queries see frame 1's guidance
    assert torch.equal(queries(net, feats, changed, "perframe")[2], queries(net, feats, video, "perframe")[2])
    # t+1: read in bidirectional and look-ahead mode, never in unidirectional
    later = video.clone()
    later[:, 3] = torch.rand_like(later[:, 3])
    assert torch.equal(queries(net, feats, later, "unidirectional")[2], base[2])
    for mode in ("bidirectional", "lookahead"):
        assert (queries(net, feats, later, mode)[2] - queries(net, feats, video, mode)[2]).abs().amax() > 1e-3
        assert torch.equal(queries(net, feats, later, mode)[1], queries(net, feats, video, mode)[1])  # t+2: never


def test_chunks_read_the_next_chunks_first_frame():
    net = tiny_net(seed=7)
    feats, video = clip(t=5, seed=7)
    for mode in ("bidirectional", "lookahead", "unidirectional"):
        whole = run(net, feats, video, mode=mode)
        assert torch.allclose(run(net, feats, video, mode=mode, chunk_frames=2), whole, atol=1e-5)


def test_gradients_reach_the_fusion_from_its_zero_start():
    """At zero the gates still get a gradient (∂g'/∂a = ĝ − g), so training can open them."""
    from videoanyup.models.videoanyup import VideoAnyUp

    torch.manual_seed(8)
    model = VideoAnyUp.from_config("tiny").train()
    feats, video = clip(t=3, seed=8)
    model(feats, video, mode="bidirectional").square().mean().backward()
    assert model.fusion.net[-1].weight.grad.abs().amax() > 0
    assert model.fusion.net[0].weight.grad is None or model.fusion.net[0].weight.grad.abs().amax() == 0  # behind zeros
