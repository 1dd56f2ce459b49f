"""The registered backbones and the factory that builds them.

    from videoanyup.backbones import build_backbone, list_backbones
    backbone = build_backbone("dinov2_vits14")               # pretrained (hub cache or download)
    backbone = build_backbone("dinov2_vits14", random=True)  # offline: random, non-degenerate
    feats = backbone.extract(video)                          # (B, T, 3, H, W) -> (B, T, C, h, w)

| name               | source       | model                                      | p  | C    |
|--------------------|--------------|--------------------------------------------|----|------|
| dinov2_vits14      | timm         | vit_small_patch14_dinov2.lvd142m           | 14 | 384  |
| dinov2_vitb14      | timm         | vit_base_patch14_dinov2.lvd142m            | 14 | 768  |
| dinov2_vitl14      | timm         | vit_large_patch14_dinov2.lvd142m           | 14 | 1024 |
| dinov2_vits14_reg  | timm         | vit_small_patch14_reg4_dinov2.lvd142m      | 14 | 384  |
| dino_vits16        | timm         | vit_small_patch16_224.dino                 | 16 | 384  |
| clip_vitb16        | timm         | vit_base_patch16_clip_224.openai           | 16 | 768  |
| siglip2_vitb16     | timm         | vit_base_patch16_siglip_224.v2_webli       | 16 | 768  |
| vit_b16            | timm         | vit_base_patch16_224.augreg2_in21k_ft_in1k | 16 | 768  |
| hf_dinov2_vits14   | transformers | facebook/dinov2-small (Dinov2Model)        | 14 | 384  |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videoanyup.backbones.base import Backbone
from videoanyup.backbones.degeneracy import check_not_degenerate
from videoanyup.backbones.hf_dinov2 import HFDinov2Backbone, create_hf_dinov2
from videoanyup.backbones.timm_backbones import TimmBackbone, create_timm_vit


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: where it comes from and what it returns.

    source: "timm" (model = timm name with pretrained tag) or "transformers" (model = hub repository id).
    """

    source: str
    model: str
    patch_size: int
    embed_dim: int
    description: str


BACKBONES: dict[str, BackboneSpec] = {
    "dinov2_vits14": BackboneSpec("timm", "vit_small_patch14_dinov2.lvd142m", 14, 384, "DINOv2 ViT-S/14"),
    "dinov2_vitb14": BackboneSpec("timm", "vit_base_patch14_dinov2.lvd142m", 14, 768, "DINOv2 ViT-B/14"),
    "dinov2_vitl14": BackboneSpec("timm", "vit_large_patch14_dinov2.lvd142m", 14, 1024, "DINOv2 ViT-L/14"),
    "dinov2_vits14_reg": BackboneSpec(
        "timm", "vit_small_patch14_reg4_dinov2.lvd142m", 14, 384, "DINOv2 ViT-S/14 with 4 registers"
    ),
    "dino_vits16": BackboneSpec("timm", "vit_small_patch16_224.dino", 16, 384, "DINO ViT-S/16"),
    "clip_vitb16": BackboneSpec("timm", "vit_base_patch16_clip_224.openai", 16, 768, "OpenAI CLIP ViT-B/16 (image)"),
    "siglip2_vitb16": BackboneSpec("timm", "vit_base_patch16_siglip_224.v2_webli", 16, 768, "SigLIP 2 ViT-B/16 (224)"),
    "vit_b16": BackboneSpec(
        "timm", "vit_base_patch16_224.augreg2_in21k_ft_in1k", 16, 768, "supervised ViT-B/16 (IN-21k, fine-tuned IN-1k)"
    ),
    "hf_dinov2_vits14": BackboneSpec(
        "transformers", "facebook/dinov2-small", 14, 384, "DINOv2 ViT-S/14 through transformers' Dinov2Model"
    ),
}


def list_backbones() -> list[str]:
    """The registered names, in registration order."""
    return list(BACKBONES)


def build_backbone(
    name: str,
    *,
    pretrained: bool | None = None,
    random: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    chunk: int = 8,
    short_side: int | None = None,
) -> Backbone:
    """Build a registered backbone, frozen (no gradients) and in eval mode.

    Args:
        name: one of `list_backbones()`.
        pretrained: load the published weights (default, unless `random`). They come from the Hugging Face
            hub cache or are downloaded; when neither is possible (HF_HUB_OFFLINE, no network) a
            `RuntimeError` naming HF_HUB_OFFLINE and the cache folder is raised before any download.
        random: random weights instead (same as pretrained=False): seeded by torch's global generator,
            LayerScale 1, and checked not to be degenerate (`degeneracy.check_not_degenerate`).
        device, dtype: where and in which precision to run the network (input chunks are moved there).
        chunk: frames per forward pass; short_side: default resize target (see `Backbone.input_size`).
    Raises:
        ValueError: unknown `name` (the message lists the known ones), or pretrained=True with random=True.
    """
    if name not in BACKBONES:
        raise ValueError(f"name must be a registered backbone, one of {list_backbones()}; got {name!r}")
    if pretrained and random:
        raise ValueError("pretrained=True and random=True contradict each other; pass one of them")
    use_weights = not random if pretrained is None else bool(pretrained)
    spec = BACKBONES[name]
    if spec.source == "timm":
        model = create_timm_vit(spec.model, pretrained=use_weights, backbone_name=name)
        backbone: Backbone = TimmBackbone(model, name=name, chunk=chunk, short_side=short_side)
    elif spec.source == "transformers":
        model = create_hf_dinov2(spec.model, pretrained=use_weights, backbone_name=name)
        backbone = HFDinov2Backbone(model, name=name, chunk=chunk, short_side=short_side)
    else:  # a registry entry, not user input
        raise AssertionError(f"unknown source {spec.source!r} for backbone {name!r}")
    backbone = backbone.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if not use_weights:
        check_not_degenerate(backbone)
    return backbone
