"""The depth probe: a linear probe on upsampled features regressing log-depth (NYUv2-style folders).

Layout: `DIR/rgb/<stem>.{png,jpg}` and `DIR/depth/<stem>.{png,npy}` matched by stem; a PNG depth map is
16-bit millimetres, an `.npy` is metres; 0 (or non-finite) marks missing depth. Each image is a clip of
T = 1 (so there is no temporal error: it is reported as NaN / null). The probe regresses log(depth in
metres) with a squared error on `pixels` valid pixels sampled per image (the same pixels for every
upsampler); predictions are upsampled bilinearly in log space to the depth map's size and exponentiated.

Metrics over all valid pixels of the test set: rmse (metres, per image, then averaged) and δ1, the
fraction of pixels with max(pred/gt, gt/pred) < 1.25. A last row, `featureless`, scores the mean training
log-depth at each position (module `featureless`, `PositionMean`): what position alone gives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.tasks.probes import davis
from videoanyup.tasks.probes.featureless import FEATURELESS, PositionMean
from videoanyup.tasks.probes.fidelity import fidelity, reference_features, reference_geometry
from videoanyup.tasks.probes.figures import PCAColouring, enlarge, write_figures
from videoanyup.tasks.probes.linear_probe import sample_pixels, train_probe
from videoanyup.tasks.probes.upsamplers import make_upsampler
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, to_tensor

log = logging.getLogger(__name__)

DEPTH_KEYS = ("upsampler", "rmse", "delta1", "temporal_error", "temporal_error_pred", "fidelity")
DEPTH_SUFFIXES = (".png", ".npy")


def list_pairs(root: str | Path, argument: str) -> list[tuple[Path, Path]]:
    """(rgb, depth) paths matched by stem, sorted; errors name `argument`."""
    root = Path(root)
    for sub in ("rgb", "depth"):
        if not (root / sub).is_dir():
            raise ValueError(f"{argument}: {str(root)!r} has no {sub}/ folder (depth layout: rgb/*.png|jpg, depth/*.png|npy)")
    depths = {p.stem: p for p in (root / "depth").iterdir() if p.suffix.lower() in DEPTH_SUFFIXES}
    rgbs = sorted(p for p in (root / "rgb").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, depths[p.stem]) for p in rgbs if p.stem in depths]
    if not pairs:
        raise ValueError(f"{argument}: no rgb/ image of {str(root)!r} has a depth/ map with the same stem")
    return pairs


def read_depth(path: Path) -> Tensor:
    """`(H, W)` float32 depth in metres; 0 where missing."""
    if path.suffix.lower() == ".npy":
        depth = np.load(path).astype(np.float32)
    else:
        from PIL import Image

        with Image.open(path) as image:
            depth = np.array(image).astype(np.float32) / 1000.0
    depth = np.squeeze(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth map {str(path)!r} must be (H, W), got {depth.shape}")
    depth[~np.isfinite(depth)] = 0
    return torch.from_numpy(depth)


def depth_metrics(pred: Tensor, gt: Tensor) -> tuple[float, float, int]:
    """(rmse, δ1, valid pixel count) of `pred` vs `gt` `(H, W)` metres over pixels with gt > 0."""
    valid = gt > 0
    if not bool(valid.any()):
        return float("nan"), float("nan"), 0
    p, g = pred[valid].clamp_min(1e-6), gt[valid]
    rmse = float((p - g).pow(2).mean().sqrt())
    delta1 = float((torch.maximum(p / g, g / p) < 1.25).float().mean())
    return rmse, delta1, int(valid.sum())


def _score(results: dict, pred: Tensor, gt: Tensor) -> None:
    """Append `pred`'s rmse and (δ1, valid count) against `gt` `(H, W)` to `results`, where gt has valid pixels."""
    rmse, delta1, count = depth_metrics(pred, gt)
    if count:
        results["rmse"].append(rmse)
        results["d1"].append((delta1, count))


def _load(rgb: Path, depth: Path, short_side: int, patch_size: int) -> tuple[Tensor, Tensor]:
    from PIL import Image

    with Image.open(rgb) as image:
        frame = to_tensor([np.array(image.convert("RGB"))])  # (1, 3, H, W)
    gt = read_depth(depth)
    if tuple(gt.shape) != tuple(frame.shape[-2:]):
        raise ValueError(f"depth map {str(depth)!r} is {tuple(gt.shape)}, its image {tuple(frame.shape[-2:])}")
    size = davis.resized_size(frame.shape[-2], frame.shape[-1], short_side, patch_size)
    return davis.resize_frames(frame, size), gt


