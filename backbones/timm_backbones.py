"""Vision transformers from timm behind the backbone contract.

The feature map is the last block's patch tokens after the final norm, from timm's
`forward_intermediates(indices=1, norm=True, output_fmt="NCHW")`: prefix tokens (CLS, registers) are
dropped and pooling heads (CLS token, SigLIP's attention pool) are pruned, since only the patch map is
used. Models are created with `dynamic_img_size=True`, so the position embedding is interpolated to any
grid and every multiple of the patch size is a valid input.

Random weights: timm's DINOv2 initialises LayerScale to 1e-5, which makes every block nearly the
identity, and the output then is a linear patch embedding (DESIGN.md §5.6). `create_timm_vit(...,
pretrained=False)` sets every LayerScale to 1; models without LayerScale keep timm's initialisation.
"""

from __future__ import annotations

import logging

import timm
import torch
from torch import Tensor, nn

from videoanyup.backbones.base import Backbone
from videoanyup.backbones.offline import require_hub_files

log = logging.getLogger(__name__)

# timm loads `model.safetensors` when the hub repository has it, else `pytorch_model.bin`
_TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


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


def create_timm_vit(model_name: str, *, pretrained: bool, backbone_name: str | None = None) -> nn.Module:
    """Create a timm ViT with `dynamic_img_size=True` and its classifier head pruned.

    Args:
        model_name: timm name with its pretrained tag, e.g. "vit_small_patch14_dinov2.lvd142m"; the tag
            fixes the normalisation (`pretrained_cfg`) even for random weights.
        pretrained: load the tag's weights (hub cache or download; fails fast offline, see `offline.py`).
            False: random weights, seeded by torch's global generator, LayerScale set to 1.
    """
    if pretrained:
        cfg = timm.models.get_pretrained_cfg(model_name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if hub_id:
            repo_id, _, revision = hub_id.partition("@")
            filenames = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else _TIMM_WEIGHT_FILES
            require_hub_files(repo_id, (filenames,), what=backbone_name or model_name, revision=revision or None)
    model = timm.create_model(model_name, pretrained=pretrained, dynamic_img_size=True)
    if not pretrained:
        count = set_layer_scale(model, 1.0)
        log.debug("%s: random weights, %d LayerScale gammas set to 1", model_name, count)
    model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    return model.eval()


class TimmBackbone(Backbone):
    """A timm `VisionTransformer` (created with `dynamic_img_size=True`) as a `Backbone`.

    Args:
        model: the timm model, e.g. from `create_timm_vit`.
        name: registered name.
        mean, std: RGB normalisation (default: the model's `pretrained_cfg`).
        chunk, short_side: see `Backbone`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        chunk: int = 8,
        short_side: int | None = None,
    ) -> None:
        if not hasattr(model, "forward_intermediates") or not hasattr(model, "patch_embed"):
            kind = type(model).__name__
            raise ValueError(f"model must be a timm vision transformer with forward_intermediates, got {kind}")
        if not getattr(model, "dynamic_img_size", False):
            raise ValueError("model must be created with dynamic_img_size=True (any multiple of the patch size)")
        patch_h, patch_w = model.patch_embed.patch_size
        if patch_h != patch_w:
            raise ValueError(f"model must have square patches, got patch_size {(patch_h, patch_w)}")
        cfg = getattr(model, "pretrained_cfg", None) or {}
        super().__init__(
            name=name,
            patch_size=int(patch_h),
            embed_dim=int(model.embed_dim),
            mean=tuple(mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(std if std is not None else cfg.get("std", (0.229, 0.224, 0.225))),
            chunk=chunk,
            short_side=short_side,
        )
        self.model = model

    def _encode(self, frames: Tensor) -> Tensor:
        """(n, 3, H', W') normalised -> (n, C, H'/p, W'/p): last block, final norm, patch tokens only."""
        maps = self.model.forward_intermediates(
            frames, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )  # [(n, C, h, w)]
        return maps[-1]

    def _embed(self, frames: Tensor) -> Tensor:
        """(n, 3, H', W') normalised -> (n, C, H'/p, W'/p): the patch embedding (NHWC under dynamic_img_size)."""
        return self.model.patch_embed(frames).permute(0, 3, 1, 2)  # (n, h, w, C) -> (n, C, h, w)
