"""`torch.compile` of BasicAVSR's per-frame step: one graph, no breaks, same output as eager."""

import pytest
import torch
import torch._dynamo

from videoanyup import BasicAVSR


def tiny():
    fields = dict(channels=8, extract_blocks=1, propagation_blocks=1, upsample_blocks=1, deform_groups=4, offset_layers=1, tile_size=16)
    return BasicAVSR.from_config("lite", **fields).eval()


def frame_step_arguments(stream, clip, t):
    """The arguments `_emit` passes to the step of frame t, after frames 0..t−1 went through the stream."""
    k = stream.k
    frames = [clip[:, min(t + j, clip.shape[1] - 1)] for j in range(k + 1)]
    feats = [stream.model.extract(f) for f in frames]
    steps = [stream.model.spynet(frames[j], frames[j + 1]) for j in range(k)]
    loop = stream.loop
    return frames[0], feats, steps, loop.states, stream.prev_frame, loop.flow, stream._upsampler_inputs[1]


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_per_frame_step_compiles_as_one_graph(mode):
    torch._dynamo.reset()
    model = tiny()
    clip = torch.rand(1, 6, 3, 12, 14)
    stream = model.stream(scale=(2.5, 3.7), mode=mode)  # 30 x 52: tiles of 16 split frames and phases
    with torch.no_grad():
        for t in range(3):
            stream.push(clip[:, t])
        explanation = torch._dynamo.explain(stream._frame_step)(*frame_step_arguments(stream, clip, 3 - stream.k))
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_compiled_stream_equals_eager():
    torch._dynamo.reset()
    model = tiny()
    clip = torch.rand(1, 4, 3, 12, 14)

    def run(compile):
        stream = model.stream(scale=2.5, mode="unidirectional", compile=compile)
        with torch.no_grad():
            return torch.stack([stream.push(clip[:, t])[0] for t in range(clip.shape[1])], dim=1)

    eager = run(False)
    compiled = run("eager")  # the captured graphs, run (inductor takes minutes here: benchmarks/bench_basicavsr.py)
    assert compiled.shape == eager.shape == (1, 4, 3, 30, 35)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="compile must be"):
        model.stream(scale=2, mode="unidirectional", compile=1)
