import math

import pytest
import torch
import torch.nn.functional as F

from videoanyup.functional import (
    axis_phases,
    bicubic_upsample,
    bilinear_upsample,
    compose_flows,
    downsample,
    flow_warp,
    laplacian_pyramid,
    num_phases,
    output_size,
    reconstruct_laplacian,
    upsample,
)


def smooth_flow(n, h, w, amplitude=3.0, seed=0):
    """A smooth random flow (N, 2, h, w): bilinear upsample of a coarse random field."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64) * amplitude
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_zero_flow_is_identity(padding_mode):
    x = torch.rand(2, 3, 5, 17, 23)
    out = flow_warp(x, torch.zeros(2, 3, 2, 17, 23), padding_mode=padding_mode)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_integer_flow_shifts_pixels():
    x = torch.rand(1, 4, 12, 15)
    flow = torch.zeros(1, 2, 12, 15)
    flow[:, 0] = 2.0  # sample two pixels to the right
    flow[:, 1] = -1.0  # and one pixel up
    out = flow_warp(x, flow)
    torch.testing.assert_close(out[..., 1:, :-2], x[..., :-1, 2:], atol=1e-6, rtol=0)
    assert out[..., 0, :].abs().max() == 0  # zero padding above the frame
    border = flow_warp(x, flow, padding_mode="border")
    torch.testing.assert_close(border[..., 0, :-2], x[..., 0, 2:], atol=1e-6, rtol=0)


def test_flow_composition_matches_warping_twice():
    h, w = 40, 48
    image = F.interpolate(torch.rand(1, 3, 5, 6, dtype=torch.float64), size=(h, w), mode="bicubic", align_corners=True)
    f_ab, f_bc = smooth_flow(1, h, w, seed=1), smooth_flow(1, h, w, seed=2)  # up to ~11 px
    twice = flow_warp(flow_warp(image, f_bc, padding_mode="border"), f_ab, padding_mode="border")
    once = flow_warp(image, compose_flows(f_ab, f_bc), padding_mode="border")
    added = flow_warp(image, f_ab + f_bc, padding_mode="border")  # the wrong way to chain flows
    interior = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    error = (twice - once)[interior].abs()
    assert error.mean() < 3e-3 and error.max() < 3e-2  # what is left is double interpolation
    assert error.mean() < 0.1 * (twice - added)[interior].abs().mean()


def test_flow_warp_checks_shapes():
    with pytest.raises(ValueError, match="flow must have shape"):
        flow_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 9))
    with pytest.raises(ValueError, match="padding_mode"):
        flow_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), padding_mode="reflection")


@pytest.mark.parametrize("size", [(32, 32), (37, 51), (9, 6)])
def test_laplacian_pyramid_inverts_exactly(size):
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    bands = laplacian_pyramid(x, 3)
    assert len(bands) == 4
    assert bands[1].shape[-2:] == (math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    torch.testing.assert_close(reconstruct_laplacian(bands), x, atol=1e-12, rtol=0)
    # the band-pass levels of a constant image are zero and the residual is the constant
    flat = laplacian_pyramid(torch.full((1, 1, *size), 0.3, dtype=torch.float64), 2)
    assert all(b.abs().max() < 1e-12 for b in flat[:-1])


@pytest.mark.parametrize(
    "scale, expected",
    [((2, 2), (64, 90)), ((3.5, 3.5), (112, 158)), ((2.5, 3.7), (80, 167)), ((1.3, 4.0), (42, 180)), (2.0, (64, 90))],
)
def test_output_size_rounds_each_axis(scale, expected):
    assert output_size(32, 45, scale=scale) == expected


def test_output_size_arguments():
    assert output_size(32, 45, size=(100, 7)) == (100, 7)
    for bad in [dict(), dict(scale=2, size=(4, 4))]:
        with pytest.raises(ValueError, match="exactly one of scale"):
            output_size(8, 8, **bad)
    for scale in [0, -1.5, (2, 0), float("nan"), float("inf"), (1, 2, 3)]:
        with pytest.raises(ValueError, match="scale"):
            output_size(8, 8, scale=scale)
    for size in [(0, 4), (4.5, 4), (4,), "4x4"]:
        with pytest.raises(ValueError, match="size"):
            output_size(8, 8, size=size)


@pytest.mark.parametrize("lr, hr", [(180, 720), (180, 666), (320, 1184), (7, 23), (16, 16), (10, 4)])
def test_phases_are_integer_exact(lr, hr):
    axis = axis_phases(lr, hr)
    assert axis.period == num_phases(lr, hr) == hr // math.gcd(lr, hr)
    coord = (torch.arange(hr, dtype=torch.float64) + 0.5) * lr / hr - 0.5
    torch.testing.assert_close(axis.coord, coord, atol=1e-12, rtol=0)
    torch.testing.assert_close(axis.offset, coord - axis.nearest, atol=1e-12, rtol=0)
    assert axis.offset.min() >= -0.5 and axis.offset.max() < 0.5
    torch.testing.assert_close(axis.phase_offsets[axis.phase], axis.offset, atol=0, rtol=0)
    distinct = torch.unique(axis.offset).numel()
    assert distinct == axis.period


def test_phase_counts_of_the_design():
    assert num_phases(180, 720) == 4
    assert num_phases(180, 666) == 37



def test_bilinear_upsample_never_reads_device_values_on_the_host():
    """The taps are computed on the CPU: a `meta` input (no values; `int(t)` raises) still gives the
    region's shape, so a GPU input is never synchronised by the upsampler's bookkeeping."""
    x = torch.empty(2, 3, 8, 10, device="meta")
    out = bilinear_upsample(x, (20, 25), (3, 17, 2, 23))
    assert out.device.type == "meta" and out.shape == (2, 3, 14, 21)

@pytest.mark.parametrize("size", [(37, 50), (64, 64), (20, 131)])
def test_bilinear_upsample_matches_interpolate_and_regions(size):
    x = torch.rand(2, 5, 11, 13)
    full = bilinear_upsample(x, size)
    torch.testing.assert_close(full, F.interpolate(x, size=size, mode="bilinear", align_corners=False), atol=5e-6, rtol=0)
    region = (3, size[0] - 2, 5, 17)
    torch.testing.assert_close(bilinear_upsample(x, size, region), full[..., 3 : size[0] - 2, 5:17], atol=1e-6, rtol=0)


@pytest.mark.parametrize("lr, size", [((11, 13), (37, 50)), ((8, 8), (32, 32)), ((9, 12), (9, 12)), ((6, 20), (31, 25))])
def test_bicubic_upsample_matches_interpolate_and_regions(lr, size):
    x = torch.randn(2, 5, *lr, dtype=torch.float64)  # values outside [0, 1]: nothing is clamped
    full = bicubic_upsample(x, size)
    torch.testing.assert_close(full, F.interpolate(x, size=size, mode="bicubic", align_corners=False), atol=1e-12, rtol=0)
    region = (3, size[0] - 2, 1, size[1] - 4)
    torch.testing.assert_close(bicubic_upsample(x, size, region), full[..., 3 : size[0] - 2, 1 : size[1] - 4], atol=1e-12, rtol=0)


def test_bicubic_upsample_never_reads_device_values_on_the_host():
    out = bicubic_upsample(torch.empty(2, 3, 8, 10, device="meta"), (20, 25), (3, 17, 2, 23))
    assert out.device.type == "meta" and out.shape == (2, 3, 14, 21)


def test_upsample_names_the_mode():
    x = torch.rand(1, 1, 4, 4)
    assert torch.equal(upsample(x, (9, 9), mode="bicubic"), bicubic_upsample(x, (9, 9)))
    with pytest.raises(ValueError, match="mode must be one of \\('bilinear', 'bicubic'\\), got 'area'"):
        upsample(x, (9, 9), mode="area")


def test_downsample_is_torch_bicubic_with_optional_antialias():
    x = torch.rand(1, 2, 3, 40, 60)
    plain = downsample(x, (10, 17))
    assert plain.shape == (1, 2, 3, 10, 17)
    expected = F.interpolate(x[0], size=(10, 17), mode="bicubic", align_corners=False)
    torch.testing.assert_close(plain[0], expected)
    smooth = downsample(x, (10, 17), antialias=True)
    # antialiasing removes energy that plain bicubic aliases in
    assert smooth.std() < plain.std()
