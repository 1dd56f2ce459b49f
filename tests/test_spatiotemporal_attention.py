"""Spatio-temporal convex attention (DESIGN.md §5.5): values from aligned neighbouring frames.

The value path, a dense per-query reference of the one softmax over the candidates of several frames,
the neighbours of each mode, streams (default arguments, flat memory), the cells the neighbour windows read, and
the agreement bias. The invariances, chunking, causality and stream-equals-batch tests of `test_videoanyup.py`
run on the same architecture.
"""

import pytest
import torch
from einops import rearrange

import videoanyup as vau
from tiny_networks import tiny_net
from videoanyup.functional.grid import axis_phases
from videoanyup.layers.frame_cues import PAIR_CUES
from videoanyup.layers.temporal_candidates import cell_rows, neighbour_deltas
from videoanyup.layers.window_attention import WindowAttention, window_offsets
from videoanyup.models.videoanyup import CONFIGS, VideoAnyUp


@pytest.fixture(scope="module")
def net():
    return tiny_net(seed=1)


def clip(b=1, t=5, c=5, h=4, w=5, size=(11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, h, w, generator=g), torch.rand(b, t, 3, *size, generator=g)


def run(model, feats, video, **options):
    with torch.no_grad():
        return model(feats, video, **options)


def test_neighbours_by_mode():
    assert neighbour_deltas("bidirectional", reach=2, lookahead=3) == (-2, -1, 1, 2)
    assert neighbour_deltas("unidirectional", reach=2, lookahead=3) == (-2, -1)
    assert neighbour_deltas("lookahead", reach=2, lookahead=3) == (-2, -1, 1, 2, 3)
    assert neighbour_deltas("perframe", reach=2, lookahead=3) == ()
    assert CONFIGS["default"].neighbour_window == 3 and VideoAnyUp.from_config("tiny", neighbour_window=0).temporal is None
    with pytest.raises(ValueError, match="mode"):
        neighbour_deltas("sideways", reach=2, lookahead=2)


@pytest.mark.parametrize("mode, moves", [("bidirectional", True), ("unidirectional", True), ("perframe", False)])
def test_value_path_changing_only_the_previous_features_moves_output_t(net, mode, moves):
    feats, video = clip()
    t = 2
    out = run(net, feats, video, mode=mode)
    other = feats.clone()
    other[:, t - 1] = torch.randn_like(other[:, t - 1]) * 3  # the video, and so the flows, stay fixed
    changed = run(net, other, video, mode=mode)
    relative = (changed[:, t] - out[:, t]).abs().max() / out[:, t].abs().max()
    if moves:
        assert relative > 0.05  # frame t−1's vectors are candidates of frame t
    else:
        assert (changed[:, t] - out[:, t]).abs().max() == 0


def test_unidirectional_output_never_reads_the_next_frame(net):
    feats, video = clip()
    out = run(net, feats, video, mode="unidirectional")
    for t in (1, 3):
        other_feats, other_video = feats.clone(), video.clone()
        other_feats[:, t] = torch.randn_like(other_feats[:, t]) * 5
        other_video[:, t] = torch.rand_like(other_video[:, t])
        changed = run(net, other_feats, other_video, mode="unidirectional")
        assert (changed[:, :t] - out[:, :t]).abs().max() == 0
        assert (changed[:, t] - out[:, t]).abs().max() > 1e-3


def test_lookahead_with_neighbours_sees_k_frames_ahead_only(net):
    k = net.config.lookahead
    feats, video = clip(t=6)
    out = run(net, feats, video, mode="lookahead")
    other_feats, other_video = feats.clone(), video.clone()
    other_feats[:, k + 1 :] = torch.randn_like(other_feats[:, k + 1 :]) * 5
    other_video[:, k + 1 :] = torch.rand_like(other_video[:, k + 1 :])
    changed = run(net, other_feats, other_video, mode="lookahead")
    assert (changed[:, 0] - out[:, 0]).abs().max() == 0  # frame 0 reads frames 0..k only
    assert (changed[:, 1] - out[:, 1]).abs().max() > 1e-3  # frame 1 reads frame 1 + k


def dense_reference(attention: WindowAttention, guidance, key_feats, values, neighbours):
    """Per HR query: every candidate of its own window and of each neighbour window, one softmax, Σ w·v.

    Returns the output `(N, C, H, W)` and the weights `(N, H, W, L)` (L = window² + D·K, −1: masked).
    """
    n, c, h, w = values.shape
    hh, ww = guidance.shape[-2:]
    heads, dim = attention.heads, attention.head_dim
    q = rearrange(attention.query(guidance), "n (e d) y x -> n y x e d", e=heads)
    k_own = rearrange(attention.key(key_feats), "n (e d) y x -> n y x e d", e=heads)
    k_other = rearrange(attention.key(neighbours.keys), "n c y x -> (n y x) c")
    v_other = rearrange(neighbours.values, "n c y x -> (n y x) c")
    rows = axis_phases(h, hh).nearest.clamp(0, h - 1)
    cols = axis_phases(w, ww).nearest.clamp(0, w - 1)
    rows_offset, cols_offset = axis_phases(h, hh).offset, axis_phases(w, ww).offset
    prior = attention.prior((h, w), (hh, ww))  # (window², heads, H, W)
    offsets = window_offsets(attention.window)
    out = torch.zeros(n, c, hh, ww)
    all_weights = []
    for m in range(n):
        for y in range(hh):
            for x in range(ww):
                i, j = int(rows[y]), int(cols[x])
                keys, vals, bias = [], [], []
                for o, (dy, dx) in enumerate(offsets):
                    yy, xx = i + dy, j + dx
                    inside = 0 <= yy < h and 0 <= xx < w
                    keys.append(k_own[m, yy, xx] if inside else torch.zeros(heads, dim))
                    vals.append(values[m, :, yy, xx] if inside else torch.zeros(c))
                    bias.append(prior[o, :, y, x] if inside else torch.full((heads,), float("-inf")))
                centre = neighbours.centre[m, :, :, i, j]  # (D, 2), (x, y)
                residual = centre - centre.round()  # frame s's own cells around the rounded centre
                centre = centre.round()
                pos = centre[:, None, :] + neighbours.cells  # (D, K, 2), (x, y)
                outside = (pos[..., 0] < -0.5) | (pos[..., 0] > w - 0.5) | (pos[..., 1] < -0.5) | (pos[..., 1] > h - 0.5)
                kf, vf = neighbours.key_frame[m][:, None], neighbours.frame[m][:, None]  # (D, 1)
                keys += list(k_other[cell_rows(kf, pos, (h, w))].view(-1, heads, dim))  # D·K of (heads, d), whole cells
                vals += list(v_other[cell_rows(vf, pos, (h, w))].view(-1, c))
                b = neighbours.bias[m].permute(0, 2, 1)  # (D, K, heads)
                phi = torch.tensor([float(cols_offset[x]), float(rows_offset[y])])  # the query's offset
                delta = neighbours.cells[None] - residual[:, None, :] - phi  # (D, K, 2): δ = o − ρ − φ per axis
                dist = neighbours.distance[:, None].expand(-1, delta.shape[1])  # (D, K)
                b = b + neighbours.displacement(delta[..., 0], dist) + neighbours.displacement(delta[..., 1], dist)
                b = b + neighbours.cell_bias[m, :, :, i, j][:, None, :]  # one logit per (neighbour, head) at this cell
                b = b.masked_fill(outside[..., None], float("-inf"))
                bias += list(b.reshape(-1, heads))
                keys, vals, bias = torch.stack(keys), torch.stack(vals), torch.stack(bias)  # (L, heads, ·)
                logits = torch.einsum("ed,led->el", q[m, y, x], keys) / dim**0.5 + bias.T  # (heads, L)
                weights = logits.softmax(dim=-1).mean(dim=0)  # (L,)
                out[m, :, y, x] = weights @ vals
                all_weights.append(weights)
    return out, torch.stack(all_weights).view(n, hh, ww, -1)


@pytest.mark.parametrize("mode", ["bidirectional", "unidirectional"])
def test_output_is_one_convex_combination_over_the_candidates_of_several_frames(net, mode):
    feats, video = clip(t=4, h=3, w=4, size=(7, 9), seed=3)
    captured = []
    original = net.attention.forward

    def spy(guidance, key_feats, values, **options):
        result = original(guidance, key_feats, values, **options)
        captured.append((guidance, key_feats, values, options["neighbours"], result.clone()))
        return result

    net.attention.forward = spy
    try:
        out = run(net, feats, video, mode=mode, query_tile=5)  # several blocks per frame
    finally:
        del net.attention.forward
    assert len(captured) == 4  # one call per frame: the per-frame step
    masses = []
    for t, (guidance, key_feats, values, neighbours, result) in enumerate(captured):
        assert neighbours is not None and neighbours.frame.shape == (1, 4 if mode == "bidirectional" else 2)
        with torch.no_grad():
            reference, weights = dense_reference(net.attention, guidance, key_feats, values, neighbours)
        assert torch.allclose(result, out[:, t], atol=1e-6)  # the captured call is the model's output
        assert torch.allclose(reference, result, atol=1e-5)
        assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)
        masses.append(weights[..., net.config.window**2 :].sum(-1).mean())  # the mass on other frames
    if mode == "unidirectional":
        assert masses[0] == 0  # frame 0 has no past
    assert min(masses[2:]) > 0.05  # the other frames really contribute


