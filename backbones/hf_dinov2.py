"""DINOv2 through transformers' `Dinov2Model`, behind the backbone contract.

The feature map is `last_hidden_state` (after the final layernorm) without the CLS token, reshaped to
(C, h, w). `Dinov2Embeddings.interpolate_pos_encoding` resizes the position embedding (bicubic) to any
grid, so every multiple of the patch size is a valid input. Random weights come from a `Dinov2Config`
matching the published checkpoint; transformers initialises LayerScale to `layerscale_value` = 1, so a
random model is not degenerate (unlike timm's DINOv2 default, see `timm_backbones.py`).
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from videoanyup.backbones.base import Backbone
from videoanyup.backbones.offline import require_hub_files

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the checkpoints' preprocessor_config.json
IMAGENET_STD = (0.229, 0.224, 0.225)

# Architecture of each published checkpoint, for random weights without its config.json
DINOV2_CONFIGS = {
    "facebook/dinov2-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "facebook/dinov2-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "facebook/dinov2-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}
_COMMON = dict(
    patch_size=14, image_size=518, mlp_ratio=4, layer_norm_eps=1e-6, layerscale_value=1.0, use_swiglu_ffn=False
)
_HF_FILES = (("config.json",), ("model.safetensors", "pytorch_model.bin"))


def create_hf_dinov2(repo_id: str, *, pretrained: bool, backbone_name: str | None = None) -> nn.Module:
    """A transformers `Dinov2Model`: `from_pretrained(repo_id)` or random from the matching `Dinov2Config`.

    Args:
        repo_id: one of `DINOV2_CONFIGS`, e.g. "facebook/dinov2-small".
        pretrained: load the hub weights (cache or download; fails fast offline, see `offline.py`).
            False: random weights, seeded by torch's global generator, LayerScale 1.
    """
    from transformers import Dinov2Config, Dinov2Model

    if repo_id not in DINOV2_CONFIGS:
        raise ValueError(f"repo_id must be one of {sorted(DINOV2_CONFIGS)}, got {repo_id!r}")
    if pretrained:
        require_hub_files(repo_id, _HF_FILES, what=backbone_name or repo_id)
        model = Dinov2Model.from_pretrained(repo_id)
    else:
        model = Dinov2Model(Dinov2Config(**_COMMON, **DINOV2_CONFIGS[repo_id]))
    return model.eval()


class HFDinov2Backbone(Backbone):
    """A transformers `Dinov2Model` as a `Backbone`.

    Args:
        model: the `Dinov2Model`, e.g. from `create_hf_dinov2`.
        name: registered name.
        chunk, short_side: see `Backbone`.
    """

    def __init__(self, model: nn.Module, *, name: str, chunk: int = 8, short_side: int | None = None) -> None:
        config = getattr(model, "config", None)
        if config is None or getattr(config, "model_type", None) != "dinov2":
            raise ValueError(f"model must be a transformers Dinov2Model, got {type(model).__name__}")
        super().__init__(
            name=name,
            patch_size=int(config.patch_size),
            embed_dim=int(config.hidden_size),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            chunk=chunk,
            short_side=short_side,
        )
        self.model = model

    def _encode(self, frames: Tensor) -> Tensor:
        """(n, 3, H', W') normalised -> (n, C, H'/p, W'/p): final layernorm output, CLS token dropped."""
        h, w = frames.shape[-2] // self.patch_size, frames.shape[-1] // self.patch_size
        tokens = self.model(pixel_values=frames).last_hidden_state  # (n, 1 + h·w, C)
        return rearrange(tokens[:, 1:], "n (h w) c -> n c h w", h=h, w=w)

    def _embed(self, frames: Tensor) -> Tensor:
        """(n, 3, H', W') normalised -> (n, C, H'/p, W'/p): the patch projection alone."""
        h, w = frames.shape[-2] // self.patch_size, frames.shape[-1] // self.patch_size
        tokens = self.model.embeddings.patch_embeddings(frames)  # (n, h·w, C)
        return rearrange(tokens, "n (h w) c -> n c h w", h=h, w=w)
