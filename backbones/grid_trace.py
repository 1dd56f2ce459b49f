"""Where a network puts its feature cells: the strided layers on the way to a level, traced once.

A level's cell i (per axis) is centred where its receptive field is. Each convolution or pooling layer
maps output index i to the input indices `stride·i − padding + dilation·[0, kernel)`, centred at
`stride·i − padding + dilation·(kernel − 1)/2`; composing the layers on the path from the pixels to the
level gives `centre(i) = offset + stride·i` in pixels. ViT patch embeddings are such a layer too (kernel =
stride = p, no padding: centre `p·i + (p − 1)/2`, the patch's middle pixel), and so are ResNet's stem and
max pool (centre `16·i` at stride 16: half a cell before a tiling's `16·i + 7.5`), ConvNeXt's stem and
downsampling layers, and Hiera's patch embedding and query pooling.

`trace_spatial_layers` runs the network once on a small input with forward hooks on every `nn.Conv2d`,
`nn.MaxPool2d` and `nn.AvgPool2d` (timm's TF-"same" variants included) and keeps those on the path: a
layer whose input has the current grid size and that moves or subsamples it. A parallel layer that reads
a grid the path has already left (a residual branch's 1×1 downsampling after the main branch's strided
3×3) is skipped; the two are centred alike in the networks here. So is a layer whose output no later layer
reads as a grid and which is not the level (the strided convolution that reduces keys and values in PVT's
attention: its map becomes tokens). Layers that keep the grid (stride 1, symmetric padding) do not move it
and are skipped too. Layers run after the level was taken (ResNet pools
its stem level before returning it) are cut: the path is the longest prefix that ends on the level's grid.

Centres are in pixel-index coordinates here (pixel k's centre at k); `SpatialPath.geometry` reports them in
the continuous coordinates of `GridGeometry` (pixel k spans `[k, k + 1)`, so its centre is at k + ½).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from videoanyup.functional.grid_geometry import GridGeometry


@dataclass(frozen=True)
class SpatialLayer:
    """One layer on the path, per axis (y, x): kernel, stride, padding before, dilation.

    `same`: TF-style "same" padding computed from the input size (timm's `*Same` layers); `padding` is then
    unused. `ceil_mode`: pooling that rounds its output length up.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool = False
    same: bool = False

    def pad_before(self, axis: int, length: int) -> int:
        """Padding before the first input pixel along `axis` for an input of `length`."""
        if not self.same:
            return self.padding[axis]
        k, s, d = self.kernel[axis], self.stride[axis], self.dilation[axis]
        total = max((math.ceil(length / s) - 1) * s + (k - 1) * d + 1 - length, 0)
        return total // 2

    def out_length(self, axis: int, length: int) -> int:
        """The output length along `axis` for an input of `length` (PyTorch's formula)."""
        k, s, d = self.kernel[axis], self.stride[axis], self.dilation[axis]
        if self.same:
            return math.ceil(length / s)
        span = length + 2 * self.padding[axis] - d * (k - 1) - 1
        out = (math.ceil if self.ceil_mode else math.floor)(span / s) + 1
        if self.ceil_mode and (out - 1) * s >= length + self.padding[axis]:  # the last window must start inside
            out -= 1
        return out

    def centre(self, axis: int, length: int) -> float:
        """Input index of output cell 0's centre along `axis` (output cell i: this + stride·i)."""
        k, d = self.kernel[axis], self.dilation[axis]
        return -self.pad_before(axis, length) + d * (k - 1) / 2

    def keeps_grid(self) -> bool:
        """Stride 1 and centred: output i is centred on input i (and the size does not change)."""
        return all(
            self.stride[a] == 1 and not self.same and self.dilation[a] * (self.kernel[a] - 1) == 2 * self.padding[a]
            for a in (0, 1)
        )


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def spatial_layer(module: nn.Module) -> SpatialLayer | None:
    """The `SpatialLayer` of a convolution or pooling module, None for any other module."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    same = isinstance(module, (Conv2dSame, MaxPool2dSame, AvgPool2dSame))
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):  # "same" (stride 1, static) or "valid"
            pad = tuple(d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation)) if module.padding == "same" else (0, 0)
        else:
            pad = _pair(module.padding)
        return SpatialLayer(_pair(module.kernel_size), _pair(module.stride), pad, _pair(module.dilation), same=same)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = module.stride if module.stride is not None else module.kernel_size
        dilation = getattr(module, "dilation", 1)
        return SpatialLayer(
            _pair(module.kernel_size), _pair(stride), _pair(module.padding), _pair(dilation),
            ceil_mode=bool(module.ceil_mode), same=same,
        )
    return None


@dataclass(frozen=True)
class SpatialPath:
    """The layers from the pixels to one level, in order; `geometry(H, W)` composes them (module docstring)."""

    layers: tuple[SpatialLayer, ...]

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The level's grid `(h, w)` for an input of `(height, width)` pixels."""
        sizes = [height, width]
        for layer in self.layers:
            sizes = [layer.out_length(a, sizes[a]) for a in (0, 1)]
        return sizes[0], sizes[1]

    def geometry(self, height: int, width: int) -> GridGeometry:
        """Where the level's cells sit on an input of `(height, width)` pixels."""
        sizes, scale, shift = [height, width], [1.0, 1.0], [0.0, 0.0]  # centre(i) = shift + scale·i (index coords)
        for layer in self.layers:
            for a in (0, 1):
                shift[a] += scale[a] * layer.centre(a, sizes[a])
                scale[a] *= layer.stride[a]
                sizes[a] = layer.out_length(a, sizes[a])
        return GridGeometry(
            grid=(sizes[0], sizes[1]), frame=(height, width), stride=tuple(scale), offset=(shift[0] + 0.5, shift[1] + 0.5)
        )

    @property
    def stride(self) -> tuple[int, int]:
        """The product of the layers' strides (y, x)."""
        return (math.prod(layer.stride[0] for layer in self.layers), math.prod(layer.stride[1] for layer in self.layers))


def trace_spatial_path(model: nn.Module, run: Callable[[Tensor], Tensor], image: Tensor) -> SpatialPath:
    """The spatial path of the level that `run(image)` returns, found with forward hooks (module docstring).

    Args:
        model: the network whose modules are hooked.
        run: `(1, 3, H, W)` → the level's `(1, C, h, w)` map (it must run only what that level needs).
        image: a `(1, 3, H, W)` input.
    Raises:
        ValueError: the traced layers do not explain the level's grid (a resize the network does another
            way, e.g. patch merging by reshapes or an interpolation): its geometry is unknown.
    """
    calls: list[tuple[SpatialLayer, tuple[int, int], tuple[int, int]]] = []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        layer = spatial_layer(module)
        if layer is not None and isinstance(output, Tensor) and output.dim() == 4:
            calls.append((layer, tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:])))

    handles = [m.register_forward_hook(hook) for m in model.modules() if spatial_layer(m) is not None]
    try:
        with torch.no_grad():
            level = run(image)
    finally:
        for handle in handles:
            handle.remove()
    current, path = tuple(image.shape[-2:]), []
    target = tuple(level.shape[-2:])
    for index, (layer, size_in, size_out) in enumerate(calls):
        if size_in != current or layer.keeps_grid():
            continue
        if size_out != target and all(later_in != size_out for _, later_in, _ in calls[index + 1 :]):
            continue  # a side branch whose map nothing reads as a grid again (PVT's key/value reduction)
        predicted = tuple(layer.out_length(a, current[a]) for a in (0, 1))
        if predicted != size_out:
            raise ValueError(f"layer {layer} maps {current} to {size_out}, not to {predicted} as its parameters say")
        path.append(layer)
        current = size_out
    # a network may run layers past the level before returning it (ResNet's max pool after its stem level):
    # the level's path is the longest prefix that ends on its grid
    ends = [n for n in range(len(path) + 1) if SpatialPath(tuple(path[:n])).grid(*image.shape[-2:]) == target]
    found = SpatialPath(tuple(path[: ends[-1]])) if ends else SpatialPath(tuple(path))
    if found.grid(*image.shape[-2:]) != target:
        raise ValueError(
            f"the convolution and pooling layers on the way to this level map {tuple(image.shape[-2:])} pixels to "
            f"{found.grid(*image.shape[-2:])}, but the level is {tuple(level.shape[-2:])}: the network resizes its grid "
            "another way, so where its cells sit is unknown"
        )
    return found


__all__ = ["SpatialLayer", "SpatialPath", "spatial_layer", "trace_spatial_path"]