def test_neighbours_outside_the_clip_are_masked_not_mirrored(net):
    """Two frames, bidirectional: frame 0 reads frame 1 once (no mirrored t+2 = frame 0 counted again)."""
    feats, video = clip(t=2)
    captured = []
    original = net.attention.forward

    def spy(guidance, key_feats, values, **options):
        captured.append(options["neighbours"])
        return original(guidance, key_feats, values, **options)

    net.attention.forward = spy
    try:
        out = run(net, feats, video, mode="bidirectional")
    finally:
        del net.attention.forward
    masked = [torch.isinf(nb.bias).all(dim=(2, 3))[0].tolist() for nb in captured]  # per frame, deltas (−2, −1, 1, 2)
    assert masked == [[True, True, False, True], [True, False, True, True]]
    assert torch.equal(captured[0].values[2], feats[0, 1]) and torch.equal(captured[1].values[1], feats[0, 0])
    assert torch.isfinite(out).all()
    assert (out - run(net, feats, video, mode="perframe")).abs().max() > 1e-3


def test_stream_works_with_default_arguments(net, tmp_path):
    trained = VideoAnyUp(net.config, trained_modes=["bidirectional", "unidirectional", "perframe"])
    trained.load_state_dict(net.state_dict())
    trained.eval()
    feats, video = clip(t=4)
    offline = run(trained, feats, video, mode="unidirectional")
    for stream in (trained.stream(), vau.upsample_stream(model=trained)):
        assert stream.mode == "unidirectional"
        outs = [o for t in range(4) for o in stream.push(feats[:, t], video[:, t])] + stream.flush()
        assert torch.allclose(torch.stack(outs, 1), offline, atol=1e-5)
    bundled = vau.VideoAnyUp.from_pretrained("default")  # trained for all four modes
    stream = bundled.stream()
    assert stream.mode == "unidirectional"
    assert len(stream.push(feats[:, 0], video[:, 0])) == 1
    perframe_only = VideoAnyUp(net.config, trained_modes=["bidirectional", "perframe"])
    assert perframe_only.stream().mode == "perframe"
    only_bidirectional = VideoAnyUp(net.config, trained_modes=["bidirectional"])
    with pytest.raises(ValueError, match="streams"):
        only_bidirectional.stream()


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_stream_keeps_a_ring_not_the_clip(net, mode):
    feats, video = clip(t=12, h=3, w=3, size=(6, 6))
    stream = net.stream(mode=mode)
    held = []
    outs = []
    guidance_buffers, lr_buffers = set(), set()  # every HR guidance and LR tensor the stream held, by address
    for t in range(12):
        outs += stream.push(feats[:, t], video[:, t])
        held.append(len(stream.frames))
        kept = [f.guidance for f in stream.frames.values() if f.guidance is not None]
        guidance_buffers |= {g.data_ptr() for g in kept}
        frames = stream.frames.values()
        kept = [x for f in frames for x in (f.feats, f.descriptor, f.code, f.keys, *f.structure.tensors()) if x is not None]
        flows = list(stream._flows.values()) + list(stream._grid_flows.values()) + list(stream._gates.values())
        lr_buffers |= {x.data_ptr() for x in kept + stream.loop.states + flows}
    outs += stream.flush()
    reach, k = net.config.temporal_reach, net.config.lookahead if mode == "lookahead" else 0
    assert max(held) <= reach + 2 * k + 2 and held[-1] == held[6]  # flat in T
    # What the stream holds lives in buffers made once and reused (SlotRing): the HR guidance in k + 2 of them.
    assert guidance_buffers == stream.held_guidance.data_ptrs() and len(guidance_buffers) == k + 2
    assert lr_buffers <= stream.held.data_ptrs()  # and so do the LR tensors of the ring: no fresh ones per frame
    assert torch.allclose(torch.stack(outs, 1), run(net, feats, video, mode=mode), atol=1e-5)


