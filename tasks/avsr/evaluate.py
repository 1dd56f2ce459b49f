"""`videoanyup evaluate`: the papers' protocol on folders of clips.

For every clip, scale `(a, b)` and mode: LR = bicubic of the ground truth to `(floor(H/a), floor(W/b))`
(rounded to 8 bits, like stored LR frames), the network is asked for the ground truth's exact size, its
output is rounded to 8 bits, and PSNR / SSIM are averaged over all frames — RGB with a border crop and Y
with none — beside the bicubic baseline. Frames are streamed through the chunked upscaler, so memory does
not grow with the clip length.

Outputs go through `output_guard`, checked before any work: the JSON results (`write_json`, marked
`"format": JSON_FORMAT`) and the figures folder (a flat folder with its manifest, replaced whole).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.degradation import bicubic_upscale, degrade, eval_lr_size, scale_label
from videoanyup.tasks.avsr.inference import upscale_frames
from videoanyup.tasks.avsr.sources import Clip, find_clips
from videoanyup.tasks import output_guard
from videoanyup.tasks.metrics import QualitySums, quantize
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import VideoError, iter_frames, to_tensor

BICUBIC = "bicubic"
JSON_FORMAT = "videoanyup-evaluate/1"


def _hr_frames(clip: Clip, frames: int | None) -> Iterator[Tensor]:
    stop = None if frames is None else frames
    count = 0
    for array in iter_frames(clip.path, 0, stop):
        if array.shape[:2] != (clip.height, clip.width):
            raise VideoError(f"frame {count} of {clip.path} is {array.shape[:2]}, earlier frames {(clip.height, clip.width)}")
        count += 1
        yield to_tensor(array[None])[0]  # (3, H, W)


def evaluate(
    data: Sequence[str | Path],
    scales: Sequence[tuple[float, float]],
    *,
    model: BasicAVSR | None,
    modes: Sequence[str] = (),
    frames: int | None = None,
    crop_border: int = 4,
    chunk: int = 32,
    overlap: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    figures: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate `model` (None: the bicubic baseline only) on every clip of `data` at every scale and mode.

    Returns:
        `{"clips": {clip: {scale label: {method: metrics}}}, "average": {scale label: {method: metrics}},
        "settings": {...}}` with metrics `psnr, ssim` (RGB, `crop_border`), `psnr_y, ssim_y` (Y, crop 0),
        `frames`; methods are "bicubic" and the modes.
    Raises:
        ValueError: bad arguments or inputs, or a `figures` folder that may not be written (`overwrite`
            replaces an earlier one), found before any work.
    """
    from tqdm import tqdm

    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ValueError(f"--frames must be an integer ≥ 1 (None: all frames), got {frames!r}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"--crop-border must be an integer ≥ 0, got {crop_border!r}")
    inputs = [resolve_source(path) for path in data]
    if figures is not None:
        output_guard.check_output(figures, folder=True, overwrite=overwrite, inputs=inputs)
    clips = find_clips(data)
    if model is not None:
        modes = list(modes) or [model.config.mode]
        for mode in modes:
            model.check_mode(mode)
        model = model.to(device).eval()
    else:
        modes = []
    labels = [scale_label(s) for s in scales]
    methods = [BICUBIC, *modes]
    keys = [f"{m}|{label}" for m in methods for label in labels]
    overall = QualitySums(keys, crop_border=crop_border)
    per_clip: dict[str, dict] = {}
    examples: list[tuple[str, str, dict[str, Tensor]]] = []
    total = sum(min(frames or c.num_frames, c.num_frames) for c in clips) * len(scales) * len(methods)
    bar = tqdm(total=total, unit="frame", desc="evaluate", disable=not progress)
    for clip in clips:
        sums = QualitySums(keys, crop_border=crop_border)
        count = min(frames or clip.num_frames, clip.num_frames)
        middle = count // 2
        for scale, label in zip(scales, labels):
            lr_size = eval_lr_size(clip.height, clip.width, scale)
            example: dict[str, Tensor] = {}
            for method in methods:
                waiting: deque[Tensor] = deque()  # HR frames whose output is not out yet

                def lr_frames() -> Iterator[Tensor]:
                    for hr in _hr_frames(clip, count):
                        waiting.append(hr)
                        yield degrade(hr, lr_size, quantize_8bit=True)  # (3, h, w)

                if method == BICUBIC:
                    outputs = (bicubic_upscale(lr, (clip.height, clip.width)) for lr in lr_frames())
                else:
                    outputs = upscale_frames(
                        model, lr_frames(), size=(clip.height, clip.width), mode=method,
                        chunk=chunk, overlap=overlap, device=device, precision=precision,
                    )
                for index, out in enumerate(outputs):
                    out, hr = quantize(out), waiting.popleft()
                    sums.update(f"{method}|{label}", out[None], hr[None])
                    overall.update(f"{method}|{label}", out[None], hr[None])
                    if index == middle:
                        example[method] = out
                        example["ground truth"] = hr
                    bar.update(1)
            examples.append((clip.name, label, example))
        per_clip[clip.name] = _nest(sums.means())
    bar.close()
    results = {
        "clips": per_clip,
        "average": _nest(overall.means()),
        "settings": {
            "scales": labels,
            "modes": list(modes),
            "frames": frames,
            "crop_border": crop_border,
            "lr": "torch bicubic (no antialias) to (floor(H/a), floor(W/b)), 8-bit",
            "output": "asked at the ground-truth size, 8-bit",
        },
    }
    if figures is not None:
        with output_guard.output_folder(figures, overwrite=overwrite, inputs=inputs) as folder:
            write_figures(results, examples, folder)
    return results


def _nest(means: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    nested: dict[str, dict[str, dict[str, float]]] = {}
    for key, values in means.items():
        method, label = key.split("|")
        nested.setdefault(label, {})[method] = values
    return nested


def format_table(results: dict) -> str:
    """A text table: one row per clip, scale and mode, the bicubic baseline beside the model."""
    header = ["clip", "scale", "mode", "PSNR", "SSIM", "PSNR-Y", "SSIM-Y", "bicubic PSNR", "bicubic PSNR-Y", "gain dB"]
    rows = []
    sections = [*results["clips"].items(), ("ALL (frame average)", results["average"])]
    for clip, by_scale in sections:
        for label, by_method in by_scale.items():
            base = by_method[BICUBIC]
            methods = [m for m in by_method if m != BICUBIC] or [BICUBIC]
            for method in methods:
                v = by_method[method]
                rows.append(
                    [clip, label, method, f"{v['psnr']:.2f}", f"{v['ssim']:.4f}", f"{v['psnr_y']:.2f}", f"{v['ssim_y']:.4f}",
                     f"{base['psnr']:.2f}", f"{base['psnr_y']:.2f}", f"{v['psnr'] - base['psnr']:+.2f}"]
                )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    crop = results["settings"]["crop_border"]
    notes = f"PSNR/SSIM: RGB, {crop}-pixel border crop; -Y: BT.601 luma, no crop; averaged over all frames"
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows), notes])


