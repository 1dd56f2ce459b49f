"""`torch.compile` of VideoAnyUp's per-frame stream steps: one graph each, no breaks, same output
as eager to 1e-5."""

import pytest
import torch
import torch._dynamo

from tiny_networks import tiny_net as tiny


def clip(t=5, size=(11, 13)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, t, 5, 4, 5, generator=g), torch.rand(1, t, 3, *size, generator=g)


def captured_steps(stream, feats, video):
    """Push the clip; return the arguments of the last push step and of the last emitted frame's step."""
    calls = {}

    def spy(name, step):
        def run(*args):
            calls[name] = args
            return step(*args)
        return run

    stream._push, stream._step = spy("push", stream._push), spy("step", stream._step)
    for t in range(feats.shape[1]):
        stream.push(feats[:, t], video[:, t])
    return calls["push"], calls["step"]


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead", "perframe"])
def test_frame_steps_compile_as_one_graph_each(mode):
    torch._dynamo.reset()
    net = tiny()
    feats, video = clip()
    stream = net.stream(mode=mode, query_tile=40)  # several attention blocks per frame
    push_args, step_args = captured_steps(stream, feats, video)
    with torch.inference_mode():
        for step, args in ((stream._push_step, push_args), (stream._frame_step, step_args)):
            explanation = torch._dynamo.explain(step)(*args)
            assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
            assert explanation.graph_count == 1


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_compiled_stream_equals_eager(mode):
    torch._dynamo.reset()
    net = tiny()
    feats, video = clip()

    def run(compile):
        stream = net.stream(mode=mode, compile=compile)
        out = [o for t in range(feats.shape[1]) for o in stream.push(feats[:, t], video[:, t])]
        return torch.stack(out + stream.flush(), dim=1)

    eager = run(False)
    compiled = run("eager")  # the captured graphs, run (inductor compiles for minutes here: benchmarks/bench_upsample.py)
    assert compiled.shape == eager.shape == (1, 5, 5, 11, 13)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="compile must be"):
        net.stream(mode=mode, compile=1)