def test_cell_reads_take_whole_vectors_of_the_neighbour_and_place_them_between_the_cells():
    """Each candidate is one of frame s's vectors, unmixed, and the displacement bias sees where it lands in frame
    t (the rounding residual)."""
    from videoanyup.layers.temporal_candidates import TemporalCandidates

    table = torch.randn(2 * 4 * 5, 6)  # 2 frames of 4 × 5 cells
    position = torch.tensor([[1.4, 2.6], [0.0, 3.0], [6.0, -2.0]]).round()  # (x, y), clamped to the frame
    rows = cell_rows(torch.tensor([1, 0, 1]), position, (4, 5))
    assert torch.equal(table[rows], table[torch.tensor([20 + 3 * 5 + 1, 3 * 5 + 0, 20 + 0 * 5 + 4])])
    with pytest.raises(ValueError, match="side"):
        TemporalCandidates(4, heads=2, side=2)

    # One LR cell, one query at its centre, a neighbour displaced by +0.4 cell (x): the window snaps to
    # the neighbour's cell 0, which lies 0.4 cell left of the query once carried back; at +0.6 it snaps to
    # cell 1, 0.4 cell right. The displacement bias is what tells the two apart.
    attention = WindowAttention(4, 4, heads=1, head_dim=2, window=1, hyper_kernel=False)
    temporal = TemporalCandidates(4, heads=1, side=1)
    with torch.no_grad():
        temporal.displacement.net[-1].bias.zero_()
        for layer in (attention.query, attention.key):
            layer.weight.zero_()
            layer.bias.zero_()
    # logits 0 everywhere but the displacement bias; make it −|δ|·10 on x (y is 0 here, g(0) set to 0 too)
    temporal.displacement.forward = lambda d, delta: (-10 * d.abs())[..., None]
    own = torch.zeros(1, 2, 1, 2)  # frame t: 1 × 2 cells, vectors (0, 0) — the neighbour decides
    other = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])  # (1, C=2, 1, 2): cell 0 = (1, 2), cell 1 = (3, 4)
    guidance = torch.zeros(1, 4, 1, 2)
    keys = torch.zeros(1, 4, 1, 2)
    for shift, expected_cell in ((0.4, 0), (0.6, 1)):
        centre = torch.tensor([[[[[0.0 + shift, 1.0 + shift]], [[0.0, 0.0]]]]])  # (N=1, D=1, 2, h=1, w=2)
        nb = temporal.candidates(keys, other, torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64),
                                 centre, (-1,), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, 1, 1, 2))
        with torch.no_grad():
            out = attention(guidance, keys, own, neighbours=nb)
        # output cell 0: own (0, 0) with logit 0, neighbour cell `expected_cell` with logit −10·0.4
        w = torch.tensor(-4.0).exp() / (1 + torch.tensor(-4.0).exp())
        assert torch.allclose(out[0, :, 0, 0], w * other[0, :, 0, expected_cell], atol=1e-6)


