"""Window attention: equals a per-query reference, is chunk-invariant and convex within its window."""

import math

import pytest
import torch

import videoanyup.layers.attention_backend as attention_backend
import videoanyup.layers.window_attention as window_attention
from videoanyup.functional.grid import axis_phases
from videoanyup.layers.attention_backend import attention_probabilities
from videoanyup.layers.window_attention import WindowAttention, axis_runs, window_offsets


def dense_reference(layer, guidance, key_feats, values):
    """Per HR query: gather its window, softmax per head, average heads, mix the raw values."""
    n, c, h, w = values.shape
    hh, ww = guidance.shape[-2:]
    rows, cols = axis_phases(h, hh).nearest, axis_phases(w, ww).nearest
    q, k = layer.query(guidance), layer.key(key_feats)
    prior = layer.prior((h, w), (hh, ww)) if layer.prior is not None else None  # (window², heads, H, W)
    out = values.new_zeros(n, c, hh, ww)
    for y in range(hh):
        for x in range(ww):
            logits, vals = [], []
            for o, (dy, dx) in enumerate(window_offsets(layer.window)):
                ly, lx = int(rows[y]) + dy, int(cols[x]) + dx
                if 0 <= ly < h and 0 <= lx < w:
                    qk = (q[:, :, y, x] * k[:, :, ly, lx]).reshape(n, layer.heads, -1).sum(-1)
                    qk = qk / math.sqrt(layer.head_dim)
                    logits.append(qk + (prior[o, :, y, x] if prior is not None else 0))
                    vals.append(values[:, :, ly, lx])
            probs = torch.stack(logits, -1).softmax(-1).mean(1)  # (N, valid cells)
            out[:, :, y, x] = (probs[:, :, None] * torch.stack(vals, 1)).sum(1)
    return out


def make(window=3, prior=True, backend="sdpa"):
    torch.manual_seed(0)
    return WindowAttention(6, 5, heads=2, head_dim=4, window=window, hyper_kernel=prior, backend=backend,
                           prior_options=dict(frequencies=4, group_dim=8, hidden=8, depth=2)).eval()


GRIDS = [  # (h, w, H, W, window)
    (4, 4, 8, 8, 3),  # integer scale
    (5, 6, 13, 9, 3),  # non-integer, asymmetric
    (7, 5, 4, 11, 3),  # one axis smaller than the grid
    (3, 3, 3, 3, 7),  # window larger than the grid
    (4, 5, 10, 15, 5),
]


@pytest.mark.parametrize("h, w, H, W, window", GRIDS)
@pytest.mark.parametrize("prior", [True, False])
def test_equals_per_query_reference(h, w, H, W, window, prior):
    layer = make(window, prior)
    guidance, keys, values = torch.randn(2, 6, H, W), torch.randn(2, 5, h, w), torch.randn(2, 7, h, w)
    with torch.no_grad():
        out = layer(guidance, keys, values)
        assert torch.allclose(out, dense_reference(layer, guidance, keys, values), atol=1e-5)


@pytest.mark.parametrize("h, w, H, W, window", GRIDS)
def test_query_tiles_and_prior_paths_do_not_change_the_result(h, w, H, W, window, monkeypatch):
    layer = make(window)
    guidance, keys, values = torch.randn(2, 6, H, W), torch.randn(2, 5, h, w), torch.randn(2, 7, h, w)
    with torch.no_grad():
        whole = layer(guidance, keys, values)
        for tile in (1, 7, 50):
            assert torch.allclose(layer(guidance, keys, values, query_tile=tile), whole, atol=1e-6)
        monkeypatch.setattr(window_attention, "PRIOR_CLASS_LIMIT", 0)  # gather the prior per block
        assert torch.allclose(layer(guidance, keys, values, query_tile=9), whole, atol=1e-6)


def test_backends_agree():
    guidance, keys, values = torch.randn(1, 6, 11, 9), torch.randn(1, 5, 4, 3), torch.randn(1, 7, 4, 3)
    with torch.no_grad():
        a = make(backend="sdpa")(guidance, keys, values)
        b = make(backend="math")(guidance, keys, values)
    assert torch.allclose(a, b, atol=1e-6)
    q, k, bias = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 6, 4), torch.randn(3, 2, 5, 6)
    bias[..., 0] = float("-inf")
    probs = attention_probabilities(q, k, bias)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 2, 5), atol=1e-6) and probs[..., 0].abs().max() == 0
    # On the CPU "sdpa" runs the explicit product; torch's kernel (what CUDA runs) gives the same probabilities.
    assert torch.allclose(attention_backend._sdpa(q, k, bias), attention_backend._math(q, k, bias), atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        attention_probabilities(q, k, bias, backend="flash")
    with pytest.raises((ImportError, ValueError), match="xformers"):  # optional, CUDA only
        attention_probabilities(q, k, bias, backend="xformers")


def test_output_lies_within_its_window_and_constants_stay():
    h, w, H, W, window = 6, 5, 17, 12, 3
    layer = make(window)
    guidance, keys, values = torch.randn(1, 6, H, W) * 5, torch.randn(1, 5, h, w) * 5, torch.randn(1, 4, h, w)
    with torch.no_grad():
        out = layer(guidance, keys, values)
        const = layer(guidance, keys, torch.full((1, 4, h, w), -2.5))
    assert (const + 2.5).abs().max() <= 1e-5
    rows, cols = axis_phases(h, H).nearest, axis_phases(w, W).nearest
    r = window // 2
    for y in range(H):
        for x in range(W):
            cell = values[0, :, max(0, rows[y] - r) : rows[y] + r + 1, max(0, cols[x] - r) : cols[x] + r + 1]
            lo, hi = cell.amin(dim=(1, 2)), cell.amax(dim=(1, 2))
            assert bool((out[0, :, y, x] >= lo - 1e-6).all() and (out[0, :, y, x] <= hi + 1e-6).all())


@pytest.mark.parametrize("lr, hr", [(4, 8), (5, 13), (7, 4), (73, 1022), (180, 666)])
def test_axis_runs_partition_the_hr_axis_by_nearest_cell(lr, hr):
    runs = axis_runs(lr, hr)
    nearest = axis_phases(lr, hr).nearest
    assert torch.equal(runs.count, torch.bincount(nearest, minlength=lr))
    listed = runs.slots[runs.slots >= 0]
    assert torch.equal(listed, torch.arange(hr))  # every HR position once, in order
    for i in range(lr):
        assert bool((nearest[runs.slots[i][runs.slots[i] >= 0]] == i).all())


def test_window_must_be_odd():
    with pytest.raises(ValueError, match="window"):
        WindowAttention(4, 4, window=4)


def test_work_per_block_follows_the_window_not_the_grid(monkeypatch):
    """Each block gathers keys/values of its own cells' windows only: nothing scales with h·w per query."""
    seen = []
    original = attention_probabilities

    def spy(q, k, bias, *, backend):
        seen.append((q.shape, k.shape))
        return original(q, k, bias, backend=backend)

    monkeypatch.setattr(window_attention, "attention_probabilities", spy)
    layer = make(window=3, prior=False)
    with torch.no_grad():
        layer(torch.randn(1, 6, 40, 40), torch.randn(1, 5, 20, 20), torch.randn(1, 3, 20, 20), query_tile=64)
    assert seen and all(k[-2] == 9 for _, k in seen)  # 3×3 window keys, whatever the 20×20 grid
    assert all(q[1] * q[3] <= 64 for q, _ in seen)  # at most query_tile queries per block
