"""Feature extractors with one contract (installed as `videoanyup.backbones`).

    backbone = build_backbone("dinov2_vits14", random=True)  # or pretrained (the default)
    feats = backbone.extract(video)  # (B, T, 3, H, W) in [0, 1] -> (B, T, C, h, w)
    geometry = backbone.geometry(H, W)  # where the cells sit: pass it to videoanyup.upsample(geometry=...)

See `base.py` for the contract and the input size rule, `registry.py` for the registered names, `spec.py`
for `timm:NAME@LEVEL` specs, `grid_trace.py` for how a CNN's cells are located.
"""

from videoanyup.backbones.base import Backbone, Level, snap_to_multiple, snap_to_patch
from videoanyup.backbones.degeneracy import (
    MAX_PATCH_EMBED_COSINE,
    MIN_CONTEXT_CHANGE,
    check_not_degenerate,
    context_change,
    patch_embedding_cosine,
)
from videoanyup.backbones.hf_dinov2 import HFDinov2Backbone, create_hf_dinov2
from videoanyup.backbones.offline import hub_cache_dir, hub_offline, require_hub_files
from videoanyup.backbones.registry import BACKBONES, BackboneSpec, build_backbone, list_backbones
from videoanyup.backbones.spec import BackboneRequest, check_backbone_spec, parse_backbone
from videoanyup.backbones.timm_backbones import (
    TimmBackbone,
    calibrate_batch_norm,
    create_timm_model,
    create_timm_vit,
    open_residual_branches,
    set_layer_scale,
    undo_depth_scaled_init,
)

__all__ = [
    "BACKBONES",
    "MAX_PATCH_EMBED_COSINE",
    "MIN_CONTEXT_CHANGE",
    "Backbone",
    "BackboneRequest",
    "BackboneSpec",
    "HFDinov2Backbone",
    "Level",
    "TimmBackbone",
    "build_backbone",
    "calibrate_batch_norm",
    "check_backbone_spec",
    "check_not_degenerate",
    "context_change",
    "create_hf_dinov2",
    "create_timm_model",
    "create_timm_vit",
    "hub_cache_dir",
    "hub_offline",
    "list_backbones",
    "open_residual_branches",
    "parse_backbone",
    "patch_embedding_cosine",
    "require_hub_files",
    "set_layer_scale",
    "snap_to_multiple",
    "snap_to_patch",
    "undo_depth_scaled_init",
]
