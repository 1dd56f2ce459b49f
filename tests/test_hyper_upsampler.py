import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from videoanyup.layers.hyper_upsampler import HyperUpsampler


@pytest.mark.parametrize("fold", ["fold", "sum"])
@pytest.mark.parametrize("size", [(29, 41), (24, 36)])
def test_tiles_equal_the_full_output(fold, size):
    big = HyperUpsampler(6, num_blocks=1, fold=fold, tile_size=10_000).eval()
    small = HyperUpsampler(6, num_blocks=1, fold=fold, tile_size=7).eval()
    small.load_state_dict(big.state_dict())
    state, frame = torch.randn(2, 6, 8, 12), torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        full = big(state, frame, size)
        tiled = small(state, frame, size)  # many 7×7 tiles, halos crossing tile borders
        region = (3, 20, 0, 17)
        alone = big(state, frame, size, region)
        alone_uncached = HyperUpsampler(6, num_blocks=1, fold=fold)
        alone_uncached.load_state_dict(big.state_dict())
        alone_uncached.kernel.cache_limit = 0
        alone_uncached = alone_uncached.eval()(state, frame, size, region)
    assert full.shape == (2, 3, *size)
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, full[..., 3:20, 0:17], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone_uncached, full[..., 3:20, 0:17], atol=1e-5, rtol=0)


def test_fold_scatters_to_neighbours_and_sum_does_not():
    fold = HyperUpsampler(4, num_blocks=0, fold="fold").eval()
    plain = HyperUpsampler(4, num_blocks=0, fold="sum").eval()
    plain.load_state_dict(fold.state_dict())
    state, frame = torch.randn(1, 4, 6, 6), torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert (fold(state, frame, (12, 12)) - plain(state, frame, (12, 12))).abs().max() > 1e-3


def test_zero_residual_path_is_bilinear():
    up = HyperUpsampler(5, num_blocks=1)
    torch.nn.init.zeros_(up.to_rgb.weight)
    torch.nn.init.zeros_(up.to_rgb.bias)
    frame = torch.rand(2, 3, 9, 13)
    out = up(torch.randn(2, 5, 9, 13), frame, (23, 40))
    torch.testing.assert_close(out, F.interpolate(frame, size=(23, 40), mode="bilinear", align_corners=False), atol=5e-6, rtol=0)


def test_zero_residual_path_is_bicubic_with_the_bicubic_skip():
    up = HyperUpsampler(5, num_blocks=1, skip="bicubic")
    torch.nn.init.zeros_(up.to_rgb.weight)
    torch.nn.init.zeros_(up.to_rgb.bias)
    frame = torch.rand(2, 3, 9, 13)
    out = up(torch.randn(2, 5, 9, 13), frame, (23, 40), region=(2, 21, 0, 40))
    expected = F.interpolate(frame, size=(23, 40), mode="bicubic", align_corners=False)[..., 2:21, :]
    torch.testing.assert_close(out, expected, atol=5e-6, rtol=0)
    with pytest.raises(ValueError, match="skip must be one of"):
        HyperUpsampler(5, num_blocks=1, skip="nearest")


def test_gradients_reach_both_branches_on_a_training_crop():
    up = HyperUpsampler(4, num_blocks=1).train()
    state = torch.randn(1, 4, 10, 10, requires_grad=True)
    out = up(state, torch.rand(1, 3, 10, 10), (33, 27), region=(5, 15, 2, 12))
    assert out.shape == (1, 3, 10, 10)
    out.square().mean().backward()
    assert state.grad.abs().sum() > 0
    assert up.kernel.first.linear.weight.grad.abs().sum() > 0


