"""The geometry of `benchmarks/bench_neighbour_ceiling.py`: where its samples sit decides what its ceilings mean."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_neighbour_ceiling.py"
sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling, as it does when run
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


def test_half_patch_grids_sit_on_the_target_grid():
    """Dense cell m covers pixels [m·p/2 − p/4, m·p/2 + 3p/4) along each axis (borders replicated): the patch
    centred on cell m of the fidelity target's grid (twice as fine as the LR grid)."""
    frames = torch.rand(2, 3, 8, 12)
    dense = ceiling.half_patch_grids(PatchMean(), frames)  # (2, 3, 4, 6)
    assert dense.shape == (2, 3, 4, 6)
    padded = torch.nn.functional.pad(frames, (1, 1, 1, 1), mode="replicate")  # pixel x at x + 1
    for m in range(4):
        for n in range(6):
            window = padded[..., 2 * m : 2 * m + 4, 2 * n : 2 * n + 4]  # pixels [2m − 1, 2m + 3) shifted by 1
            assert torch.allclose(dense[..., m, n], window.mean((-2, -1)), atol=1e-6), (m, n)
    centres = ceiling.cell_centres((4, 6), (8, 12))  # target cell m's centre: pixel 2m + 0.5, the window's middle
    assert centres[0, 0, 1] == pytest.approx(2.5) and centres[1, 3, 0] == pytest.approx(6.5)


def test_shift_content_moves_pixels_and_replicates_the_border():
    frame = torch.arange(12.0).view(1, 3, 4)
    assert torch.equal(ceiling.shift_content(frame, 1, 0)[0, 0], torch.tensor([1.0, 2.0, 3.0, 3.0]))
    assert torch.equal(ceiling.shift_content(frame, -2, 1)[0, :, 0], torch.tensor([4.0, 8.0, 8.0]))


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
