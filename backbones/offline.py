"""Fail fast when pretrained weights cannot be had: check the Hugging Face hub cache before any download.

timm and transformers fetch weights through `huggingface_hub`. Offline (`HF_HUB_OFFLINE=1`) or without a
network, a download that is not already cached fails only after retries and a long traceback. Builders
call `require_hub_files` first: it returns at once when the files are cached, and otherwise raises a
`RuntimeError` that names `HF_HUB_OFFLINE`, the cache folder and the ways out — without touching the
network when offline mode is on, and after one short probe of the hub endpoint when it is not.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from huggingface_hub import constants, try_to_load_from_cache

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether Hugging Face offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, now or at import)."""
    from_env = any(os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return from_env or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str:
    """The hub cache folder huggingface_hub reads (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    return str(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filenames: tuple[str, ...], revision: str | None = None) -> str | None:
    """Path of the first of `filenames` found in the hub cache for `repo_id`, or None."""
    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
        if isinstance(path, str):
            return path
    return None


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One HEAD request to the hub endpoint (HF_ENDPOINT; proxies from the environment are honoured).

    Any HTTP answer, even an error status, means the network works; no answer within `timeout` does not.
    """
    request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def require_hub_files(
    repo_id: str,
    required: tuple[tuple[str, ...], ...],
    *,
    what: str,
    revision: str | None = None,
) -> None:
    """Return if every group of `required` files has one member in the cache, or if they can be downloaded.

    Args:
        repo_id: hub repository, e.g. "timm/vit_small_patch14_dinov2.lvd142m" or "facebook/dinov2-small".
        required: groups of alternative file names, e.g. (("config.json",), ("model.safetensors",
            "pytorch_model.bin")): each group needs one cached member.
        what: the backbone's name, for the message.
    Raises:
        RuntimeError: files missing from the cache while HF_HUB_OFFLINE is on or the hub is unreachable.
    """
    missing = [group for group in required if cached_file(repo_id, group, revision) is None]
    if not missing:
        return
    files = " and ".join(" or ".join(group) for group in missing)
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set, so nothing may be downloaded"
        network_hint = "unset HF_HUB_OFFLINE if this machine has network access, "
    elif not hub_reachable():
        reason = f"the hub ({constants.ENDPOINT}) cannot be reached (HF_HUB_OFFLINE is not set)"
        network_hint = "set HF_ENDPOINT to a reachable mirror, "
    else:
        return  # not cached, but the download can go ahead
    raise RuntimeError(
        f"Pretrained weights for backbone {what!r} are not available: the Hugging Face hub cache at {hub_cache_dir()} "
        f"lacks {files} of '{repo_id}', and {reason}. Download them where there is network access "
        f"(`hf download {repo_id}`) and copy that cache here, point HF_HUB_CACHE (or HF_HOME) at a cache that "
        f"holds them, {network_hint}or build a random backbone (pretrained=False / random=True)."
    )
