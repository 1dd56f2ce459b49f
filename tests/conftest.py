"""Shared test set-up: offline hubs, few threads, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# A BasicAVSR small enough for command-line and data tests (from_config("lite", **TINY_BASICAVSR)).
TINY_BASICAVSR = dict(
    channels=8, extract_blocks=1, propagation_blocks=1, upsample_blocks=1, deform_groups=2, offset_layers=1,
    hyper_frequencies=4, hyper_group_dim=8, hyper_hidden=8, hyper_depth=2,
)


def save_tiny_basicavsr(folder, seed: int = 0):
    """A tiny BasicAVSR (seeded weights, trained for bidirectional and unidirectional) saved to `folder`, the
    `--weights` of the command-line tests; returns the model."""
    from videoanyup.models.basicavsr import BasicAVSR

    torch.manual_seed(seed)
    model = BasicAVSR.from_config("lite", **TINY_BASICAVSR)
    model.trained_modes = ("bidirectional", "unidirectional")
    model.save_pretrained(folder)
    return model


# -- synthetic video clips (videoanyup.tasks tests) ---------------------------------------------------
def write_synthetic_clip(path, *, frames: int = 8, height: int = 48, width: int = 64, image: str = "astronaut", step=(2, 3), fps: int = 24):
    """A clip of a scikit-image picture panning by `step` = (dy, dx) pixels per frame.

    `path` ending in `.mp4` writes a lossless mp4 (PyAV), anything else a folder of PNG frames.
    Returns the frames as an `(T, H, W, 3)` uint8 array.
    """
    from pathlib import Path

    import numpy as np
    import skimage.data

    picture = getattr(skimage.data, image)()
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    picture = picture[..., :3]
    dy, dx = step
    need_h, need_w = height + abs(dy) * frames, width + abs(dx) * frames
    reps = (-(-need_h // picture.shape[0]), -(-need_w // picture.shape[1]), 1)
    picture = np.tile(picture, reps)
    clip = np.stack([picture[t * abs(dy) : t * abs(dy) + height, t * abs(dx) : t * abs(dx) + width] for t in range(frames)])
    path = Path(path)
    if path.suffix == ".mp4":
        from videoanyup.tasks.video_io import VideoWriter

        with VideoWriter(path, fps=fps, lossless=True, preset="ultrafast") as writer:
            for frame in clip:
                writer.write(np.ascontiguousarray(frame))
    else:
        from PIL import Image

        path.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(clip):
            Image.fromarray(np.ascontiguousarray(frame)).save(path / f"{t:08d}.png")
    return clip


@pytest.fixture
def synthetic_clip():
    """`write_synthetic_clip(path, frames=…, height=…, width=…, image=…, step=…)` (see conftest)."""
    return write_synthetic_clip


def attention_queries(net, feats, video, mode):
    """The guidance a VideoAnyUp's attention receives as its queries, `(T, Cg, H, W)` (one clip, no gradients;
    the attention runs once per frame)."""
    captured = []
    original = net.attention.forward

    def spy(guidance, *args, **options):
        captured.append(guidance.clone())
        return original(guidance, *args, **options)

    net.attention.forward = spy
    try:
        with torch.no_grad():
            net(feats, video, mode=mode)
    finally:
        del net.attention.forward
    return torch.cat(captured, dim=0)


# A program for subprocess tests of signals: `upscale` through the command line, held for 120 s before its first
# frame (after printing "writing" to stderr), with Ctrl-C raising KeyboardInterrupt as in a terminal.
SLOW_UPSCALE = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal (a parent run in the background ignores SIGINT)
import videoanyup.tasks.avsr.upscale as upscale
real = upscale.upscale_frames
def slow(*args, **kwargs):
    print("writing", file=sys.stderr, flush=True)
    time.sleep(120)
    yield from real(*args, **kwargs)
upscale.upscale_frames = slow
from videoanyup.tasks.cli import main
sys.exit(main(sys.argv[1:]))
"""
