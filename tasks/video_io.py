"""Reading and writing videos: video files (PyAV) and folders of frames (PNG / JPEG), one interface.

Frames come out as `(H, W, 3)` uint8 arrays in natural name order (folders, see `frame_folder`) or decode
order (files). An output's extension decides its container (`OUTPUT_FORMATS`: mp4, m4v, mkv, mov, avi with
H.264, webm with VP9, gif); a name without an extension is a folder of PNGs; any other extension is
refused. Writers put their output in place only when the last frame is written: until then they write to
a hidden temporary file or folder next to the target, which is removed if anything fails, so no partial
output survives; they replace an existing output only when asked to and only when this tool wrote it
(`output_guard`). Every problem with an input (missing, empty, corrupt, truncated, mixed frame sizes)
raises `VideoError`, a `ValueError` whose message names the path.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from videoanyup.tasks import frame_folder, output_guard
from videoanyup.tasks.frame_folder import IMAGE_SUFFIXES
from videoanyup.validation import MAX_OUTPUT_PIXELS

log = logging.getLogger(__name__)

# suffix → (PyAV container format, codec). Checked here with PyAV 18: each writes and reads back with
# its own container and codec (tests/test_video_io.py::test_every_output_container_has_its_own_format).
OUTPUT_FORMATS = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("ipod", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".mov": ("mov", "libx264"),
    ".avi": ("avi", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".gif": ("gif", "gif"),
}
VIDEO_SUFFIXES = tuple(OUTPUT_FORMATS)
DEFAULT_FPS = Fraction(25)


class VideoError(ValueError):
    """An unreadable or inconsistent video input, or an output that cannot be written."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: `num_frames` frames of `height × width`, `fps` (None for frame folders)."""

    path: Path
    kind: str  # "frames" (a folder of images) or "file" (decoded with PyAV)
    num_frames: int
    height: int
    width: int
    fps: Fraction | None


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def output_kind(path: str | Path) -> str:
    """"folder" for a name without an extension, else the suffix of a writable container.

    Raises `VideoError` for any other extension, listing the accepted ones.
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "folder"
    if suffix not in OUTPUT_FORMATS:
        raise VideoError(
            f"output {str(path)!r}: cannot write {suffix!r} files; accepted extensions: "
            f"{', '.join(OUTPUT_FORMATS)}, or a name without an extension for a folder of PNG frames"
        )
    return suffix


def list_frames(folder: str | Path, *, report: bool = False) -> list[Path]:
    """The PNG / JPEG frames of `folder` in natural order; `VideoError` if there are none.

    With `report`, the entries that are not frames are named in one log line.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"{str(folder)!r} is not a folder of frames")
    frames, skipped = frame_folder.split_frames(folder)
    if not frames:
        raise VideoError(f"folder {str(folder)!r} holds no frames (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    if report:
        frame_folder.report_skipped(folder, skipped)
    return frames


def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"cannot open video {str(path)!r}: it is corrupt, truncated or not a video ({error})") from error
    if not container.streams.video:
        container.close()
        raise VideoError(f"{str(path)!r} has no video stream")
    return container


def first_frame_size(path: str | Path) -> tuple[int, int]:
    """`(H, W)` of the first frame from headers only (a folder's first image, a file's stream header)."""
    path = Path(path)
    if path.is_dir():
        try:
            width, height = frame_folder.frame_size(list_frames(path)[0])
        except frame_folder.FrameError as error:
            raise VideoError(str(error)) from error
        return height, width
    if not path.is_file():
        raise VideoError(f"{str(path)!r} does not exist (expected a video file or a folder of frames)")
    container = _open_container(path)
    try:
        context = container.streams.video[0].codec_context
        height, width = context.height, context.width
    finally:
        container.close()
    if height <= 0 or width <= 0:
        raise VideoError(f"video {str(path)!r} declares no frame size")
    return height, width


