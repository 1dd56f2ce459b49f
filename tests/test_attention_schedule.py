"""Window attention with its blocks' indices made once per grid equals the earlier per-block path
(`reference_window_attention`, kept here) to 1e-5, and reads no tensor value back to the host per frame.

Pinned at the layer (grids with and without padding slots, query tiles, the prior's class table and its
per-block fallback) and through whole networks (frame t's own window): batch, chunked and streamed, every mode.
The neighbour candidates are pinned against a dense per-query reference in test_spatiotemporal_attention.py.
"""

import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import videoanyup.layers.window_attention as window_attention
from videoanyup.layers.temporal_candidates import DisplacementBias, NeighbourCandidates, window_cells
from videoanyup.layers.window_attention import WindowAttention

sys.path.insert(0, str(Path(__file__).parent))
from reference_window_attention import reference_forward, use_reference  # noqa: E402
from tiny_networks import tiny_net  # noqa: E402

HOST_READ = torch.ops.aten._local_scalar_dense.default


class HostReads(TorchDispatchMode):
    """Counts `.item()` / `int(t)` / `bool(t)` reads of tensor values (`aten._local_scalar_dense`), apart from
    the input checks of `videoanyup.validation` (finite values, video in [0, 1]: the documented contract)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is HOST_READ and not any(f.filename.endswith("validation.py") for f in traceback.extract_stack()):
            self.count += 1
        return func(*args, **(kwargs or {}))


def layer(window=3, prior=True):
    torch.manual_seed(0)
    return WindowAttention(6, 5, heads=2, head_dim=4, window=window, hyper_kernel=prior,
                           prior_options=dict(frequencies=4, group_dim=8, hidden=8, depth=2)).eval()


def candidates(n, h, w, c, d=3, side=3, seed=1):
    """Random neighbour candidates: tables of 2N frames, centres that leave the frame at places, one absent."""
    g = torch.Generator().manual_seed(seed)
    frame = torch.randint(0, 2 * n, (n, d), generator=g)
    centre = torch.rand(n, d, 2, h, w, generator=g) * torch.tensor([w + 2.0, h + 2.0]).view(1, 1, 2, 1, 1) - 1.5
    bias = torch.randn(n, d, 2, side * side, generator=g)
    bias[0, -1] = float("-inf")  # a neighbour outside the clip
    keys, values = torch.randn(2 * n, 5, h, w, generator=g), torch.randn(2 * n, c, h, w, generator=g)
    displacement = DisplacementBias(2, 8)
    torch.nn.init.normal_(displacement.net[-1].weight, generator=g)
    distance = torch.arange(1.0, d + 1)
    cell_bias = torch.randn(n, d, 2, h, w, generator=g)
    return NeighbourCandidates(keys, values, frame, frame, centre, bias, window_cells(side), displacement, distance, cell_bias)


GRIDS = [  # (h, w, H, W, window)
    (4, 4, 8, 8, 3),  # integer scale
    (5, 6, 13, 9, 3),  # non-integer, asymmetric: padding slots on both axes
    (7, 5, 4, 11, 3),  # one axis smaller than the grid: cells that own no pixel
    (3, 3, 3, 3, 7),  # window larger than the grid
    (4, 5, 10, 15, 5),
]


@pytest.mark.parametrize("h, w, H, W, window", GRIDS)
def test_layer_equals_the_old_path(h, w, H, W, window, monkeypatch):
    attention = layer(window)
    guidance, keys, values = torch.randn(2, 6, H, W), torch.randn(2, 5, h, w), torch.randn(2, 7, h, w)
    nb = None
    with torch.no_grad():
        for tile in (None, 1, 7, 50):
            new = attention(guidance, keys, values, query_tile=tile, neighbours=nb)
            old = reference_forward(attention, guidance, keys, values, query_tile=tile, neighbours=nb)
            torch.testing.assert_close(new, old, atol=1e-5, rtol=0)
        monkeypatch.setattr(window_attention, "PRIOR_CLASS_LIMIT", 0)  # the prior read per block
        new = attention(guidance, keys, values, query_tile=9, neighbours=nb)
        torch.testing.assert_close(new, reference_forward(attention, guidance, keys, values, query_tile=9, neighbours=nb), atol=1e-5, rtol=0)


def test_no_host_reads_once_the_plan_is_made():
    attention = layer(3)
    guidance, keys, values = torch.randn(2, 6, 13, 9), torch.randn(2, 5, 5, 6), torch.randn(2, 7, 5, 6)
    nb = candidates(2, 5, 6, 7)
    with torch.no_grad():
        attention(guidance, keys, values, query_tile=7, neighbours=nb)  # makes the plan and its blocks
        with HostReads() as reads:
            attention(guidance, keys, values, query_tile=7, neighbours=nb)
    assert reads.count == 0


def test_plans_are_cached_per_weights_and_fresh_while_training():
    attention = layer(3)
    with torch.no_grad():
        plan = attention.plan((5, 6), (13, 9), "cpu")
        assert attention.plan((5, 6), (13, 9), "cpu") is plan
        attention.prior.head.bias.add_(1.0)  # new weights: a new prior, a new plan
        assert attention.plan((5, 6), (13, 9), "cpu") is not plan
    grad_plan = attention.plan((5, 6), (13, 9), "cpu")  # gradients recorded: never from the cache
    assert grad_plan.classes[0].requires_grad and attention.plan((5, 6), (13, 9), "cpu") is not grad_plan


def clip(t=5, size=(11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, t, 5, 4, 5, generator=g), torch.rand(2, t, 3, *size, generator=g)


def outputs(net, feats, video, mode, size):
    """Batch, chunked (2 frames, query tile 5) and, for the causal modes, streamed outputs."""
    with torch.no_grad():
        result = {
            "batch": net(feats, video, mode=mode, size=size),
            "chunked": torch.cat([o for _, o in net.iter_chunks(feats, video, mode=mode, size=size, chunk_frames=2, query_tile=5)], dim=1),
        }
        if mode != "bidirectional":
            stream = net.stream(mode=mode, size=size)
            frames = [o for t in range(feats.shape[1]) for o in stream.push(feats[:, t], video[:, t])]
            result["stream"] = torch.stack(frames + stream.flush(), dim=1)
    return result


@pytest.mark.parametrize("mode", ["bidirectional", "unidirectional", "lookahead", "perframe"])
@pytest.mark.parametrize("size", [(11, 13), (8, 20)])
def test_networks_equal_the_old_path(mode, size, monkeypatch):
    """Frame t's own window (the ablation without neighbour windows); the neighbour candidates are pinned against
    a dense per-query reference in test_spatiotemporal_attention.py."""
    net = tiny_net(neighbours=False)
    feats, video = clip()
    new = outputs(net, feats, video, mode, size)
    with monkeypatch.context() as patch:
        use_reference(patch)
        old = outputs(net, feats, video, mode, size)
    for how in new:
        torch.testing.assert_close(new[how], old[how], atol=1e-5, rtol=0, msg=lambda m: f"{how}: {m}")


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_a_streamed_frame_reads_no_tensor_value_after_warm_up(mode):
    net = tiny_net()
    feats, video = clip(t=6)
    stream = net.stream(mode=mode)
    push = type(stream).push.__wrapped__  # without `inference_mode`, whose tensors hide their reads from the counter
    counts = []
    for t in range(6):
        with torch.no_grad(), HostReads() as reads:
            push(stream, feats[:, t], video[:, t])
        counts.append(reads.count)
    assert counts[4:] == [0, 0], counts  # the plan and its blocks are made with the first frames


def test_default_query_tile_follows_the_device(monkeypatch):
    """Small blocks on the CPU, 4× larger on an accelerator (fewer launches); the result never depends on it."""
    assert window_attention.default_query_tile(torch.device("cpu")) == window_attention.DEFAULT_QUERY_TILE
    assert window_attention.default_query_tile(torch.device("cuda", 0)) == window_attention.ACCELERATOR_QUERY_TILE
    assert window_attention.ACCELERATOR_QUERY_TILE == 4 * window_attention.DEFAULT_QUERY_TILE
    attention = layer(3)
    guidance, keys, values = torch.randn(2, 6, 13, 9), torch.randn(2, 5, 5, 6), torch.randn(2, 7, 5, 6)
    with torch.no_grad():
        small = attention(guidance, keys, values)
        monkeypatch.setattr(window_attention, "DEFAULT_QUERY_TILE", 5)  # many blocks
        torch.testing.assert_close(attention(guidance, keys, values), small, atol=1e-6, rtol=0)
