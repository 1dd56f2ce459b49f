"""The sharpness prior of the guidance fusion (`temporal_sharpness_prior`, `layers/sharpness_prior.py`).

The weights' thresholds (0 up to r × frame t's edge energy, 1 from r², normalised over the neighbours), a
frame with its neighbours' sharpness left exactly alone (and no fine flow computed), a flat frame that takes
its sharper neighbour's guidance outright, energy bands equal to the whole, and in the model: a flat frame's
output changes and per frame never does, causality, chunks, stream equals batch with the prior at work, the
fine flows' size, and the exact configuration error.
"""

import dataclasses
import math

import pytest
import torch

from videoanyup.functional.warp import flow_warp
from videoanyup.layers import sharpness_prior
from videoanyup.layers.sharpness_prior import (
    RATIO,
    apply_sharpness_prior,
    edge_energy,
    energy_window,
    sharper_weights,
)
from videoanyup.models.videoanyup import VideoAnyUp

from conftest import attention_queries as queries  # noqa: E402


def constant(value, shape=(1, 1, 3, 4)):
    return torch.full(shape, float(value))


def test_weights_are_zero_up_to_r_one_from_r_squared_and_log_linear_between():
    e = constant(1.0)
    cases = {1.0: 0.0, RATIO: 0.0, RATIO**1.5: 0.5, RATIO**2: 1.0, RATIO**3: 1.0, 0.1: 0.0}
    for ratio, expected in cases.items():
        (w,) = sharper_weights(e, [constant(ratio)])
        assert torch.allclose(w, constant(expected), atol=1e-6), ratio


def test_weights_of_two_sharp_neighbours_share_one_and_an_absent_one_is_none():
    e = constant(1.0)
    both = sharper_weights(e, [constant(RATIO**2), constant(RATIO**4)])
    assert all(torch.allclose(w, constant(0.5)) for w in both)
    partial = sharper_weights(e, [constant(RATIO**1.5), constant(RATIO**1.25)])  # 0.5 + 0.25 ≤ 1: unscaled
    assert torch.allclose(partial[0], constant(0.5), atol=1e-6) and torch.allclose(partial[1], constant(0.25), atol=1e-6)
    absent, present = sharper_weights(e, [None, constant(RATIO**2)])
    assert absent is None and torch.allclose(present, constant(1.0))


def test_a_flat_frame_has_no_energy_and_a_textured_one_some():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(edge_energy(torch.full((1, 4, 9, 9), 0.3), 3), torch.zeros(1, 1, 9, 9))
    assert edge_energy(torch.randn(1, 4, 9, 9, generator=g), 3).amin() > 0


def test_energy_in_bands_equals_the_whole(monkeypatch):
    g = torch.Generator().manual_seed(1)
    guidance = torch.randn(2, 3, 23, 17, generator=g)
    whole = edge_energy(guidance, 5)  # small enough for one piece
    monkeypatch.setattr(sharpness_prior, "BAND_PIXELS", 3 * 17)  # 3 rows a band
    with torch.no_grad():
        assert torch.allclose(edge_energy(guidance, 5), whole, atol=1e-6)


def test_energy_window_is_two_lr_cells_odd():
    assert energy_window((224, 392), (16, 28)) == 29  # 14-pixel cells
    assert energy_window((32, 32), (16, 16)) == 5
    assert energy_window((12, 12), (12, 12)) == 3  # at least 3
    assert energy_window((100, 100), (10, 10)) == 21


def test_neighbours_as_sharp_as_frame_t_leave_the_queries_alone_and_compute_no_fine_flow():
    g = torch.Generator().manual_seed(2)
    guidance = torch.randn(1, 4, 10, 12, generator=g)
    fused = guidance + 0.1  # whatever the learned fusion gave
    zero = torch.zeros(1, 2, 10, 12)

    def never():
        raise AssertionError("the fine flow was computed for a neighbour with no weight")

    same = (guidance, zero, never)
    assert apply_sharpness_prior(fused, guidance, 3, [same, None]) is fused
    assert apply_sharpness_prior(fused, guidance, 3, [same, (0.7 * guidance, zero, never)]) is fused  # flatter


