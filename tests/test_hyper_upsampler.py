import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("fold", ["fold", "sum"])
@pytest.mark.parametrize("lr, size", [((9, 12), (36, 48)), ((10, 12), (37, 44)), ((9, 12), (18, 47)), ((12, 10), (13, 37)), ((8, 8), (8, 8))])
def test_phase_convolution_equals_the_literal_evaluation(fold, lr, size):
    literal = HyperUpsampler(5, num_blocks=1, fold=fold, phase_convolution=False, tile_size=16).eval()
    fast = HyperUpsampler(5, num_blocks=1, fold=fold, phase_convolution=True, tile_size=16).eval()
    fast.load_state_dict(literal.state_dict())
    state, frame = torch.randn(2, 5, *lr), torch.rand(2, 3, *lr)
    with torch.no_grad():
        expected = literal(state, frame, size)
        got = fast(state, frame, size)
        assert fast._phase_cache is not None  # the fast path really ran
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_grids_first_seen_under_inference_mode_still_train():
    up = HyperUpsampler(4, num_blocks=1)
    state, frame = torch.randn(1, 4, 7, 9), torch.rand(1, 3, 7, 9)
    with torch.inference_mode():
        up.eval()(state, frame, (17, 23))
    up.train()
    out = up(state.requires_grad_(), frame, (17, 23), region=(2, 12, 3, 20))
    out.mean().backward()
    assert state.grad.abs().sum() > 0