def dense_reference(up: HyperUpsampler, state, frame, size, region=None, *, phase_shift: int = 0):
    """The unit evaluated the literal way (DESIGN.md §4.5), sharing nothing with the library's evaluation but
    the modules: unfold the whole LR map, `F.interpolate` it to the HR grid, a kernel at every HR pixel
    from the hyper-network at that pixel's own floating-point offset, multiply, `F.fold` (or sum), 1×1 conv,
    LeakyReLU, 3×3 conv, plus `F.interpolate` of the frame; then crop. `phase_shift` moves every kernel
    by that many HR pixels (a deliberately wrong phase, to show the comparison would catch one)."""
    feats = up.blocks(state)
    n, c, h, w = feats.shape
    k = up.kernel_size
    H, W = size
    unfolded = F.unfold(feats, k, padding=k // 2).view(n, c * k * k, h, w)  # channel c·K² + k
    sampled = F.interpolate(unfolded, size=size, mode="bilinear", align_corners=False)
    def offsets(lr_len, hr_len):
        u = (torch.arange(hr_len, dtype=torch.float64) + phase_shift + 0.5) * lr_len / hr_len - 0.5
        return u - torch.floor(u + 0.5)
    kernels = up.kernel.compute((2 * h / H, 2 * w / W), offsets(h, H), offsets(w, W))  # (H, W, K², C)
    kernels = kernels.permute(3, 2, 0, 1).reshape(c * k * k, H, W)
    product = sampled * kernels
    if up.fold_mode == "fold":
        fused = F.fold(product.view(n, c * k * k, H * W), (H, W), k, padding=k // 2)
    else:
        fused = product.view(n, c, k * k, H, W).sum(dim=2)
    out = up.to_rgb(up.act(up.mix(fused))) + F.interpolate(frame, size=size, mode=up.skip, align_corners=False)
    top, bottom, left, right = region or (0, H, 0, W)
    return out[..., top:bottom, left:right]


# Integer, non-integer (37 phases over 10 LR rows), asymmetric, gcd 1 on one axis, a downscale and ×1.
GRIDS = [((9, 12), (36, 48)), ((10, 12), (37, 44)), ((9, 12), (18, 47)), ((12, 10), (13, 37)), ((8, 8), (8, 8)), ((9, 9), (7, 5))]


@pytest.mark.parametrize("fold", ["fold", "sum"])
@pytest.mark.parametrize("lr, size", GRIDS)
@pytest.mark.parametrize("tile_size", [5, 16, 10_000])  # 5: tiles split the phase rows (37 phases per period)
def test_equals_the_dense_per_pixel_reference(fold, lr, size, tile_size):
    up = HyperUpsampler(5, num_blocks=1, fold=fold, tile_size=tile_size, skip="bicubic" if fold == "sum" else "bilinear").eval()
    state, frame = torch.randn(2, 5, *lr), torch.rand(2, 3, *lr)
    region = (1, size[0], min(2, size[1] - 1), size[1] - 1) if size[1] > 2 else None
    with torch.no_grad():
        expected = dense_reference(up, state, frame, size)
        torch.testing.assert_close(up(state, frame, size), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(up(state, frame, size, region), dense_reference(up, state, frame, size, region), atol=1e-5, rtol=0)
        up.kernel.cache_limit = 0  # the path for grids with too many phases: kernels of each tile's phases only
        torch.testing.assert_close(up(state, frame, size), expected, atol=1e-5, rtol=0)


def test_the_reference_comparison_catches_a_wrong_phase_or_a_shifted_tile():
    """What 1e-5 guards against: a kernel one phase off, or a tile one pixel off, moves the output by far more."""
    up = HyperUpsampler(5, num_blocks=1).eval()
    lr, size = (10, 12), (37, 44)
    state, frame = torch.randn(1, 5, *lr), torch.rand(1, 3, *lr)
    with torch.no_grad():
        got = up(state, frame, size)
        wrong_phase = dense_reference(up, state, frame, size, phase_shift=1)
        shifted_tile = up(state, frame, size, (1, 37, 0, 44))
    assert (got - wrong_phase).abs().max() > 1e-2
    assert (got[..., :36, :] - shifted_tile).abs().max() > 1e-2


class DispatchCounter(TorchDispatchMode):
    """ATen operations (views excluded) and host scalar reads (`aten._local_scalar_dense`), as
    `benchmarks/count_ops.py` counts them."""

    def __init__(self):
        super().__init__()
        self.ops, self.host_reads = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.host_reads += 1
        elif not func.is_view:
            self.ops += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("skip", ["bilinear", "bicubic"])
def test_operations_per_frame_do_not_depend_on_the_scale_and_read_nothing_on_the_host(skip):
    up = HyperUpsampler(4, num_blocks=1, tile_size=16, skip=skip).eval()
    state, frame = torch.randn(1, 4, 12, 16), torch.rand(1, 3, 12, 16)
    counts = {}
    # ×4 and ×3.7 (37 phases per period on both axes): 3 × 4 tiles each.
    for size in [(48, 64), (44, 59)]:
        with torch.no_grad():
            up(state, frame, size)  # the first frame of a grid makes its kernels and indices
            counter = DispatchCounter()
            with counter:
                up(state, frame, size)
        counts[size] = counter
        assert counter.host_reads == 0
    assert counts[(44, 59)].ops == counts[(48, 64)].ops
    assert counts[(48, 64)].ops <= 12 * 12  # a dozen per tile, with the edges and the skip


def test_grids_first_seen_under_inference_mode_still_train():
    up = HyperUpsampler(4, num_blocks=1)
    state, frame = torch.randn(1, 4, 7, 9), torch.rand(1, 3, 7, 9)
    with torch.inference_mode():
        up.eval()(state, frame, (17, 23))
    up.train()
    out = up(state.requires_grad_(), frame, (17, 23), region=(2, 12, 3, 20))
    out.mean().backward()
    assert state.grad.abs().sum() > 0
