"""Feature extractors with one contract (installed as `videoanyup.backbones`).

    backbone = build_backbone("dinov2_vits14", random=True)  # or pretrained (the default)
    feats = backbone.extract(video)  # (B, T, 3, H, W) in [0, 1] -> (B, T, C, h, w)

See `base.py` for the contract and the input size rule, `registry.py` for the registered names.
"""

from videoanyup.backbones.base import Backbone, snap_to_patch
from videoanyup.backbones.degeneracy import MAX_PATCH_EMBED_COSINE, check_not_degenerate, patch_embedding_cosine
from videoanyup.backbones.hf_dinov2 import HFDinov2Backbone, create_hf_dinov2
from videoanyup.backbones.offline import hub_cache_dir, hub_offline, require_hub_files
from videoanyup.backbones.registry import BACKBONES, BackboneSpec, build_backbone, list_backbones
from videoanyup.backbones.timm_backbones import TimmBackbone, create_timm_vit, set_layer_scale

__all__ = [
    "BACKBONES",
    "MAX_PATCH_EMBED_COSINE",
    "Backbone",
    "BackboneSpec",
    "HFDinov2Backbone",
    "TimmBackbone",
    "build_backbone",
    "check_not_degenerate",
    "create_hf_dinov2",
    "create_timm_vit",
    "hub_cache_dir",
    "hub_offline",
    "list_backbones",
    "patch_embedding_cosine",
    "require_hub_files",
    "set_layer_scale",
    "snap_to_patch",
]
