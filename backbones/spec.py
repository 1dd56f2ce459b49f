"""How a backbone is named: a registered name or `timm:NAME`, optionally with levels.

    dinov2_vits14                      a registered backbone at its default level
    resnet50@s8                        a registered backbone at another level (here: the stride-8 stage)
    timm:convnext_small.fb_in1k        any timm model with forward_intermediates, at its last level
    timm:resnet50.a1_in1k@3            ... at level 3 of its feature_info (negative: from the end)
    timm:sam2_hiera_small.fb_r896@s8,s16   several levels (`Backbone.extract_levels`)

Grammar: `[timm:]NAME[@LEVEL[,LEVEL...]]`, LEVEL an integer index or `s` and a stride. A registered NAME
needs no prefix; `timm:` takes a timm model name (with or without its pretrained tag). `parse_backbone`
checks the grammar and that the name exists; whether a level exists is known once the model is built
(`timm_backbones.resolve_levels`). Every error is a ValueError that quotes the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TIMM_PREFIX = "timm:"
SYNTAX = "[timm:]NAME[@LEVEL[,LEVEL...]] with LEVEL an index (e.g. 3, -1) or a stride (e.g. s16)"
_LEVEL = re.compile(r"^(-?\d+|s\d+)$")


@dataclass(frozen=True)
class BackboneRequest:
    """A parsed backbone spec.

    text: the spec as given (stripped); registered: the registered name, or None for a `timm:` model;
    model: the timm model name (or hub repository for transformers); levels: the levels asked for, or None
    for the default (`int` index or "sN" stride).
    """

    text: str
    registered: str | None
    model: str
    levels: tuple[int | str, ...] | None


def _parse_levels(text: str, part: str) -> tuple[int | str, ...]:
    items = [item.strip() for item in part.split(",")]
    if not items or any(not _LEVEL.match(item) for item in items):
        raise ValueError(f"backbone {text!r}: bad level list {part!r}; expected {SYNTAX}")
    return tuple(item if item.startswith("s") else int(item) for item in items)


def _check_timm_name(text: str, model: str) -> None:
    import timm

    arch, _, tag = model.partition(".")
    if not arch or not timm.is_model(arch):
        raise ValueError(f"backbone {text!r}: {arch!r} is not a timm model (see timm.list_models())")
    if tag and model not in timm.list_pretrained(f"{arch}.*"):
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*")]
        raise ValueError(f"backbone {text!r}: timm model {arch!r} has no pretrained tag {tag!r}; tags: {tags}")


def parse_backbone(text: object) -> BackboneRequest:
    """Parse a backbone spec (module docstring); ValueError quoting it when it is malformed or unknown."""
    from videoanyup.backbones.registry import BACKBONES, list_backbones

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"backbone must be a registered name or {SYNTAX}, got {text!r}")
    text = text.strip()
    name, at, level_part = text.partition("@")
    levels = _parse_levels(text, level_part) if at else None
    if name.startswith(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX) :]
        _check_timm_name(text, model)
        return BackboneRequest(text=text, registered=None, model=model, levels=levels)
    if name not in BACKBONES:
        raise ValueError(
            f"backbone {text!r}: {name!r} is not a registered backbone, one of {list_backbones()}, "
            f"nor a timm model written timm:NAME; expected {SYNTAX}"
        )
    return BackboneRequest(text=text, registered=name, model=BACKBONES[name].model, levels=levels)


def check_backbone_spec(text: object, option: str = "backbone") -> str:
    """`text` when it parses as a backbone spec; else ValueError whose message starts with `option`."""
    try:
        return parse_backbone(text).text
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from error


__all__ = ["SYNTAX", "TIMM_PREFIX", "BackboneRequest", "check_backbone_spec", "parse_backbone"]
