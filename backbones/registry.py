"""The registered backbones and the factory that builds them from a name or a spec (`spec.py`).

    from videoanyup.backbones import build_backbone, list_backbones
    backbone = build_backbone("dinov2_vits14")               # pretrained (hub cache or download)
    backbone = build_backbone("dinov2_vits14", random=True)  # offline: random, non-degenerate
    backbone = build_backbone("resnet50@s8", random=True)    # a registered model at another level
    backbone = build_backbone("timm:convnext_small.fb_in1k@-2", random=True)  # any timm model
    feats = backbone.extract(video)                          # (B, T, 3, H, W) -> (B, T, C, h, w)

| name                 | source       | model                                      | level           | stride | C    |
|----------------------|--------------|--------------------------------------------|-----------------|--------|------|
| dinov2_vits14        | timm         | vit_small_patch14_dinov2.lvd142m           | last block      | 14     | 384  |
| dinov2_vitb14        | timm         | vit_base_patch14_dinov2.lvd142m            | last block      | 14     | 768  |
| dinov2_vitl14        | timm         | vit_large_patch14_dinov2.lvd142m           | last block      | 14     | 1024 |
| dinov2_vits14_reg    | timm         | vit_small_patch14_reg4_dinov2.lvd142m      | last block      | 14     | 384  |
| dino_vits16          | timm         | vit_small_patch16_224.dino                 | last block      | 16     | 384  |
| clip_vitb16          | timm         | vit_base_patch16_clip_224.openai           | last block      | 16     | 768  |
| siglip2_vitb16       | timm         | vit_base_patch16_siglip_224.v2_webli       | last block      | 16     | 768  |
| vit_b16              | timm         | vit_base_patch16_224.augreg2_in21k_ft_in1k | last block      | 16     | 768  |
| hf_dinov2_vits14     | transformers | facebook/dinov2-small (Dinov2Model)        | last layer      | 14     | 384  |
| dinov3_vits16        | timm         | vit_small_patch16_dinov3.lvd1689m          | last block      | 16     | 384  |
| dinov3_vitb16        | timm         | vit_base_patch16_dinov3.lvd1689m           | last block      | 16     | 768  |
| radio_v3_vitb16      | timm         | vit_base_patch16_radio_v3.c_radio          | last block      | 16     | 768  |
| dinov3_convnext_tiny | timm         | convnext_tiny.dinov3_lvd1689m              | stage 3 (s16)   | 16     | 384  |
| convnext_tiny        | timm         | convnext_tiny.fb_in1k                      | stage 3 (s16)   | 16     | 384  |
| resnet50             | timm         | resnet50.a1_in1k                           | layer3 (s16)    | 16     | 1024 |
| sam2_hiera_small     | timm         | sam2_hiera_small.fb_r896                   | stage 3 (s16)   | 16     | 384  |

CNN and hierarchical models default to their stride-16 level, so that every registered backbone has a
grid of about the same size; `@s4` … `@s32` (or an index) picks another level: ResNet-50 has strides
2 (stem), 4, 8, 16, 32 with 64, 256, 512, 1024, 2048 channels; ConvNeXt-T and Hiera-S strides 4, 8, 16,
32 with 96, 192, 384, 768.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videoanyup.backbones.base import Backbone
from videoanyup.backbones.degeneracy import check_not_degenerate
from videoanyup.backbones.hf_dinov2 import HFDinov2Backbone, create_hf_dinov2
from videoanyup.backbones.spec import parse_backbone
from videoanyup.backbones.timm_backbones import TimmBackbone, calibrate_batch_norm, create_timm_model


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: where it comes from and what its default level returns.

    source: "timm" (model = timm name with pretrained tag) or "transformers" (model = hub repository id);
    level: the default level ("-1": the last; "s16": the last of stride 16); stride and embed_dim: that
    level's stride and channels.
    """

    source: str
    model: str
    stride: int
    embed_dim: int
    description: str
    level: str = "-1"

    @property
    def patch_size(self) -> int:
        """The default level's stride (the name a ViT's patch had)."""
        return self.stride


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
    "dinov3_vits16": BackboneSpec(
        "timm", "vit_small_patch16_dinov3.lvd1689m", 16, 384, "DINOv3 ViT-S/16 (RoPE, 4 registers)"
    ),
    "dinov3_vitb16": BackboneSpec(
        "timm", "vit_base_patch16_dinov3.lvd1689m", 16, 768, "DINOv3 ViT-B/16 (RoPE, 4 registers)"
    ),
    "radio_v3_vitb16": BackboneSpec(
        "timm", "vit_base_patch16_radio_v3.c_radio", 16, 768, "C-RADIOv3 ViT-B/16 (8 prefix tokens)"
    ),
    "dinov3_convnext_tiny": BackboneSpec(
        "timm", "convnext_tiny.dinov3_lvd1689m", 16, 384, "DINOv3 ConvNeXt-T (distilled), stage 3", level="s16"
    ),
    "convnext_tiny": BackboneSpec("timm", "convnext_tiny.fb_in1k", 16, 384, "ConvNeXt-T (IN-1k), stage 3", level="s16"),
    "resnet50": BackboneSpec("timm", "resnet50.a1_in1k", 16, 1024, "ResNet-50 (timm A1), layer3", level="s16"),
    "sam2_hiera_small": BackboneSpec(
        "timm", "sam2_hiera_small.fb_r896", 16, 384, "SAM 2 image encoder trunk, Hiera-S, stage 3", level="s16"
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
    """Build a backbone from a registered name or a spec, frozen (no gradients) and in eval mode.

    Args:
        name: one of `list_backbones()`, optionally with levels (`resnet50@s8`), or `timm:NAME[@LEVELS]`
            (`spec.py`).
        pretrained: load the published weights (default, unless `random`). They come from the Hugging Face
            hub cache or are downloaded; when neither is possible (HF_HUB_OFFLINE, no network) a
            `RuntimeError` naming HF_HUB_OFFLINE and the cache folder is raised before any download.
        random: random weights instead (same as pretrained=False): seeded by torch's global generator,
            residual branches open (LayerScale 1, …), BatchNorm statistics from the network's own activations
            (`timm_backbones.calibrate_batch_norm`), and checked not to be degenerate
            (`degeneracy.check_not_degenerate`).
        device, dtype: where and in which precision to run the network (input chunks are moved there).
        chunk: frames per forward pass; short_side: default resize target (see `Backbone.input_size`).
    Raises:
        ValueError: a malformed or unknown name or level (the message quotes it and lists the known
            names or levels), or pretrained=True with random=True.
    """
    request = parse_backbone(name)
    if pretrained and random:
        raise ValueError("pretrained=True and random=True contradict each other; pass one of them")
    use_weights = not random if pretrained is None else bool(pretrained)
    spec = BACKBONES.get(request.registered) if request.registered else None
    if spec is not None and spec.source == "transformers":
        if request.levels is not None:
            raise ValueError(f"backbone {request.text!r}: {request.registered} has one level; drop '@...'")
        model = create_hf_dinov2(spec.model, pretrained=use_weights, backbone_name=request.text)
        backbone: Backbone = HFDinov2Backbone(model, name=request.text, chunk=chunk, short_side=short_side)
    else:
        levels = request.levels if request.levels is not None else _default_levels(spec)
        model = create_timm_model(request.model, pretrained=use_weights, backbone_name=request.text)
        backbone = TimmBackbone(model, name=request.text, levels=levels, chunk=chunk, short_side=short_side)
        if not use_weights:  # after pruning: only the layers the levels need run
            calibrate_batch_norm(backbone.model, backbone._encode_levels)
    backbone = backbone.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if not use_weights:
        check_not_degenerate(backbone)
    return backbone


def _default_levels(spec: BackboneSpec | None) -> tuple[int | str, ...]:
    if spec is None:
        return (-1,)
    return (spec.level,) if spec.level.startswith("s") else (int(spec.level),)
