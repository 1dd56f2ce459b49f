"""The contrast-normalised cues of frame t against a neighbour (`layers/frame_cues.py`): invariant to a global
change of brightness and contrast, which they report apart; blind to motion the flow explains; sharper where the
neighbour has edges that frame t lost; a large low-band gap where the content differs."""

import pytest
import torch

from videoanyup.functional.warp import flow_warp
from videoanyup.layers.frame_cues import PAIR_CUES, absent_cues, frame_structure, pair_cues
from videoanyup.tasks.upsampler.degrade import gaussian_blur


def textured(seed=0, size=(32, 40)):
    """A crop of a scikit-image picture (seed: which one and where), `(1, 3, H, W)` in [0, 1]."""
    import skimage.data

    picture = [skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea, skimage.data.rocket][seed % 4]()
    image = torch.from_numpy(picture.copy()).permute(2, 0, 1).float().div(255)[None]
    image = torch.nn.functional.interpolate(image, scale_factor=0.5, mode="area")
    top, left = 20 + 7 * seed, 30 + 5 * seed
    return image[..., top : top + size[0], left : left + size[1]].contiguous()


LR = (8, 10)


def test_structure_is_invariant_to_brightness_and_contrast_and_reports_them():
    frame = textured() * 0.6 + 0.2
    faded = frame * 0.1  # a fade to 10 %
    brighter = frame * 1.3 - 0.05
    a, b, c = (frame_structure(x, LR) for x in (frame, faded, brighter))
    for other in (b, c):
        torch.testing.assert_close(other.energy, a.energy, atol=1e-4, rtol=0)
        torch.testing.assert_close(other.low, a.low, atol=1e-4, rtol=0)
    assert float(b.photometry[0, 0]) == pytest.approx(float(a.photometry[0, 0]) + torch.log(torch.tensor(0.1)).item(), abs=1e-4)
    cues = pair_cues(b, a, torch.zeros(1, 2, *LR))
    assert cues.shape == (1, PAIR_CUES, *LR)
    assert cues[:, :2].abs().max() < 1e-3  # the same content and sharpness
    assert float(cues[0, 5, 0, 0]) == pytest.approx(torch.log(torch.tensor(0.1)).item(), abs=1e-3)  # contrast change
    assert cues[0, 6, 0, 0] < 0  # darker


def test_motion_the_flow_explains_leaves_no_gap():
    frame = textured(1, size=(32, 40))
    shift = torch.zeros(1, 2, 32, 40)
    shift[:, 0] = 4.0  # the neighbour is frame t moved 4 pixels left: read 4 pixels to the right
    neighbour = flow_warp(frame, -shift, padding_mode="border")  # neighbour(x) = frame(x − 4)
    own, other = frame_structure(frame, LR), frame_structure(neighbour, LR)
    lr_flow = torch.zeros(1, 2, *LR)
    lr_flow[:, 0] = 1.0  # frame t's content at x is at x + 4 in the neighbour: one LR cell to the right
    aligned = pair_cues(own, other, lr_flow)[:, 1, :, 1:-1]
    unaligned = pair_cues(own, other, torch.zeros_like(lr_flow))[:, 1, :, 1:-1]
    assert aligned.mean() < 0.35 * unaligned.mean()


def test_a_blurred_frame_sees_a_sharper_neighbour_and_a_cut_a_low_band_gap():
    frame, other_shot = textured(2), textured(3)
    blurred = gaussian_blur(frame, 3.0)
    zero = torch.zeros(1, 2, *LR)
    blur_cues = pair_cues(frame_structure(blurred, LR), frame_structure(frame, LR), zero)
    cut_cues = pair_cues(frame_structure(frame, LR), frame_structure(other_shot, LR), zero)
    assert blur_cues[:, 0].mean() > 0.5  # log energy: the neighbour is much sharper (e^0.5 ≈ 1.6×)
    assert blur_cues[:, 1].mean() < 0.5 * cut_cues[:, 1].mean()  # the blur keeps the low band, a cut does not
    assert float(blur_cues[0, 3, 0, 0]) == pytest.approx(float(blur_cues[0, 0].mean()), abs=1e-5)  # frame-level means


def test_a_flat_frame_stays_finite_and_an_absent_neighbour_has_no_difference():
    flat = torch.full((1, 3, 16, 20), 0.4)
    structure = frame_structure(flat, (4, 5))
    assert all(torch.isfinite(x).all() for x in structure.tensors())
    absent = absent_cues(structure)
    assert absent.shape == (1, PAIR_CUES, 4, 5) and absent[:, :2].abs().max() == 0 and absent[:, 3:].abs().max() == 0
