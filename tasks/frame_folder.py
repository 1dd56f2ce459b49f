"""Folders of frames: which files are frames, in which order, and how each image mode becomes 8-bit RGB.

- Order: natural (numeric-aware) order of the file names, so `1.png, 2.png, …, 10.png` keep their
  numbers' order; names that differ only in case or leading zeros are ordered by the plain name.
- Frames: files ending in `.png`, `.jpg` or `.jpeg` (any case). Every other entry is skipped and the
  skipped entries are reported in one log line per folder.
- Modes: every mode PIL gives for these files becomes `(H, W, 3)` uint8 RGB:
  `1`, `L`, `P`, `RGB`, `CMYK`, `YCbCr` (PIL's own conversion); `LA`, `RGBA`, `PA` and `P` / `L` / `RGB`
  with a transparent colour (the alpha is dropped, with one warning per folder); the 16-bit modes
  `I;16`, `I;16L`, `I;16B`, `I;16N` and the 32-bit `I` and `F` (taken on the 16-bit scale 0 … 65535,
  rounded to 8 bits; values outside that scale are refused).
- Size: PIL's own decompression-bomb limit is off; a frame is refused (`FrameError`) before it is decoded
  when its header declares more pixels than the caller's limit (`--max-pixels`, default 7680×4320).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from videoanyup.validation import MAX_OUTPUT_PIXELS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("LA", "RGBA", "PA", "La", "RGBa")
_DIGITS = re.compile(r"(\d+)")


class FrameError(ValueError):
    """A frame that cannot be read or converted; the message names the file."""


def natural_key(name: str) -> tuple:
    """Sort key of a file name: digit runs compare as numbers, the rest as case-folded text."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(part), "") if index % 2 else (1, 0, part.casefold()) for index, part in enumerate(parts))
    return key, name


def split_frames(folder: Path) -> tuple[list[Path], list[str]]:
    """The frame files of `folder` in natural order, and the names of the other entries (sorted)."""
    frames, skipped = [], []
    for entry in folder.iterdir():
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            frames.append(entry)
        else:
            skipped.append(entry.name)
    frames.sort(key=lambda p: natural_key(p.name))
    return frames, sorted(skipped, key=natural_key)


def report_skipped(folder: Path, skipped: list[str]) -> None:
    """One log line naming the entries of `folder` that are not frames (none: nothing)."""
    if skipped:
        shown = ", ".join(skipped[:5]) + (f", … ({len(skipped)} in all)" if len(skipped) > 5 else "")
        log.warning(
            "%s: skipped %d entr%s that %s not %s frames: %s",
            folder, len(skipped), "y" if len(skipped) == 1 else "ies", "is" if len(skipped) == 1 else "are",
            "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES), shown,
        )


def _has_alpha(image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def to_rgb8(image, name: str) -> tuple[np.ndarray, bool]:
    """An open PIL image as `(H, W, 3)` uint8 RGB, and whether an alpha channel was dropped.

    `name` (the file) is named in the `FrameError` raised for values outside the 16-bit scale.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)  # (H, W): 16-bit scale
        if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 65535):
            raise FrameError(
                f"frame {name!r} (mode {image.mode}) has values in [{values.min():g}, {values.max():g}]; "
                "expected the 16-bit scale 0 … 65535"
            )
        gray = np.round(values / 257.0).astype(np.uint8)  # 65535 → 255
        return np.repeat(gray[..., None], 3, axis=-1), False
    alpha = _has_alpha(image)
    if alpha:
        image = image.convert("RGBA")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))), alpha


@contextlib.contextmanager
def _opened(path: Path) -> Iterator:
    """`PIL.Image.open(path)` with PIL's decompression-bomb limit off (this tool applies its own)."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_frame_pixels(width: int, height: int, name: str, max_pixels: int = MAX_OUTPUT_PIXELS) -> None:
    """`FrameError` when a frame of `width × height` has more than `max_pixels` pixels (before decoding it)."""
    if width * height > max_pixels:
        raise FrameError(
            f"frame {name!r} is {width}×{height} = {width * height / 1e6:,.1f} megapixels ({3 * width * height / 1e9:.3g} GB "
            f"decoded), above the limit --max-pixels {max_pixels:,}; pass --max-pixels {width * height} or more to allow it"
        )


def read_frame(path: Path, max_pixels: int = MAX_OUTPUT_PIXELS) -> tuple[np.ndarray, bool]:
    """One frame file as `(H, W, 3)` uint8 RGB, and whether it had an alpha channel; `FrameError` if unreadable
    or larger than `max_pixels` pixels (checked from the header, before decoding)."""
    try:
        with _opened(path) as image:
            check_frame_pixels(*image.size, str(path), max_pixels)
            image.load()
            return to_rgb8(image, str(path))
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, FrameError):
            raise
        raise FrameError(f"cannot read frame {str(path)!r}: {error}") from error


def frame_size(path: Path) -> tuple[int, int]:
    """`(width, height)` of a frame file from its header (nothing decoded, any size); `FrameError` if it is not a
    readable image."""
    try:
        with _opened(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise FrameError(f"cannot read frame {str(path)!r}: {error}") from error
