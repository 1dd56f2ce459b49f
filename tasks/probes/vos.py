"""The video object segmentation probe: one linear probe per upsampler, trained on some DAVIS-layout
sequences and tested on others, plus label propagation, temporal consistency and fidelity.

    rows = run_vos(train_root, test_root, backbone=backbone, upsamplers=["bilinear", "perframe", "videoanyup"],
                   model=model, frames_per_seq=8, train_seqs=None, test_seqs=None)
    print(format_table(rows))

Protocol. Frames are resized so the short side is 224 (sides snapped to the backbone's patch); LR features
come from the backbone on those frames and every upsampler lifts them to the frame size. Training keeps
`pixels` stratified samples per frame (the same pixels for every upsampler; see `linear_probe`), and each
upsampler's probe is trained with the same steps, learning rate and seed; optionally (`prior_correction`)
its biases are moved from the balanced sampled class frequencies to the training frames' real ones (off by
default: on two validation splits of the training sequences it lowered every upsampler's J&F). Test sequences are processed one
at a time: probe logits are upsampled bilinearly to the annotation size and scored with J and F
(`vos_metrics`, first frame skipped, means over objects of all test sequences); label propagation of the
first mask (`label_propagation`, on a 1/4 grid) gives JF_prop; `temporal_consistency` gives the DIS-flow
errors of the features (1 − cos) and of the probe's class probabilities (L1), reported as ratios to
bilinear's; `fidelity` compares with the backbone on the 2× upscaled frames. A last row, `featureless`,
scores what the masks alone give (module `featureless`: a position prior from the training masks in place of
the probe, the first mask copied in place of propagation; no temporal error or fidelity) — the floor under
which a probe has learned nothing from the features.
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
from videoanyup.tasks.probes.featureless import FEATURELESS, PositionPrior, copy_first_mask
from videoanyup.tasks.probes.fidelity import fidelity, reference_features, reference_geometry
from videoanyup.tasks.probes.figures import PCAColouring, enlarge, write_figures
from videoanyup.tasks.probes.label_propagation import propagate_video
from videoanyup.tasks.probes.linear_probe import correct_prior, sample_pixels, train_probe
from videoanyup.tasks.probes.temporal_consistency import clip_flows, ratio, temporal_error
from videoanyup.tasks.probes.upsamplers import make_upsampler
from videoanyup.tasks.probes.vos_metrics import sequence_scores

log = logging.getLogger(__name__)

VOS_KEYS = ("upsampler", "J", "F", "JF", "JF_prop", "temporal_error", "temporal_error_pred", "fidelity")
SHORT_SIDE = 224


def choose_sequences(
    train_root: Path, test_root: Path, train_seqs: Sequence[str] | None, test_seqs: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The train and test sequence names (default: all of each root); errors name the argument."""
    chosen = []
    for root, names, argument in ((train_root, train_seqs, "--train-seqs"), (test_root, test_seqs, "--test-seqs")):
        available = davis.list_sequences(root)
        if names is None:
            names = available
        missing = [n for n in names if n not in available]
        if missing:
            raise ValueError(f"{argument}: {missing} not found under {str(root / 'JPEGImages')!r} (has {available})")
        if not names:
            raise ValueError(f"{argument}: no sequences under {str(root / 'JPEGImages')!r}")
        chosen.append(list(names))
    if train_root.resolve() == test_root.resolve():
        overlap = sorted(set(chosen[0]) & set(chosen[1]))
        if overlap:
            raise ValueError(
                f"--train-seqs and --test-seqs overlap on {overlap} (same root for --train and --test): "
                "choose disjoint sets with --train-seqs a,b --test-seqs c,d"
            )
    return chosen[0], chosen[1]


def _iterate(items, progress: bool, desc: str):
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False)