def test_a_flat_frame_takes_its_sharper_neighbours_guidance_aligned_by_the_fine_flow():
    g = torch.Generator().manual_seed(3)
    flat = torch.full((1, 4, 10, 12), 0.2)
    previous, following = torch.randn(1, 4, 10, 12, generator=g), torch.randn(1, 4, 10, 12, generator=g)
    grid, fine = torch.zeros(1, 2, 10, 12), 1.5 * torch.randn(1, 2, 10, 12, generator=g)
    calls = []

    def fine_flow():
        calls.append(1)
        return fine

    one = apply_sharpness_prior(flat, flat, 3, [(previous, grid, fine_flow), None])
    assert calls == [1]
    assert torch.allclose(one, flow_warp(previous, fine, padding_mode="border"), atol=1e-5)
    two = apply_sharpness_prior(flat, flat, 3, [(previous, grid, lambda: fine), (following, grid, lambda: fine)])
    expected = 0.5 * (flow_warp(previous, fine, padding_mode="border") + flow_warp(following, fine, padding_mode="border"))
    assert torch.allclose(two, expected, atol=1e-5)


def test_a_small_flat_patch_takes_its_neighbour_placed_by_the_grid_flow():
    """π > 0 on less than FINE_AREA of the frame: no fine flow is computed, the grid flow places the neighbour."""
    g = torch.Generator().manual_seed(4)
    guidance, neighbour = torch.randn(1, 4, 64, 64, generator=g), torch.randn(1, 4, 64, 64, generator=g)
    guidance[..., 30:34, 30:34] = 0.0  # a flat 4 × 4 patch
    grid = 0.5 * torch.randn(1, 2, 64, 64, generator=g)

    def never():
        raise AssertionError("the fine flow was computed for a small patch")

    out = apply_sharpness_prior(guidance, guidance, 3, [(neighbour, grid, never)])
    changed = (out - guidance).abs().amax(dim=1)[0] > 0  # (64, 64)
    assert changed[31, 31] and 0 < changed.float().mean() < sharpness_prior.FINE_AREA
    assert not changed[:20].any()  # textured like its neighbour: left alone
    (weight,) = sharper_weights(edge_energy(guidance, 3), [flow_warp(edge_energy(neighbour, 3), grid, padding_mode="border")])
    expected = guidance + weight * (flow_warp(neighbour, grid, padding_mode="border") - guidance)
    assert torch.allclose(out, expected, atol=1e-6)


# -- in the model ---------------------------------------------------------------------------------------------


def prior_net(seed=0, prior=True):
    torch.manual_seed(seed)
    return VideoAnyUp.from_config(
        "tiny", temporal_window=3, temporal_guidance=True, temporal_sharpness_prior=prior
    ).eval()


def without_prior(net):
    plain = VideoAnyUp(dataclasses.replace(net.config, temporal_sharpness_prior=False)).eval()
    plain.load_state_dict(net.state_dict())
    return plain


