"""The shot test (`layers/shot_test.py`) and what its gates do: an untrained test says "same shot"; a gate of 0 on
the pair (t − 1, t) makes frame t start afresh — its output is that of the clip that starts at t, in the clip
path and in the stream alike — and a gate of 1 changes nothing."""

import pytest
import torch

from tiny_networks import tiny_net
from videoanyup.layers.frame_cues import PAIR_CUES
from videoanyup.layers.shot_test import START_LOGIT, STATISTICS, ShotTest, chain, shot_statistics
from videoanyup.models import clip_source, videoanyup_stream


def clip(t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, t, 5, 4, 5, generator=g), torch.rand(1, t, 3, 11, 13, generator=g)


def run(model, feats, video, **options):
    with torch.no_grad():
        return model(feats, video, **options)


def test_an_untrained_test_says_same_shot_and_the_statistics_are_robust():
    test = ShotTest(hidden=8)
    cues = torch.randn(3, PAIR_CUES, 16, 16)
    assert torch.allclose(test(cues), torch.full((3,), START_LOGIT))
    statistics = shot_statistics(cues)
    assert statistics.shape == (3, STATISTICS)
    outlier = cues.clone()
    outlier[:, 1, 0, 0] = 1e3  # one cell of another content moves the mean, not the quartiles
    moved = shot_statistics(outlier) - statistics
    assert moved[:, 0].abs().min() > 1 and moved[:, 1:4].abs().max() < 0.05
    assert torch.equal(chain([torch.tensor([-1.0]), torch.tensor([-2.0])]), torch.tensor([-3.0]))
    with pytest.raises(ValueError, match="cues must be"):
        shot_statistics(cues[:, :3])


def close_after_the_cut(cut, after, uncut):
    """Frames after the first of a new shot: the second-order alignment's conditioning sees a zeroed state of t − 2
    where a clip that starts at the cut has none, so they agree to a few 1e-3, far closer than without the cut."""
    gap = (cut - after).abs().max()
    assert gap < 1e-2
    if uncut is not None:
        assert gap < 0.1 * (uncut - after).abs().max()


def gates_with_a_cut(at: int, length: int, b: int = 1) -> torch.Tensor:
    """log p `(B, T − 1)`: 0 everywhere (the same shot) but the pair (at − 1, at), where it is −60."""
    gates = torch.zeros(b, length - 1)
    gates[:, at - 1] = -60.0
    return gates


@pytest.mark.parametrize("mode", ["unidirectional", "bidirectional", "lookahead"])
def test_a_cut_makes_frame_t_start_afresh_in_the_clip(mode, monkeypatch):
    net = tiny_net(seed=2)
    feats, video = clip(t=6)
    monkeypatch.setattr(clip_source, "clip_log_gates", lambda model, structure, b, to_prev: torch.zeros(1, 5))
    same = run(net, feats, video, mode=mode)  # every gate open
    monkeypatch.setattr(clip_source, "clip_log_gates", lambda model, structure, b, to_prev: gates_with_a_cut(3, 6))
    cut = run(net, feats, video, mode=mode)
    after = run(net, feats[:, 3:], video[:, 3:], mode=mode)
    before = run(net, feats[:, :3], video[:, :3], mode=mode)
    torch.testing.assert_close(cut[:, 3], after[:, 0], atol=1e-5, rtol=0)  # nothing crosses the cut forwards …
    close_after_the_cut(cut[:, 4:], after[:, 1:], same[:, 4:])
    if mode != "lookahead":  # (a clip that ends at frame 2 pads its look-ahead with frames 1, 0 instead)
        torch.testing.assert_close(cut[:, :3], before, atol=1e-5, rtol=0)  # … nor backwards
    assert (same[:, 3] - after[:, 0]).abs().max() > 1e-3  # with the gate open, frame 3 reads frames 1 and 2


def test_a_cut_makes_frame_t_start_afresh_in_the_stream(monkeypatch):
    net = tiny_net(seed=3)
    feats, video = clip(t=6)

    def gates(model, structures, others, flows):
        return torch.full((flows.shape[0],), -60.0 if gates.pair == 3 else 0.0)

    original = videoanyup_stream.VideoAnyUpStream.step_log_gate

    def step_log_gate(self, a, b):
        gates.pair = max(a, b)
        return original(self, a, b)

    monkeypatch.setattr(videoanyup_stream, "pair_log_gates", gates)
    monkeypatch.setattr(videoanyup_stream.VideoAnyUpStream, "step_log_gate", step_log_gate)
    stream = net.stream(mode="unidirectional")
    outs = torch.stack([o for t in range(6) for o in stream.push(feats[:, t], video[:, t])], dim=1)
    after = run(net, feats[:, 3:], video[:, 3:], mode="unidirectional")
    torch.testing.assert_close(outs[:, 3], after[:, 0], atol=1e-5, rtol=0)
    close_after_the_cut(outs[:, 4:], after[:, 1:], None)