def _label_size(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """`(T, H, W)` int64 label maps resized (nearest) to `size`."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def run_vos(
    train_root: str | Path,
    test_root: str | Path,
    *,
    backbone,
    upsamplers: Sequence[str],
    model=None,
    frames_per_seq: int = 8,
    train_seqs: Sequence[str] | None = None,
    test_seqs: Sequence[str] | None = None,
    short_side: int = SHORT_SIDE,
    pixels: int = 1024,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    prior_correction: bool = False,
    figures: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run the VOS probe (module docstring). Returns one dict per upsampler, then the `FEATURELESS` row, with
    the keys `VOS_KEYS` (NaN where a key does not apply)."""
    if frames_per_seq < 2:
        raise ValueError(f"--frames-per-seq must be ≥ 2 (J/F skip the given first frame), got {frames_per_seq}")
    if "bilinear" not in upsamplers:
        raise ValueError(f"upsamplers must include 'bilinear' (the reference of the ratios), got {list(upsamplers)}")
    train_root, test_root = davis.check_root(train_root, "--train"), davis.check_root(test_root, "--test")
    train_names, test_names = choose_sequences(train_root, test_root, train_seqs, test_seqs)
    functions = {name: make_upsampler(name, model) for name in upsamplers}

    def load(root: Path, name: str) -> davis.Sequence:
        return davis.load_sequence(
            root, name, frames=frames_per_seq, short_side=short_side, patch_size=backbone.size_multiple
        )

    def lr_features(frames: Tensor) -> Tensor:
        with torch.inference_mode():
            return backbone.extract(frames[None])[0].float()  # (T, C, h, w)

    # 1. Training pixels: the same sampled locations for every upsampler; only the sampled vectors are kept.
    xs: dict[str, list[Tensor]] = {name: [] for name in upsamplers}
    ys: list[Tensor] = []
    train_masks: list[Tensor] = []  # (T, H', W') label maps: the position prior and the prior correction
    for name in _iterate(train_names, progress, "probe train sequences"):
        seq = load(train_root, name)
        size = tuple(seq.frames.shape[-2:])
        labels = _label_size(seq.labels, size)  # (T, H', W')
        train_masks.append(labels)
        picks = [sample_pixels(labels[t], size, pixels, seed=seed, key=f"{name}/{t}") for t in range(len(labels))]
        ys.extend(labels[t].reshape(-1)[idx] for t, idx in enumerate(picks))
        feats = lr_features(seq.frames)
        geometry = backbone.geometry(*size)
        for up in upsamplers:
            hr = functions[up](feats, seq.frames, geometry=geometry)  # (T, C, H', W')
            xs[up].extend(hr[t].reshape(hr.shape[1], -1)[:, idx].T.clone() for t, idx in enumerate(picks))
            del hr
    y = torch.cat(ys)
    classes = int(y.max()) + 1 if len(y) else 2
    classes = max(classes, 2)
    probes = {
        up: train_probe(torch.cat(xs[up]), y, outputs=classes, steps=steps, lr=lr, seed=seed) for up in upsamplers
    }
    if prior_correction:
        every_pixel = torch.cat([labels.reshape(-1) for labels in train_masks])
        sampled, true = torch.bincount(y, minlength=classes), torch.bincount(every_pixel, minlength=classes)
        for probe in probes.values():
            correct_prior(probe, sampled, true)
    del xs
    position = PositionPrior(classes)
    for labels in train_masks:
        position.add(labels)
    del train_masks
    log.info("trained %d probes on %d pixels of %d sequences, %d classes", len(probes), len(y), len(train_names), classes)

    # 2. Test sequences one at a time.
    scores = {up: {"J": [], "F": [], "Jp": [], "Fp": [], "te": [], "tp": [], "fid": []} for up in upsamplers}
    floor = {"J": [], "F": [], "Jp": [], "Fp": []}  # the featureless row's scores
    for index, name in enumerate(_iterate(test_names, progress, "probe test sequences")):
        seq = load(test_root, name)
        size, out_size = tuple(seq.frames.shape[-2:]), tuple(seq.labels.shape[-2:])
        feats = lr_features(seq.frames)
        flows = clip_flows(seq.frames)
        reference = reference_features(backbone, seq.frames)
        geometry, reference_cells = backbone.geometry(*size), reference_geometry(backbone, seq.frames)
        gt = seq.labels.numpy()
        guesses = (position.predict(gt.shape, balanced=not prior_correction), copy_first_mask(seq.labels))
        for guess, (j_key, f_key) in zip(guesses, (("J", "F"), ("Jp", "Fp"))):
            for j, f in sequence_scores(guess.numpy(), gt, seq.objects).values():
                floor[j_key].append(j)
                floor[f_key].append(f)
        seq_classes = max(classes, int(seq.labels.max()) + 1)
        columns = None
        if figures is not None and index == 0:
            pca = PCAColouring(feats[0])
            columns = {"frame": seq.frames, "LR": enlarge(pca(feats), size)}
        for up in upsamplers:
            hr = functions[up](feats, seq.frames, geometry=geometry)  # (T, C, H', W')
            with torch.inference_mode():
                logits = probes[up].apply_map(hr)  # (T, K, H', W')
            pred = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False).argmax(1).numpy()
            for j, f in sequence_scores(pred, gt, seq.objects).values():
                scores[up]["J"].append(j)
                scores[up]["F"].append(f)
            propagated = propagate_video(hr, seq.labels[0], seq_classes, out_size).numpy()
            for j, f in sequence_scores(propagated, gt, seq.objects).values():
                scores[up]["Jp"].append(j)
                scores[up]["Fp"].append(f)
            scores[up]["te"].extend(temporal_error(hr, flows, "cosine"))
            scores[up]["tp"].extend(temporal_error(torch.softmax(logits, dim=1), flows, "l1"))
            scores[up]["fid"].extend(fidelity(hr, reference, reference_cells))
            if columns is not None:
                columns[up] = pca(hr)
            del hr, logits
        if columns is not None:
            write_figures(figures, name, columns)
    rows = [_vos_row(up, scores[up], scores["bilinear"]) for up in upsamplers]
    return rows + [_vos_row(FEATURELESS, {"te": [], "tp": [], "fid": [], **floor}, scores["bilinear"])]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _vos_row(name: str, s: dict, reference: dict) -> dict:
    """The table row of one upsampler's scores `s`; the ratios are to `reference`'s (NaN without errors)."""
    j, f, jp, fp = _mean(s["J"]), _mean(s["F"]), _mean(s["Jp"]), _mean(s["Fp"])
    nan = float("nan")
    return {
        "upsampler": name,
        "J": j,
        "F": f,
        "JF": (j + f) / 2,
        "JF_prop": (jp + fp) / 2,
        "temporal_error": ratio(s["te"], reference["te"]) if s["te"] else nan,
        "temporal_error_pred": ratio(s["tp"], reference["tp"]) if s["tp"] else nan,
        "fidelity": _mean(s["fid"]),
    }


def format_table(rows: list[dict]) -> str:
    """The upsamplers side by side as a Markdown table (the columns are the rows' keys; NaN shows as –)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "| --- |" + " ---: |" * (len(keys) - 1)]
    for row in rows:
        cells = [row[keys[0]]] + [_cell(row[k]) for k in keys[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if np.isfinite(value) else "–"