def write_json(results: dict, path: str | Path, *, overwrite: bool = False, inputs=()) -> None:
    """Write `results` to `path` through `output_guard` (`"format": JSON_FORMAT` first, its ownership mark)."""
    output_guard.write_json(path, {"format": JSON_FORMAT, **results}, overwrite=overwrite, inputs=inputs)


def write_figures(results: dict, examples: list[tuple[str, str, dict[str, Tensor]]], folder: Path) -> None:
    """`psnr_vs_scale.png` and `crops_<clip>_<scale>.png` (bicubic | modes | ground truth) into `folder`, the
    temporary folder of an `output_guard.output_folder`."""
    import matplotlib.pyplot as plt

    from videoanyup.tasks.avsr.figures import psnr_vs_scale, side_by_side

    curves: dict[str, dict[str, float]] = {}
    for label, by_method in results["average"].items():
        for method, values in by_method.items():
            curves.setdefault(method, {})[label] = values["psnr"]
    fig = psnr_vs_scale(curves, title="PSNR (RGB) against scale, all frames")
    fig.savefig(folder / "psnr_vs_scale.png")
    plt.close(fig)
    for clip, label, example in examples:
        order = [BICUBIC, *[m for m in example if m not in (BICUBIC, "ground truth")], "ground truth"]
        fig = side_by_side([example[m] for m in order], [f"{m} {label}" if m != "ground truth" else m for m in order])
        fig.savefig(folder / f"crops_{clip}_{label}.png")
        plt.close(fig)

