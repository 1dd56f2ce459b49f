import torch
import torch.nn.functional as F

from videoanyup.functional.warp import flow_warp
from videoanyup.layers.deformable_alignment import SecondOrderDeformableAlignment
from videoanyup.layers.local_attention import FlowGuidedWindowAttention
from videoanyup.layers.motion_compensation import SecondOrderMotionCompensation


def smooth_flow(n, h, w, amplitude=2.5):
    return F.interpolate(torch.randn(n, 2, 3, 3) * amplitude, size=(h, w), mode="bicubic", align_corners=True)


def test_untrained_fine_attention_is_the_bilinear_border_warp():
    attention = FlowGuidedWindowAttention(6, 5, window=2)
    source, flow = torch.randn(2, 6, 14, 17), smooth_flow(2, 14, 17)
    out = attention(torch.randn(2, 5, 14, 17), source, flow)
    torch.testing.assert_close(out, flow_warp(source, flow, padding_mode="border"), atol=1e-4, rtol=0)


def test_trained_fine_attention_departs_from_the_warp_and_stays_convex():
    attention = FlowGuidedWindowAttention(3, 3, window=3)
    torch.nn.init.normal_(attention.logit.weight, std=2.0)
    source, flow = torch.rand(1, 3, 12, 12), smooth_flow(1, 12, 12)
    out = attention(torch.randn(1, 3, 12, 12), source, flow)
    assert (out - flow_warp(source, flow, padding_mode="border")).abs().max() > 1e-3
    assert out.min() >= source.min() - 1e-6 and out.max() <= source.max() + 1e-6  # softmax weights


def test_deformable_alignment_starts_as_flow_guided_sampling():
    align = SecondOrderDeformableAlignment(4, 10, deform_groups=4)
    prev1, prev2 = torch.randn(1, 4, 9, 11), torch.randn(1, 4, 9, 11)
    zero = torch.zeros(1, 2, 9, 11)
    out = align(prev1, prev2, torch.randn(1, 10, 9, 11), zero, zero)
    # zero-initialised offset head: no offset, masks sigmoid(0) = 1/2
    expected = 0.5 * F.conv2d(torch.cat([prev1, prev2], 1), align.weight, padding=1) + align.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    shift = torch.zeros(1, 2, 9, 11)
    shift[:, 0] = 1.0  # one pixel to the right for both sources
    moved = align(prev1, prev2, torch.randn(1, 10, 9, 11), shift, shift)
    shifted = torch.cat([prev1, prev2], 1)[..., 1:]
    expected = 0.5 * F.conv2d(F.pad(shifted, (0, 1)), align.weight, padding=1) + align.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(moved[..., 1:-2], expected[..., 1:-2], atol=1e-5, rtol=0)


def test_motion_compensation_without_history_is_zero_and_uses_both_states():
    unit = SecondOrderMotionCompensation(8, window=2, deform_groups=4, offset_layers=1)
    guide = torch.randn(1, 8, 10, 10)
    assert unit(guide, None, None, None, None).abs().max() == 0
    prev1, prev2, flow = torch.randn(1, 8, 10, 10), torch.randn(1, 8, 10, 10), smooth_flow(1, 10, 10)
    first = unit(guide, prev1, None, flow, None)
    second = unit(guide, prev1, prev2, flow, flow)
    assert first.shape == (1, 8, 10, 10) and (first - second).abs().max() > 1e-4
