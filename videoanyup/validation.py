"""Input checks for the public entry points: clear `ValueError`s that name the argument and the shape.

Every public `forward` checks its inputs here first, so a user never meets a deep broadcasting error.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

UNIT_RANGE_TOLERANCE = 1e-3  # float error around [0, 1] that pixel inputs may carry (resampling, fp16 rounding)


def check_positive_int(value: object, name: str) -> int:
    """`value` itself when it is an int ≥ 1 (not a bool); else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_unit_range(x: Tensor, name: str, *, tolerance: float = UNIT_RANGE_TOLERANCE) -> None:
    """ValueError naming `name` unless every value of `x` is in [0, 1] (± `tolerance` of float error)."""
    if x.numel() == 0:
        return
    low, high = float(x.min()), float(x.max())
    if low < -tolerance or high > 1 + tolerance:
        raise ValueError(
            f"{name} must hold RGB values in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "divide 8-bit frames by 255 and do not normalise them to [-1, 1] or by mean / std"
        )


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype `module` computes in: that of its first floating-point parameter (float32 if none)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def check_video(
    x: object,
    name: str,
    *,
    channels: int | None = 3,
    allow_image: bool = True,
    letters: str = "h, w",
    unit_range: bool = False,
) -> tuple[Tensor, bool]:
    """Check a video `(B, T, C, h, w)` (or, with `allow_image`, an image `(B, C, h, w)` taken as T = 1).

    Args:
        channels: the required channel count C, or None for any C ≥ 1.
        letters: how the spatial dims are written in messages ("h, w" or "H, W").
        unit_range: also require pixel values in [0, 1] (`check_unit_range`).
    Returns:
        The video as `(B, T, C, h, w)` and whether it came as a 4-D image.
    """
    x = check_tensor(x, name)
    c_text = "3" if channels == 3 else ("C" if channels is None else str(channels))
    expected = f"(B, T, {c_text}, {letters})" + (f" or (B, {c_text}, {letters})" if allow_image else "")
    if x.dim() == 4 and allow_image:
        x, was_image = x.unsqueeze(1), True
    elif x.dim() == 5:
        was_image = False
    else:
        raise ValueError(f"{name} must have shape {expected}, got {x.dim()}-D shape {tuple(x.shape)}")
    b, t, c, h, w = x.shape
    if b == 0 or t == 0 or h == 0 or w == 0:
        raise ValueError(f"{name} must have shape {expected} with B, T, {letters} >= 1, got {tuple(x.shape)}")
    if channels is not None and c != channels:
        raise ValueError(f"{name} must have shape {expected} with {channels} channels, got C = {c} in {tuple(x.shape)}")
    if c == 0:
        raise ValueError(f"{name} must have at least one channel, got {tuple(x.shape)}")
    check_finite(x, name)
    if unit_range:
        check_unit_range(x, name)
    return x, was_image


MAX_OUTPUT_PIXELS = 7680 * 4320  # 8K UHD: the default limit on the pixels of one output frame (API and command line)


def check_output_size(
    hr_size: tuple[int, int],
    lr_size: tuple[int, int],
    *,
    scale: float | tuple[float, float] | None = None,
    max_pixels: int = MAX_OUTPUT_PIXELS,
) -> tuple[int, int]:
    """The output size `(H, W)` itself, once checked against absurd work, before any is done.

    Raises `ValueError` naming `scale` when it makes a side of the `lr_size = (h, w)` input shorter than
    one pixel (`round(a·h) < 1`, which `output_size` would silently raise to 1), and naming `max_pixels`
    when `H·W` exceeds it (the default, 7680×4320, is the command line's `--max-pixels`); pass a larger
    `max_pixels` to allow more.
    """
    check_positive_int(max_pixels, "max_pixels")
    if scale is not None:
        a, b = (scale, scale) if isinstance(scale, (int, float)) else scale
        if float(a) * lr_size[0] < 0.5 or float(b) * lr_size[1] < 0.5:
            raise ValueError(
                f"scale={scale!r} makes the {lr_size[0]}×{lr_size[1]} input {float(a) * lr_size[0]:.3g} × "
                f"{float(b) * lr_size[1]:.3g} pixels, under one pixel per side; use a scale of at least "
                f"{0.5 / min(lr_size):.3g}"
            )
    height, width = hr_size
    if height * width > max_pixels:
        raise ValueError(
            f"the output would be {height}×{width} = {height * width:,} pixels per frame, above "
            f"max_pixels={max_pixels:,} (default {MAX_OUTPUT_PIXELS:,} = 7680×4320); pass max_pixels="
            f"{height * width} or more to allow it"
        )
    return hr_size