def probe(path: str | Path) -> VideoInfo:
    """Frame count, size and frame rate of a video file or a frame folder.

    A folder's frames must all have the same size (only the image headers are read). A file's frames are
    counted by demuxing (no decoding); corrupt data found later while decoding still raises `VideoError`.
    """
    path = Path(path)
    if path.is_dir():
        frames = list_frames(path, report=True)
        sizes = {}
        for frame in frames:
            try:
                sizes.setdefault(frame_folder.frame_size(frame), frame)
            except frame_folder.FrameError as error:
                raise VideoError(str(error)) from error
        if len(sizes) > 1:
            described = ", ".join(f"{w}×{h} (first: {p.name})" for (w, h), p in sizes.items())
            raise VideoError(f"frames in {str(path)!r} have mixed sizes: {described}; all frames must have one size")
        (width, height), = sizes
        return VideoInfo(path, "frames", len(frames), height, width, None)
    if not path.is_file():
        raise VideoError(f"{str(path)!r} does not exist (expected a video file or a folder of frames)")
    import av

    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = Fraction(stream.average_rate) if stream.average_rate else None
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as error:
            raise VideoError(f"video {str(path)!r} is corrupt or truncated: {error}") from error
    finally:
        container.close()
    if count == 0 or width <= 0 or height <= 0:
        raise VideoError(f"video {str(path)!r} holds no frames")
    return VideoInfo(path, "file", count, height, width, fps)


def iter_frames(
    path: str | Path, start: int = 0, stop: int | None = None, *, max_pixels: int = MAX_OUTPUT_PIXELS
) -> Iterator[np.ndarray]:
    """Frames `start ≤ i < stop` of a video file or frame folder as `(H, W, 3)` uint8 RGB arrays.

    A folder's frames may be in any PIL mode (`frame_folder`); alpha is dropped with one warning. A frame
    whose header declares more than `max_pixels` pixels raises `VideoError` before it is decoded.
    """
    path = Path(path)
    if path.is_dir():
        warned = False
        for frame in list_frames(path)[start:stop]:
            try:
                array, alpha = frame_folder.read_frame(frame, max_pixels)
            except frame_folder.FrameError as error:
                raise VideoError(str(error)) from error
            if alpha and not warned:
                log.warning("%s: frames with an alpha channel (first: %s); the alpha is dropped", path, frame.name)
                warned = True
            yield array
        return
    if not path.is_file():
        raise VideoError(f"{str(path)!r} does not exist (expected a video file or a folder of frames)")
    import av

    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        try:
            frame_folder.check_frame_pixels(stream.codec_context.width, stream.codec_context.height, str(path), max_pixels)
        except frame_folder.FrameError as error:
            raise VideoError(str(error)) from error
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    break
                if index >= start:
                    yield frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as error:
            raise VideoError(f"video {str(path)!r} is corrupt or truncated at frame {index}: {error}") from error
    finally:
        container.close()


def to_tensor(frames: list[np.ndarray] | np.ndarray) -> Tensor:
    """`(T, H, W, 3)` uint8 → `(T, 3, H, W)` float32 in [0, 1]."""
    array = np.stack(frames) if isinstance(frames, list) else frames
    return torch.from_numpy(np.array(array, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(frames: Tensor) -> np.ndarray:
    """`(..., 3, H, W)` float in [0, 1] → `(..., H, W, 3)` uint8 (clamped, rounded)."""
    array = frames.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu()
    return array.movedim(-3, -1).numpy()


def read_video(path: str | Path, start: int = 0, count: int | None = None) -> Tensor:
    """`count` frames from `start` (all by default) as `(T, 3, H, W)` float32 in [0, 1]."""
    stop = None if count is None else start + count
    frames = list(iter_frames(path, start, stop))
    if not frames:
        raise VideoError(f"{str(path)!r} has no frames in [{start}, {stop})")
    if count is not None and len(frames) < count:
        raise VideoError(f"{str(path)!r} has only {start + len(frames)} frames, asked for frames {start}..{stop - 1}")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"frames of {str(path)!r} have mixed sizes {sorted(shapes)}")
    return to_tensor(frames)


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
VP9_SPEED = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 3, "slow": 2, "slower": 1,
             "veryslow": 0, "placebo": 0}
# Frame rates every container stores exactly (checked with PyAV 18: Matroska / WebM keep millisecond
# timestamps, AVI falls back to 600 fps above 1000, GIF keeps delays in 1/100 s and caps at 100 fps).
FPS_RANGE = (Fraction(1, 100), Fraction(1000))
GIF_MAX_FPS = Fraction(100)


