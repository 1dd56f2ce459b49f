"""Any timm model with `forward_intermediates` behind the backbone contract: ViTs, CNNs, hierarchical models.

A level is one entry of the model's `feature_info` (for a ViT a block, for ResNet the stem or a stage,
for ConvNeXt and Hiera a stage), chosen by its index (negative from the end) or by its stride ("s16":
the last level of that stride). The maps come from timm's `forward_intermediates(indices=[...],
output_fmt="NCHW", intermediates_only=True, stop_early=True)`, with the blocks after the deepest level and
the classifier head pruned. Token models (ViT, EVA / DINOv3) get their final norm, as their own forward
applies it, and their prefix tokens (CLS, registers) are dropped by timm; convolutional and hierarchical
levels are the stages' outputs. Token models are created with `dynamic_img_size=True`, so the position
embedding (absolute or RoPE) follows any grid and every multiple of the stride is a valid input.

Where the cells sit is traced once per level (`grid_trace.py`), so `geometry` is exact for a padded CNN.
Input sides are rounded to the largest level stride, or to 32 for SAM 2's Hiera (its windowed position
embedding tiles 8 × 8 cells of the stride-4 grid).

Random weights: several initialisations switch residual branches off at the start of training — timm's
DINOv2 and DINOv3 LayerScale (1e-5), ConvNeXt's gamma (1e-6), ResNet's zero-initialised last BatchNorm
of each block. With random weights kept like that the blocks do nothing and the features are a linear
embedding (DESIGN.md §5.6). `create_timm_model(..., pretrained=False)` sets every such scale to 1
(`open_residual_branches`), and undoes EVA's depth-scaled initialisation (`undo_depth_scaled_init`), which
keeps a random DINOv3 close to its patch embedding even then. `registry.build_backbone` then gives the
BatchNorm layers of a random backbone the statistics of their own activations on smooth random images
(`calibrate_batch_norm`): with the defaults they normalise nothing.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Sequence

import timm
import torch
from torch import Tensor, nn

from videoanyup.backbones.base import Backbone, Level
from videoanyup.backbones.grid_trace import SpatialPath, trace_spatial_path
from videoanyup.backbones.offline import require_hub_files
from videoanyup.functional.grid_geometry import GridGeometry

log = logging.getLogger(__name__)

# timm loads `model.safetensors` when the hub repository has it, else `pytorch_model.bin`
_TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A one-dimensional scale parameter whose values all lie below this at initialisation switches its branch off
DAMPED_SCALE = 1e-3


def open_residual_branches(model: nn.Module, value: float = 1.0) -> int:
    """Fill every damped one-dimensional scale of `model` with `value` (module docstring); returns how many.

    A scale is a 1-D parameter other than a bias (LayerScale's `gamma`, EVA's `gamma_1`, ConvNeXt's `gamma`,
    a BatchNorm's `weight`) whose values are all below `DAMPED_SCALE` in magnitude.
    """
    count = 0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() != 1 or name.endswith("bias"):
                continue
            if float(parameter.abs().max()) < DAMPED_SCALE:
                parameter.fill_(value)
                count += 1
    return count


def undo_depth_scaled_init(model: nn.Module) -> bool:
    """Undo timm's `fix_init_weight` (each block's output projections divided by sqrt(2·(l + 1))); True if
    `model` had it: EVA models (DINOv3) always, ViTs created with `fix_init=True`.

    With it a random DINOv3 ViT-S/16 stays at cosine 0.96 to its patch embedding even with LayerScale 1; with
    every block at the same strength (timm's plain ViT initialisation) it is 0.77.
    """
    from timm.models.eva import Eva

    if not (isinstance(model, Eva) or getattr(model, "fix_init", False)):
        return False
    with torch.no_grad():
        for layer_id, block in enumerate(model.blocks):
            scale = math.sqrt(2.0 * (layer_id + 1))
            block.attn.proj.weight.mul_(scale)
            block.mlp.fc2.weight.mul_(scale)
    return True


def calibrate_batch_norm(
    model: nn.Module, run=None, *, size: int = 128, batches: int = 1, batch: int = 4, seed: int = 0
) -> int:
    """Give every BatchNorm of a random `model` the statistics of its own activations; returns how many.

    A random network's BatchNorm layers hold the default running statistics (mean 0, variance 1), so in eval
    mode they normalise nothing: activations grow block after block and one direction dominates them (a
    random ResNet-50's stride-16 cells then have a mean pairwise cosine of 0.91 on a DAVIS frame, 0.56
    after this). Here the statistics are averaged over `batches` × `batch` smooth random images (normalised
    like natural images: per channel mean 0, standard deviation 1), drawn from a private generator, run
    through `run` (default: the model's forward; a backbone passes its levels' forward, which stops at the
    deepest level).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            coarse = torch.randn(batch, 3, size // 16, size // 16, generator=generator)
            images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
            images = images + 0.3 * torch.randn(batch, 3, size, size, generator=generator)
            images = (images - images.mean(dim=(0, 2, 3), keepdim=True)) / images.std(dim=(0, 2, 3), keepdim=True)
            (model if run is None else run)(images)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    return len(norms)


def set_layer_scale(model: nn.Module, value: float = 1.0) -> int:
    """Fill every LayerScale gamma of `model` with `value`; returns how many were set."""
    count = 0
    with torch.no_grad():
        for module in model.modules():
            gamma = getattr(module, "gamma", None)
            if "LayerScale" in type(module).__name__ and isinstance(gamma, Tensor):
                gamma.fill_(value)
                count += 1
    return count


def create_timm_model(model_name: str, *, pretrained: bool, backbone_name: str | None = None) -> nn.Module:
    """Create a timm model by name, token models with `dynamic_img_size=True`, in eval mode.

    Args:
        model_name: timm name, with its pretrained tag, e.g. "resnet50.a1_in1k"; the tag fixes the
            normalisation (`pretrained_cfg`) even for random weights.
        pretrained: load the tag's weights (hub cache or download; fails fast offline, see `offline.py`).
            False: random weights, seeded by torch's global generator, residual branches opened
            (`open_residual_branches`, `undo_depth_scaled_init`); BatchNorm statistics are left to the caller
            (`calibrate_batch_norm`, which `build_backbone` runs).
    """
    if pretrained:
        cfg = timm.models.get_pretrained_cfg(model_name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if hub_id:
            repo_id, _, revision = hub_id.partition("@")
            filenames = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else _TIMM_WEIGHT_FILES
            require_hub_files(repo_id, (filenames,), what=backbone_name or model_name, revision=revision or None)
    try:
        model = timm.create_model(model_name, pretrained=pretrained, dynamic_img_size=True)
    except TypeError as error:  # not a token model: its constructor has no such option
        if "dynamic_img_size" not in str(error):
            raise
        model = timm.create_model(model_name, pretrained=pretrained)
    if not pretrained:
        count = open_residual_branches(model, 1.0)
        rescaled = undo_depth_scaled_init(model)
        log.debug("%s: random weights, %d damped scales set to 1, depth scaling undone: %s", model_name, count, rescaled)
    return model.eval()


def create_timm_vit(model_name: str, *, pretrained: bool, backbone_name: str | None = None) -> nn.Module:
    """`create_timm_model` for a ViT (kept for callers of the earlier name)."""
    return create_timm_model(model_name, pretrained=pretrained, backbone_name=backbone_name)


def describe_levels(feature_info) -> str:
    """`index: stride s, C channels (module)` for every level of a timm `feature_info`."""
    return "; ".join(f"{i}: stride {f['reduction']}, C {f['num_chs']} ({f['module']})" for i, f in enumerate(feature_info))


def resolve_levels(feature_info, levels: Sequence[int | str], what: str) -> list[int]:
    """Levels given by index (negative from the end) or by stride ("s16": the last level of stride 16)
    → indices into `feature_info`; ValueError naming `what` and listing the levels otherwise."""
    count = len(feature_info)
    chosen = []
    for level in levels:
        if isinstance(level, str) and level.startswith("s") and level[1:].isdigit():
            matches = [i for i, f in enumerate(feature_info) if int(f["reduction"]) == int(level[1:])]
            if not matches:
                raise ValueError(f"backbone {what!r}: no level of stride {level[1:]}; levels: {describe_levels(feature_info)}")
            chosen.append(matches[-1])
        elif isinstance(level, int) and not isinstance(level, bool) and -count <= level < count:
            chosen.append(level % count)
        else:
            raise ValueError(
                f"backbone {what!r}: level {level!r} is neither an index in [-{count}, {count - 1}] nor a stride "
                f"'sN'; levels: {describe_levels(feature_info)}"
            )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"backbone {what!r}: levels {list(levels)} name the same level twice")
    return chosen


def _is_token_model(model: nn.Module) -> bool:
    """ViT-like: `forward_intermediates` can return prefix tokens (ViT, EVA / DINOv3, RADIO)."""
    return "return_prefix_tokens" in inspect.signature(model.forward_intermediates).parameters


def _size_multiple(model: nn.Module, strides: Sequence[int]) -> int:
    """Input sides must be multiples of this: the largest stride, or Hiera's windowed position embedding."""
    largest = max(strides)
    window = getattr(model, "pos_embed_window", None)
    if isinstance(window, Tensor):  # SAM 2 Hiera: the stride-4 grid must tile its window embedding
        patch_stride = model.patch_embed.proj.stride[0]
        return max(largest, int(patch_stride) * int(window.shape[-1]))
    return largest


class TimmBackbone(Backbone):
    """A timm model with `forward_intermediates` as a `Backbone` (module docstring).

    Args:
        model: the timm model, e.g. from `create_timm_model` (pruned here to what the levels need).
        name: registered name or spec.
        levels: indices into `model.feature_info` (negative from the end) or strides ("s16").
        mean, std: RGB normalisation (default: the model's `pretrained_cfg`).
        chunk, short_side: see `Backbone`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        levels: Sequence[int | str] = (-1,),
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        chunk: int = 8,
        short_side: int | None = None,
    ) -> None:
        feature_info = getattr(model, "feature_info", None)
        if not hasattr(model, "forward_intermediates") or not feature_info:
            kind = type(model).__name__
            raise ValueError(f"model must be a timm model with forward_intermediates and feature_info, got {kind}")
        token = _is_token_model(model)
        if token and not getattr(model, "dynamic_img_size", False):
            raise ValueError("model must be created with dynamic_img_size=True (any multiple of the patch size)")
        if token:
            patch_h, patch_w = model.patch_embed.patch_size
            if patch_h != patch_w:
                raise ValueError(f"model must have square patches, got patch_size {(patch_h, patch_w)}")
        if not levels:
            raise ValueError(f"backbone {name!r}: levels must name at least one level")
        indices = resolve_levels(feature_info, levels, name)
        chosen = [
            Level(i, int(feature_info[i]["reduction"]), int(feature_info[i]["num_chs"]), str(feature_info[i]["module"]))
            for i in indices
        ]
        model.prune_intermediate_layers(indices=sorted(indices), prune_norm=not token, prune_head=True)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        super().__init__(
            name=name,
            levels=chosen,
            size_multiple=_size_multiple(model, [level.stride for level in chosen]),
            mean=tuple(mean if mean is not None else cfg.get("mean", IMAGENET_MEAN)),
            std=tuple(std if std is not None else cfg.get("std", IMAGENET_STD)),
            chunk=chunk,
            short_side=short_side,
        )
        self.model = model.eval()
        self._token = token
        self._order = sorted(indices)  # forward_intermediates returns the levels in index order
        self._paths = [self._trace(level) for level in chosen]

    def _intermediates(self, frames: Tensor, indices: list[int]) -> list[Tensor]:
        return self.model.forward_intermediates(
            frames, indices=indices, norm=self._token, stop_early=True, output_fmt="NCHW", intermediates_only=True
        )

    def _trace(self, level: Level) -> SpatialPath:
        """The spatial path of one level, traced on a small random input of k × (k + 1) size multiples, at least
        64 pixels a side (PVT's key/value reduction needs its stage's grid at least as large as its kernel)."""
        m = self.size_multiple
        k = max(2, math.ceil(64 / m))
        image = torch.rand(1, 3, k * m, (k + 1) * m, generator=torch.Generator().manual_seed(0))
        try:
            path = trace_spatial_path(self.model, lambda x: self._intermediates(x, [level.index])[0], image)
        except ValueError as error:
            raise ValueError(f"backbone {self.name!r} at level {level.index}: {error}") from error
        if path.stride != (level.stride, level.stride):
            raise ValueError(
                f"backbone {self.name!r} at level {level.index}: the traced layers give stride {path.stride}, "
                f"its feature_info says {level.stride}"
            )
        return path

    def _input_geometry(self, position: int, size: tuple[int, int]) -> GridGeometry:
        return self._paths[position].geometry(*size)

    def _encode(self, frames: Tensor) -> list[Tensor]:
        """(n, 3, H', W') normalised -> per level (n, C, h, w), in the order of `levels`."""
        maps = dict(zip(self._order, self._intermediates(frames, self._order)))
        return [maps[level.index] for level in self.levels]

    @property
    def has_patch_embedding(self) -> bool:
        level = self.levels[0]
        return self._token and len(self.levels) == 1 and int(self.model.patch_embed.proj.out_channels) == level.channels

    def _embed(self, frames: Tensor) -> Tensor:
        """(n, 3, H', W') normalised -> (n, C, H'/p, W'/p): the patch embedding (NHWC under dynamic_img_size)."""
        return self.model.patch_embed(frames).permute(0, 3, 1, 2)  # (n, h, w, C) -> (n, C, h, w)