def run_depth(
    train_root: str | Path,
    test_root: str | Path,
    *,
    backbone,
    upsamplers: Sequence[str],
    model=None,
    short_side: int = 224,
    pixels: int = 1024,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    figures: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run the depth probe (module docstring). Returns one dict per upsampler, then the `FEATURELESS` row, with
    the keys `DEPTH_KEYS` (NaN where a key does not apply)."""
    from videoanyup.tasks.probes.vos import _iterate

    train_pairs, test_pairs = list_pairs(train_root, "--train"), list_pairs(test_root, "--test")
    functions = {name: make_upsampler(name, model) for name in upsamplers}

    def lr_features(frames: Tensor) -> Tensor:
        with torch.inference_mode():
            return backbone.extract(frames[None])[0].float()  # (1, C, h, w)

    xs: dict[str, list[Tensor]] = {name: [] for name in upsamplers}
    ys: list[Tensor] = []
    position = PositionMean()
    for rgb, depth in _iterate(train_pairs, progress, "depth train images"):
        frames, gt = _load(rgb, depth, short_side, backbone.size_multiple)
        position.add(gt.clamp_min(1e-6).log(), gt > 0)
        size = tuple(frames.shape[-2:])
        gt_small = F.interpolate(gt[None, None], size=size, mode="nearest")[0, 0]  # (H', W')
        idx = sample_pixels(None, size, pixels, seed=seed, key=rgb.stem, valid=gt_small > 0)
        if len(idx) == 0:
            continue
        ys.append(gt_small.reshape(-1)[idx].log())
        feats = lr_features(frames)
        geometry = backbone.geometry(*size)
        for up in upsamplers:
            hr = functions[up](feats, frames, geometry=geometry)[0]  # (C, H', W')
            xs[up].append(hr.reshape(hr.shape[0], -1)[:, idx].T.clone())
    if not ys:
        raise ValueError("--train: no image has valid (> 0) depth")
    y = torch.cat(ys)
    probes = {up: train_probe(torch.cat(xs[up]), y, outputs=1, task="regress", steps=steps, lr=lr, seed=seed) for up in upsamplers}
    del xs

    results = {up: {"rmse": [], "d1": [], "fid": []} for up in [*upsamplers, FEATURELESS]}
    for index, (rgb, depth) in enumerate(_iterate(test_pairs, progress, "depth test images")):
        frames, gt = _load(rgb, depth, short_side, backbone.size_multiple)
        _score(results[FEATURELESS], position.predict(tuple(gt.shape)).exp(), gt)
        feats = lr_features(frames)
        reference = reference_features(backbone, frames)
        geometry, reference_cells = backbone.geometry(*frames.shape[-2:]), reference_geometry(backbone, frames)
        columns = None
        if figures is not None and index == 0:
            pca = PCAColouring(feats[0])
            columns = {"frame": frames, "LR": enlarge(pca(feats), tuple(frames.shape[-2:]))}
        for up in upsamplers:
            hr = functions[up](feats, frames, geometry=geometry)  # (1, C, H', W')
            with torch.inference_mode():
                log_depth = probes[up].apply_map(hr)  # (1, 1, H', W')
            pred = F.interpolate(log_depth, size=tuple(gt.shape), mode="bilinear", align_corners=False)[0, 0].exp()
            _score(results[up], pred, gt)
            results[up]["fid"].extend(fidelity(hr, reference, reference_cells))
            if columns is not None:
                columns[up] = pca(hr)
        if columns is not None:
            write_figures(figures, rgb.stem, columns, rows=1)
    rows = []
    for up in [*upsamplers, FEATURELESS]:
        r = results[up]
        d1 = sum(d * n for d, n in r["d1"]) / max(1, sum(n for _, n in r["d1"])) if r["d1"] else float("nan")
        rows.append({
            "upsampler": up,
            "rmse": float(np.mean(r["rmse"])) if r["rmse"] else float("nan"),
            "delta1": float(d1),
            "temporal_error": float("nan"),
            "temporal_error_pred": float("nan"),
            "fidelity": float(np.mean(r["fid"])) if r["fid"] else float("nan"),
        })
    return rows