def check_frame_rate(fps: object, kind: str = ".mp4", name: str = "fps") -> Fraction:
    """`fps` as an exact Fraction; `VideoError` naming `name` unless it is a number in `FPS_RANGE` (at most
    `GIF_MAX_FPS` for a GIF, whose frame delays are counted in 1/100 s)."""
    try:
        value = Fraction(fps) if not isinstance(fps, bool) else None
    except (ValueError, OverflowError, TypeError):
        value = None
    low, high = FPS_RANGE[0], GIF_MAX_FPS if kind == ".gif" else FPS_RANGE[1]
    if value is None or not low <= value <= high:
        where = " for a GIF (its frame delays are whole 1/100 s)" if kind == ".gif" else ""
        raise VideoError(f"{name}={fps!r} must be a frame rate from {float(low):g} to {float(high):g} frames per second{where}")
    return value.limit_denominator(1001 * 1000)


def estimate_output_bytes(kind: str, frames: int, height: int, width: int, *, lossless: bool = False) -> int:
    """A low estimate of the bytes an output of `frames` frames of `height × width` takes, for the free-space
    check before the work: what even a well-compressing clip needs. PNG frames and lossless video: an eighth
    of the raw 8-bit RGB; GIF: a sixteenth; lossy video: 0.08 bits per pixel (x264 at crf 18 usually needs more)."""
    pixels = frames * height * width
    if kind == "folder" or lossless:
        return 3 * pixels // 8
    if kind == ".gif":
        return pixels // 16
    return pixels // 100


