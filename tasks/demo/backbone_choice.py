"""The demo's backbone: pretrained when its weights are already in the local hub cache, else random.

The demo must run offline and never start a download, so it looks for the published weights in the
Hugging Face hub cache itself (no network) before it asks `build_backbone` for them. Without them it
builds the same network with random weights (seeded, LayerScale 1, checked non-degenerate by
`build_backbone`), and says so: random features carry colour and texture, not semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videoanyup.backbones import BACKBONES, Backbone, build_backbone
from videoanyup.backbones.offline import cached_file, hub_cache_dir

# the weight files timm and transformers read from a hub repository (the first one cached is used)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class BackboneChoice:
    """A built backbone and how its weights were chosen (`weights` is "pretrained" or "random")."""

    backbone: Backbone
    weights: str
    description: str
    seed: int | None


def hub_repository(name: str) -> tuple[str, str | None, tuple[str, ...]] | None:
    """(repository, revision, weight file names) of a registered backbone's published weights, or None."""
    spec = BACKBONES[name]
    if spec.source == "transformers":
        return spec.model, None, _WEIGHT_FILES
    if spec.source == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(spec.model)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not hub_id:
            return None
        repo_id, _, revision = hub_id.partition("@")
        filename = getattr(cfg, "hf_hub_filename", None)
        return repo_id, revision or None, (filename,) if filename else _WEIGHT_FILES
    return None


def pretrained_in_cache(name: str) -> bool:
    """Whether the published weights of backbone `name` are in the local hub cache (never touches the network)."""
    if name not in BACKBONES:
        raise ValueError(f"name must be a registered backbone, one of {list(BACKBONES)}; got {name!r}")
    found = hub_repository(name)
    if found is None:
        return False
    repo_id, revision, files = found
    needed = [files] + ([("config.json",)] if BACKBONES[name].source == "transformers" else [])
    return all(cached_file(repo_id, group, revision) is not None for group in needed)


def choose_backbone(name: str, *, random: bool = False, seed: int = 1, device: str | torch.device = "cpu") -> BackboneChoice:
    """Build backbone `name`: pretrained if cached (and `random` is False), else random from `seed`.

    The random weights come from a private fork of torch's generator, so the global random state is left
    as it was. The description says which weights were used and, for random ones, why.
    """
    if name not in BACKBONES:
        raise ValueError(f"name must be a registered backbone, one of {list(BACKBONES)}; got {name!r}")
    label = BACKBONES[name].description
    if not random and pretrained_in_cache(name):
        backbone = build_backbone(name, pretrained=True, device=device)
        return BackboneChoice(backbone, "pretrained", f"{label}, pretrained weights (from the hub cache)", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(name, random=True, device=device)
    why = "asked for" if random else f"its pretrained weights are not in the hub cache {hub_cache_dir()}"
    return BackboneChoice(backbone, "random", f"{label}, RANDOM weights (seed {seed}; {why})", seed)
