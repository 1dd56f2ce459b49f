"""The geometry of `benchmarks/bench_neighbour_ceiling.py`: where its samples sit decides what its ceilings mean."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_neighbour_ceiling.py"
spec = importlib.util.spec_from_file_location("bench_neighbour_ceiling", SCRIPT)
ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ceiling)


class PatchMean:
    """A stand-in backbone: each patch's feature is its pixels' mean (so a cell's content is known exactly)."""

    patch_size = 4

    def extract(self, video: torch.Tensor) -> torch.Tensor:  # (B, T, 3, H, W) → (B, T, 3, H/p, W/p)
        b, t = video.shape[:2]
        pooled = torch.nn.functional.avg_pool2d(video.flatten(0, 1), self.patch_size)
        return pooled.reshape(b, t, *pooled.shape[1:])


def test_half_patch_grids_interleave_at_half_patch_stride():
    """Dense cell m covers pixels [m·p/2 − p/2, m·p/2 + p/2) (the left edge replicated), along each axis."""
    frame = torch.rand(3, 8, 12)
    dense = ceiling.half_patch_grids(PatchMean(), frame)  # (3, 4, 6)
    assert dense.shape == (3, 4, 6)
    padded = torch.nn.functional.pad(frame[None], (2, 0, 2, 0), mode="replicate")[0]  # pixel x at x + 2
    for m in range(4):
        for n in range(6):
            window = padded[:, 2 * m : 2 * m + 4, 2 * n : 2 * n + 4]  # pixels [2m − 2, 2m + 2) shifted by 2
            assert torch.allclose(dense[:, m, n], window.mean((1, 2)), atol=1e-6), (m, n)


def test_centred_bilinear_reads_a_cell_at_its_centre_and_halfway_between():
    grid = torch.rand(5, 3, 4)
    first, stride = 1.5, 4.0
    points = torch.tensor([[[9.5, 9.5, 7.5]], [[1.5, 5.5, 3.5]]])  # (2, 1, 3): (x, y) of three points
    out = ceiling.centred_bilinear(grid, first, stride, points)  # cell (i, j) centred at (1.5 + 4j, 1.5 + 4i)
    assert torch.allclose(out[:, 0, 0], grid[:, 0, 2], atol=1e-6)
    assert torch.allclose(out[:, 0, 1], grid[:, 1, 2], atol=1e-6)
    assert torch.allclose(out[:, 0, 2], 0.25 * (grid[:, 0, 1] + grid[:, 0, 2] + grid[:, 1, 1] + grid[:, 1, 2]), atol=1e-6)


def test_kernel_regression_is_convex_and_exact_at_cell_centres():
    p = 4
    feats = torch.rand(6, 3, 5)
    centres = ceiling.cell_centres((3, 5), (12, 20))  # the LR cells' own centres
    valid = torch.ones(3, 5, dtype=torch.bool)
    narrow = ceiling.kernel_regression([(feats, centres, valid)], p, sigma=0.05)
    assert torch.allclose(narrow, feats, atol=1e-6)
    # a neighbour whose content moved by one whole cell adds the same vectors at the same offsets
    shifted = torch.roll(feats, 1, dims=-1)
    points = centres + torch.tensor([float(p), 0.0]).view(2, 1, 1)
    both = ceiling.kernel_regression([(feats, centres, valid), (shifted, points, valid)], p, sigma=0.5)
    one = ceiling.kernel_regression([(feats, centres, valid)], p, sigma=0.5)
    assert torch.allclose(both[..., 1:3], one[..., 1:3], atol=1e-6)  # where both see whole 3 × 3 windows
    # convex: every output lies within the inputs' per-channel range
    wide = ceiling.kernel_regression([(feats, centres + 1.3, valid)], p, sigma=0.7)
    assert (wide <= feats.amax((1, 2), keepdim=True) + 1e-6).all() and (wide >= feats.amin((1, 2), keepdim=True) - 1e-6).all()


@pytest.mark.parametrize("grid", [(2, 3), (4, 7)])
def test_cell_centres_are_pixel_index_coordinates(grid):
    size = (grid[0] * 6, grid[1] * 6)
    c = ceiling.cell_centres(grid, size)
    assert c[0, 0, 0] == pytest.approx(2.5) and c[1, 0, 0] == pytest.approx(2.5)  # pixels 0…5: centre 2.5
    assert c[0, 0, -1] == pytest.approx(size[1] - 3.5)