class VideoWriter:
    """Writes `(H, W, 3)` uint8 frames to a video file or a folder of PNGs, atomically.

    Use as a context manager: the output appears at `path` only if the block finishes without an error
    (`output_guard.output_file` / `output_folder`: checked on creation, built in a hidden temporary,
    checked again and renamed at the end, removed with the folders it created on failure).

    Args:
        path: a file whose extension picks the container (`OUTPUT_FORMATS`): `.mp4`, `.m4v`, `.mkv`,
            `.mov`, `.avi` (H.264), `.webm` (VP9), `.gif` (8-bit 3-3-2 colour, frame delays in 1/100 s);
            a name without an extension for a folder of `00000000.png`, `00000001.png`, …. Any other
            extension raises `VideoError`.
        fps: frame rate of a video file, in `FPS_RANGE` (at most 100 for a GIF).
        crf: constant rate factor of the encoder (x264: 0 best … 51 worst, 18 is visually lossless; VP9
            takes the same number on its own 0 … 63 scale). Not used by GIF.
        preset: x264 speed / compression trade-off, one of `X264_PRESETS` (VP9: mapped to its `cpu-used`).
        lossless: exact RGB (libx264rgb crf 0; VP9 lossless in planar RGB); ignores `crf` and `pix_fmt`;
            not available for GIF.
        pix_fmt: "yuv420p" (plays everywhere; needs even sizes, odd ones are padded by one replicated
            row / column) or "yuv444p" (keeps any size, fewer players).
        overwrite: replace an existing `path`, which must be an earlier output of this tool (a tagged
            file, or a folder with its manifest and nothing else); see `output_guard`.
        inputs: paths the output must not be, nor hold (`output_guard.check_location`).
        needed_bytes: an estimate of the output's size, checked against the free space at once.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: Fraction | float = DEFAULT_FPS,
        crf: int = 18,
        preset: str = "medium",
        lossless: bool = False,
        pix_fmt: str = "yuv420p",
        overwrite: bool = False,
        inputs: tuple[str | Path, ...] = (),
        needed_bytes: int = 0,
    ) -> None:
        self.path = Path(path)
        self.kind = output_kind(self.path)
        self.is_file = self.kind != "folder"
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
            raise VideoError(f"crf={crf!r} must be an integer in [0, 51]")
        if pix_fmt not in ("yuv420p", "yuv444p"):
            raise VideoError(f"pix_fmt={pix_fmt!r} must be 'yuv420p' or 'yuv444p'")
        if preset not in X264_PRESETS:
            raise VideoError(f"preset={preset!r} is not an encoder preset; use one of {', '.join(X264_PRESETS)}")
        if lossless and self.kind == ".gif":
            raise VideoError(f"output {str(self.path)!r}: GIF has 256 colours and cannot be lossless; use .mkv, .mp4 or .webm")
        self.fps = check_frame_rate(fps, self.kind)
        self.inputs, self.needed_bytes = tuple(inputs), needed_bytes
        try:
            output_guard.check_output(self.path, folder=not self.is_file, overwrite=overwrite, inputs=self.inputs,
                                      needed_bytes=needed_bytes)
        except output_guard.OutputError as error:
            raise VideoError(str(error)) from error
        self.crf, self.preset, self.lossless, self.pix_fmt = crf, preset, lossless, pix_fmt
        self.overwrite = overwrite
        self.count = 0
        self._tmp: Path | None = None
        self._output: contextlib.ExitStack | None = None
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._pad = (0, 0)

    def __enter__(self) -> "VideoWriter":
        self._output = contextlib.ExitStack()
        writer = output_guard.output_file if self.is_file else output_guard.output_folder
        self._tmp = self._output.enter_context(
            writer(self.path, overwrite=self.overwrite, inputs=self.inputs, needed_bytes=self.needed_bytes)
        )
        return self

    def _open_stream(self, height: int, width: int) -> None:
        import av

        container_format, codec = OUTPUT_FORMATS[self.kind]
        self._container = av.open(str(self._tmp), mode="w", format=container_format)
        if codec != "gif":
            self._container.metadata["comment"] = output_guard.TAG  # ownership: see output_guard
        pad = False
        if codec == "gif":
            stream = self._container.add_stream("gif", rate=self.fps)
            stream.pix_fmt = "rgb8"
        elif codec == "libvpx-vp9":
            stream = self._container.add_stream("libvpx-vp9", rate=self.fps)
            speed = str(VP9_SPEED.get(self.preset, 3))
            if self.lossless:
                stream.pix_fmt = "gbrp"
                stream.options = {"lossless": "1", "cpu-used": speed, "deadline": "good"}
            else:
                stream.pix_fmt = self.pix_fmt
                stream.options = {"crf": str(self.crf), "b": "0", "cpu-used": speed, "deadline": "good"}
                pad = self.pix_fmt == "yuv420p"
        elif self.lossless:
            stream = self._container.add_stream("libx264rgb", rate=self.fps)
            stream.pix_fmt = "rgb24"
            stream.options = {"crf": "0", "preset": self.preset}
        else:
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.pix_fmt = self.pix_fmt
            stream.options = {"crf": str(self.crf), "preset": self.preset}
            pad = self.pix_fmt == "yuv420p"
        self._pad = (height % 2 if pad else 0, width % 2 if pad else 0)
        if any(self._pad):
            log.warning(
                "%s: yuv420p needs even sizes; padding %d×%d frames to %d×%d by replicating the last row/column "
                "(use pix_fmt='yuv444p' or lossless to keep the size)",
                self.path, height, width, height + self._pad[0], width + self._pad[1],
            )
        stream.height, stream.width = height + self._pad[0], width + self._pad[1]
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one `(H, W, 3)` uint8 frame; every frame must have the first frame's size."""
        if self._tmp is None:
            raise RuntimeError("use VideoWriter as a context manager: `with VideoWriter(path) as writer:`")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f"frame must be an (H, W, 3) uint8 array, got {frame.dtype} {frame.shape}")
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            raise VideoError(f"frame {self.count} has size {frame.shape[:2]}, earlier frames {self._size}")
        if self.is_file:
            import av

            if self._stream is None:
                self._open_stream(*frame.shape[:2])
            if any(self._pad):
                frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.count
            video_frame.time_base = 1 / self.fps
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        else:
            from PIL import Image

            Image.fromarray(frame).save(self._tmp / f"{self.count:08d}.png")
        self.count += 1

    def _finish(self) -> None:
        """Flush the encoder, close the container and mark a GIF as ours (a folder's manifest: `output_folder`)."""
        if self.count == 0:
            raise VideoError(f"no frames were written to {str(self.path)!r}")
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        if self.kind == ".gif":
            output_guard.tag_gif(self._tmp)

    def _close_quietly(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the original error matters, not the cleanup's
                pass
            self._container = None

    def __exit__(self, exc_type, exc, tb) -> bool:
        output, self._output = self._output, None
        try:
            if exc_type is None:
                self._finish()
        except BaseException as error:
            self._close_quietly()
            if not output.__exit__(type(error), error, error.__traceback__):
                raise
            return False
        finally:
            self._tmp = None
        if exc_type is not None:
            self._close_quietly()
        return output.__exit__(exc_type, exc, tb)