def test_agreement_cue_is_zero_where_the_neighbour_agrees_under_the_flow():
    """1 − cos and the mean |difference| between frame t's code and the neighbour's at the window centre."""
    from videoanyup.functional.warp import base_grid
    from videoanyup.layers.agreement_bias import code_disagreement

    g = torch.Generator().manual_seed(7)
    code = torch.randn(2, 6, 5, 7, generator=g)
    centre = base_grid(5, 7, like=code).expand(2, -1, -1, -1)  # no motion
    assert code_disagreement(code, code, centre).abs().max() < 1e-5
    moved = torch.roll(code, shifts=1, dims=-1)  # the neighbour: frame t one cell to the right
    shifted = centre + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert code_disagreement(code, moved, shifted)[..., :, :6].abs().max() < 1e-5  # inside the frame
    other = code.clone()
    other[:, :, 1:3, 2:4] = torch.randn(2, 6, 2, 2, generator=g)  # the neighbour saw something else there
    cue = code_disagreement(code, other, centre)  # (N, 2, h, w)
    assert (cue[:, :, 1:3, 2:4] > 0.05).all() and cue[:, :, 3:].abs().max() < 1e-5


def test_agreement_bias_leaves_absent_neighbours_out_and_starts_at_zero():
    from videoanyup.layers.agreement_bias import AgreementBias

    torch.manual_seed(8)
    bias = AgreementBias(heads=3, hidden=8)
    code, others = torch.randn(1, 6, 4, 5), torch.randn(1, 2, 6, 4, 5)
    centres = torch.rand(1, 2, 2, 4, 5) * 4
    pair = torch.randn(1, 2, PAIR_CUES, 4, 5)
    present = torch.tensor([[True, False]])
    assert bias(code, others, centres, (-1, 1), present, pair).abs().max() == 0  # zero-initialised
    torch.nn.init.normal_(bias.net[-1].weight)
    out = bias(code, others, centres, (-1, 1), present, pair)
    assert out.shape == (1, 2, 3, 4, 5)
    changed = others.clone()
    changed[:, 1] = 100 * torch.randn(6, 4, 5)  # the absent neighbour's code does not enter the mean
    assert torch.allclose(bias(code, changed, centres, (-1, 1), present, pair)[:, 0], out[:, 0], atol=1e-6)
    both = bias(code, changed, centres, (-1, 1), torch.tensor([[True, True]]), pair)
    assert (both[:, 0] - out[:, 0]).abs().max() > 1e-3  # once present, it does
    cues = pair.clone()
    cues[:, 0, 0] += 3.0  # the neighbour is much sharper here: the contrast-normalised cues enter the bias
    assert (bias(code, others, centres, (-1, 1), present, cues)[:, 0] - out[:, 0]).abs().max() > 1e-3