def flat_clip(t=5, flat=2, seed=0, b=1):
    """Random LR features and a textured video whose frame `flat` is one grey (no edges at all)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, t, 5, 4, 5, generator=g)
    video = torch.rand(b, t, 3, 24, 30, generator=g)  # finer than the flow grid (4 × LR)
    video[:, flat] = 0.5
    return feats, video


def run(model, feats, video, **options):
    with torch.no_grad():
        return model(feats, video, **options)


def test_the_prior_gives_the_flat_frame_its_neighbours_queries_and_never_per_frame():
    net = prior_net(seed=1)
    plain = without_prior(net)
    feats, video = flat_clip(seed=1)
    assert torch.equal(run(net, feats, video, mode="perframe"), run(plain, feats, video, mode="perframe"))
    with torch.no_grad():
        raw = net.guidance(video[0])  # (T, Cg, H, W): the video is at the output size
    for mode in ("bidirectional", "unidirectional", "lookahead"):
        with_prior, without = queries(net, feats, video, mode), queries(plain, feats, video, mode)
        assert torch.equal(without, raw), mode  # the learned fusion starts as the identity
        # the flat frame's queries (away from the zero-padded border) become its neighbours' guidance
        inner = (slice(None), slice(2, -2), slice(2, -2))
        assert (with_prior[2][inner] - raw[2][inner]).abs().amax() > 0.1 * raw[1].abs().amax(), mode
        assert torch.equal(with_prior[0], raw[0]), mode  # a textured frame: nothing is sharper
        assert (run(net, feats, video, mode=mode)[:, 2] - run(plain, feats, video, mode=mode)[:, 2]).abs().amax() > 1e-4


def test_the_flat_frame_never_changes_an_earlier_output_in_unidirectional_mode():
    net = prior_net(seed=2)
    feats, video = flat_clip(seed=2)
    base = run(net, feats, video, mode="unidirectional")
    changed = video.clone()
    changed[:, 3] = torch.rand_like(changed[:, 3])  # frame 3, after the flat frame 2
    moved = run(net, feats, changed, mode="unidirectional")
    assert torch.equal(moved[:, :3], base[:, :3])
    assert (moved[:, 3] - base[:, 3]).abs().amax() > 1e-3


def test_chunks_equal_the_whole_with_the_prior_at_work():
    net = prior_net(seed=3)
    feats, video = flat_clip(t=6, flat=3, seed=3)  # the flat frame opens the second chunk of 3
    for mode in ("bidirectional", "lookahead", "unidirectional"):
        whole = run(net, feats, video, mode=mode)
        assert torch.allclose(run(net, feats, video, mode=mode, chunk_frames=3), whole, atol=1e-5), mode


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_stream_equals_batch_with_the_prior_at_work(mode):
    net = prior_net(seed=4)
    feats, video = flat_clip(t=6, flat=3, seed=4, b=2)
    batch = run(net, feats, video, mode=mode)
    assert (batch[:, 3] - run(without_prior(net), feats, video, mode=mode)[:, 3]).abs().amax() > 1e-4  # at work
    stream = net.stream(mode=mode)
    outs = []
    for t in range(video.shape[1]):
        outs += stream.push(feats[:, t], video[:, t])
    outs += stream.flush()
    assert torch.allclose(torch.stack(outs, dim=1), batch, atol=1e-5)


def test_fine_flows_run_at_the_output_size_capped_by_the_video_and_a_pixel_budget():
    net = prior_net()
    assert net.fine_size((224, 392), (224, 392)) == (224, 392)
    assert net.fine_size((448, 784), (224, 392)) == (224, 392)  # no finer than the video
    h, w = net.fine_size((2048, 1024), (4096, 2048))
    assert h * w <= sharpness_prior.FINE_PIXELS * 1.01 and math.isclose(h / w, 2.0, rel_tol=0.01)


def test_the_prior_runs_in_eval_mode_only():
    """Nothing to learn: in train mode (training) the fusion is the learned one alone, as the weights were trained."""
    net = prior_net(seed=5)
    plain = without_prior(net)
    feats, video = flat_clip(seed=5)
    net.train(), plain.train()
    assert torch.equal(queries(net, feats, video, "bidirectional"), queries(plain, feats, video, "bidirectional"))
    net.eval(), plain.eval()
    assert not torch.equal(queries(net, feats, video, "bidirectional"), queries(plain, feats, video, "bidirectional"))


def test_the_prior_without_the_fusion_is_refused():
    with pytest.raises(ValueError, match=r"temporal_sharpness_prior=True needs temporal_guidance=True"):
        VideoAnyUp.from_config("tiny", temporal_window=3, temporal_sharpness_prior=True)


# The bundled "default" weights with the prior on (stop 21) on a clip whose frame 2 is flat grey: (sum, sum of
# |x|, a ramp-weighted sum) of the output when the prior was shipped. Without the prior frame 2's output differs by
# up to 0.5 (bidirectional, look-ahead) and 0.97 (unidirectional).
BUNDLED_FLAT_FRAME = {
    "bidirectional": (1676.264892578125, 11425.1181640625, 134.14306640625),
    "lookahead": (1665.178955078125, 11476.30859375, 150.36859130859375),
    "unidirectional": (2248.02392578125, 13162.2421875, -393.42779541015625),
}


@pytest.mark.parametrize("mode", sorted(BUNDLED_FLAT_FRAME))
def test_bundled_weights_with_the_prior_give_the_output_they_gave_before(mode):
    model = VideoAnyUp.from_pretrained("default").eval()
    assert model.fusion is not None and model.fusion.prior_active
    g = torch.Generator().manual_seed(21)
    feats = torch.randn(1, 5, 6, 4, 5, generator=g)
    video = torch.rand(1, 5, 3, 40, 50, generator=g)
    video[:, 2] = 0.5
    out = run(model, feats, video, mode=mode)
    ramp = torch.linspace(-1, 1, out.numel()).view_as(out)
    got = (out.sum().item(), out.abs().sum().item(), (out * ramp).sum().item())
    for value, expected in zip(got, BUNDLED_FLAT_FRAME[mode]):
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-3)
