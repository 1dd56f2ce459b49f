import math

import pytest
import torch

from videoanyup.functional.grid import axis_phases, num_phases
from videoanyup.layers.hyper_kernel import HyperKernel
from videoanyup.layers.positional_encoding import sinusoidal_encoding

OFFSETS_3X3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def naive_kernel(net: HyperKernel, scale_code, offset_y, offset_x, offset):
    """The hyper-network evaluated the plain way: concatenate the three projected encodings, run the MLP."""
    freqs = net.frequencies.double()
    enc = lambda *v: sinusoidal_encoding(torch.tensor(v, dtype=torch.float64), freqs).float()  # noqa: E731
    x = torch.cat([net.scale_proj(enc(*scale_code)), net.phase_proj(enc(offset_y, offset_x)), net.offset_proj(enc(*offset))])
    return net.head(net.hidden_layers(net.first(x)))  # (out_channels,)


@pytest.mark.parametrize("lr, hr", [((6, 9), (24, 36)), ((7, 10), (23, 37)), ((5, 8), (13, 8))])
def test_cached_kernels_match_fresh_per_pixel_computation(lr, hr):
    net = HyperKernel(4, OFFSETS_3X3).eval()
    with torch.no_grad():
        kernels = net(lr, hr)  # (9, 4, H, W)
        rows, cols = axis_phases(lr[0], hr[0]), axis_phases(lr[1], hr[1])
        scale_code = (2 * lr[0] / hr[0], 2 * lr[1] / hr[1])
        for i in range(0, hr[0], 3):
            for j in range(0, hr[1], 4):
                for k, offset in enumerate(OFFSETS_3X3):
                    # the per-pixel offset from float coordinates, not from the phase table
                    uy = (i + 0.5) * lr[0] / hr[0] - 0.5
                    ux = (j + 0.5) * lr[1] / hr[1] - 0.5
                    fresh = naive_kernel(net, scale_code, uy - math.floor(uy + 0.5), ux - math.floor(ux + 0.5), offset)
                    torch.testing.assert_close(kernels[k, :, i, j], fresh, atol=1e-5, rtol=0)
    assert rows.period * cols.period * 9 * 4 == net.cache_numel()


def test_cache_holds_only_the_distinct_phase_kernels_and_report_sizes(capsys):
    channels = 64
    net = HyperKernel(channels, OFFSETS_3X3).eval()
    lines = []
    with torch.no_grad():
        for lr, hr in [((180, 320), (720, 1280)), ((180, 320), (666, 1184))]:
            table = net.phase_kernels(lr, hr)
            p_h, p_w = num_phases(lr[0], hr[0]), num_phases(lr[1], hr[1])
            assert table.shape == (channels * 9, p_h, p_w)
            assert net.cache_numel() == p_h * p_w * 9 * channels
            naive = channels * 9 * hr[0] * hr[1]
            lines.append(f"{lr} -> {hr}: P = {p_h}x{p_w}, cache {net.cache_numel():,} values vs naive C*K^2*H*W {naive:,} ({naive / net.cache_numel():.0f}x)")
    assert (num_phases(180, 720), num_phases(320, 1280)) == (4, 4)
    assert (num_phases(180, 666), num_phases(320, 1184)) == (37, 37)
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_cache_is_reused_and_invalidated_when_weights_change():
    net = HyperKernel(3, OFFSETS_3X3).eval()
    with torch.no_grad():
        first = net.phase_kernels((8, 8), (20, 20))
        assert net.phase_kernels((8, 8), (20, 20)) is first
        net.head.bias.add_(1.0)  # an optimiser step would do the same
        second = net.phase_kernels((8, 8), (20, 20))
    assert second is not first
    torch.testing.assert_close(second, first + 1.0, atol=1e-5, rtol=0)


def test_region_equals_crop_of_full_grid_cached_and_uncached():
    net = HyperKernel(2, OFFSETS_3X3).eval()
    lr, hr, region = (9, 11), (31, 40), (5, 23, 7, 33)
    with torch.no_grad():
        full = net(lr, hr)
        net.cache_limit = 0  # force per-region computation of the phases it needs
        part = net(lr, hr, region)
    torch.testing.assert_close(part, full[..., 5:23, 7:33], atol=1e-6, rtol=0)


def test_kernels_under_autograd_are_fresh_and_differentiable():
    net = HyperKernel(2, OFFSETS_3X3).train()
    kernels = net((6, 6), (15, 15))
    assert net.cache_numel() == 0 and kernels.requires_grad
    kernels.square().mean().backward()
    assert net.first.linear.weight.grad.abs().sum() > 0 and net.scale_proj.weight.grad.abs().sum() > 0


def test_kernels_of_a_model_built_under_inference_mode():
    with torch.inference_mode():
        net = HyperKernel(2, OFFSETS_3X3)
        first = net((4, 4), (10, 10))
        torch.testing.assert_close(net((4, 4), (10, 10)), first)


def test_regions_inside_one_period_are_views_of_the_cache():
    net = HyperKernel(2, OFFSETS_3X3).eval()
    with torch.no_grad():
        full = net((5, 7), (13, 17))  # gcd 1 on both axes: every pixel its own phase
        part = net((5, 7), (13, 17), (2, 9, 3, 11))
        table = net.phase_kernels((5, 7), (13, 17))
    assert part.data_ptr() >= table.data_ptr() and part.untyped_storage().data_ptr() == table.untyped_storage().data_ptr()
    torch.testing.assert_close(part, full[..., 2:9, 3:11], atol=0, rtol=0)


def test_kernels_never_read_device_values_on_the_host():
    """Phase indices stay on the CPU: on a `meta` device (no values; any host read such as `int(t)` raises)
    the kernels of whole grids and regions are still produced, so a GPU never synchronises here."""
    net = HyperKernel(2, OFFSETS_3X3).eval().to("meta")
    with torch.no_grad():
        for lr, hr, region in (((7, 10), (23, 37), None), ((7, 10), (23, 37), (3, 17, 2, 30)), ((6, 9), (24, 36), (1, 5, 2, 7))):
            kernels = net(lr, hr, region)
            top, bottom, left, right = region or (0, hr[0], 0, hr[1])
            assert kernels.device.type == "meta" and kernels.shape == (9, 2, bottom - top, right - left)
