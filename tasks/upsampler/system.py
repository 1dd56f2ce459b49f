"""The VideoAnyUp training system: handed a `VideoAnyUp`, it owns the backbones, the losses and the schedule.

Recipe of DESIGN.md §5.6. Each step draws, from `(seed, global_step, rank)` alone, a backbone, an LR grid
g, a zoom z and a propagation mode, so a resumed run repeats the same draws:

- **image batches** `(B, 1, 3, S, S)`: LR features of the backbone on the image at `(g·p)²`; the output
  at the `z·g` grid; the crop objective (`objective.py`) on one random g × g window per image;
  `self_consistency_weight` × (area-downsampled output ≈ LR input); `consistency_weight` × (output with
  photometrically jittered guidance ≈ output with clean guidance);
- **clip batches** `(B, T, 3, S, S)`: the same crop and self-consistency terms on every frame, plus
  `temporal_weight` × the temporal term: output at t against the output at t−1 warped by the flow t→t−1
  on non-occluded pixels. That flow comes from a frozen SPyNet (`spynet_weights`, by default the bundled
  "synthetic" one) run without gradient on the guidance frames at their full S × S resolution, then
  resized to the output grid; occlusions by the forward–backward check (`losses.non_occluded`).
  A clip step may alter its clips (`alterations.py`): with `degrade_probability` one frame of each clip is
  degraded (blur, motion blur, defocus, noise, a grey box, an occluder, a dropped frame; `degrade.py`) in the
  backbone's input and the guidance alike, while the crop target, the self-consistency reference and the loss's
  flows stay the clean frame's; with `event_probability` a scene event changes the clip (a fade, an exposure
  change, a cut to another clip, a region flat for real; `events.py`) and the targets are the altered frames'
  own. The altered frames' crop loss counts `altered_weight` more in the modes that read neighbours, the
  temporal loss leaves out the pairs an event broke, and `shot_weight` × a binary cross-entropy teaches the
  network's shot test (`ShotTest`) that a cut's pair is another shot and every other supervised pair the same;
  with the data module's `other_clips`, every frame of a clip step also meets the other clip's frame as a
  negative pair (`shot_loss`).

The backbones are frozen, built lazily with `build_backbone` (random ones from a fixed seed per name, so
every process and every resumed run has the same weights) and kept out of the checkpoint; so is the loss's
SPyNet. AdamW with a cosine schedule; bf16 autocast on CUDA (default) for the backbones and the network,
losses in float32. Validation: the crop objective at every zoom with the centre window of each
validation image, for every backbone, beside the bilinear baseline.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from videoanyup.backbones import build_backbone
from videoanyup.backbones.base import Backbone
from videoanyup.backbones.spec import check_backbone_spec
from videoanyup.functional.warp import resize_flow
from videoanyup.layers.feature_propagation import MODES
from videoanyup.models.frame_step import shot_logits_between
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.avsr.sampling import seeded_generator
from videoanyup.tasks.compile_option import compile_forward
from videoanyup.tasks.training import CosineTraining
from videoanyup.tasks.upsampler.augment import photometric_jitter
from videoanyup.tasks.upsampler.alterations import AlteredClip, draw_alteration, unaltered
from videoanyup.tasks.upsampler.degrade import KINDS
from videoanyup.tasks.upsampler.events import EVENTS
from videoanyup.tasks.upsampler.losses import (
    consistency_loss,
    feature_loss,
    non_occluded,
    self_consistency_loss,
    temporal_loss,
)
from videoanyup.tasks.upsampler.objective import crop_targets, draw_windows, lr_features, take_windows

log = logging.getLogger(__name__)


def step_draws(
    seed: int,
    step: int,
    rank: int,
    batch_size: int,
    *,
    backbones: Sequence[str],
    grids: Sequence[int],
    zooms: Sequence[int],
    modes: Sequence[str],
    supersample: Sequence[int] = (1,),
) -> dict[str, Any]:
    """A step's backbone, grid, zoom, mode, `(batch_size, 2)` windows, supersampling factor and the generator
    of its jitter.

    A pure function of `(seed, step, rank)` (and the option lists), so a resumed run draws the same.
    """
    g = seeded_generator(seed, step, rank, 17)

    def pick(options: Sequence[Any]) -> Any:
        return options[int(torch.randint(0, len(options), (), generator=g))]

    backbone, grid, zoom, mode = pick(list(backbones)), int(pick(list(grids))), int(pick(list(zooms))), pick(list(modes))
    windows = draw_windows(g, batch_size, grid, zoom)
    k = int(pick(list(supersample))) if len(supersample) > 1 else int(supersample[0])
    return {"backbone": backbone, "grid": grid, "zoom": zoom, "mode": mode, "windows": windows, "supersample": k, "generator": g}


def warm_start(model: VideoAnyUp, path_or_name: str) -> list[str]:
    """Load VideoAnyUp weights into `model`, which may have parts the checkpoint lacks; returns (and logs) the
    tensors that start new: those the checkpoint lacks, and those that grew.

    A layer that takes more inputs than in the checkpoint (its weight is larger along dim 1 only, e.g. a gate
    given new cues) keeps the checkpoint's weights on the old inputs and starts at zero on the new ones, so the
    network starts from the checkpoint's function. Raises ValueError when the checkpoint has tensors the model
    lacks, or tensors of another shape.
    """
    from videoanyup.checkpoint import read_checkpoint, resolve_checkpoint

    folder = resolve_checkpoint(path_or_name, model.kind)
    _, state = read_checkpoint(folder)
    own = model.state_dict()

    def grown(key: str) -> bool:
        old, new = state[key].shape, own[key].shape
        return len(old) == len(new) >= 2 and old[0] == new[0] and old[2:] == new[2:] and old[1] < new[1]

    unexpected = sorted(set(state) - set(own))
    shared = set(state) & set(own)
    mismatched = sorted(k for k in shared if state[k].shape != own[k].shape and not grown(k))
    if unexpected or mismatched:
        raise ValueError(
            f"init_weights={str(path_or_name)!r} does not fit this VideoAnyUp: tensors the model lacks: "
            f"{unexpected[:8]}; shape mismatches: {mismatched[:8]}"
        )
    widened = sorted(k for k in shared if state[k].shape != own[k].shape)
    loaded = dict(state)
    for key in widened:
        weight = torch.zeros_like(own[key])
        weight[:, : state[key].shape[1]] = state[key]
        loaded[key] = weight
    new = sorted(set(own) - set(state))
    model.load_state_dict(loaded, strict=False)
    log.info("warm start from %s; new tensors: %s; widened (new inputs at zero): %s", folder, new[:8], widened)
    return new + widened


class UpsamplerSystem(CosineTraining, L.LightningModule):
    """Trains and validates a VideoAnyUp network.

    Args:
        model: the network to train.
        backbones: registered backbone names or specs (`resnet50@s8`, `timm:NAME@LEVEL`); one is drawn per step
            (and per process). A level's grids must keep whole cells (`objective.input_side`).
        random_backbones: build them with random weights (offline); the weights of backbone i come from
            seed `backbone_seed + i`.
        backbone_seed: see `random_backbones`.
        grids: LR grid sides g to draw from (the backbone sees `(g·p)²` pixels).
        zooms: zoom factors z to draw from (the loss grid is `z·g`; needs S ≥ z·g).
        supersample: factors k to draw from: the network predicts the `k·z·g` grid, area-pooled by k to the
            loss grid (AnyUp predicts pixels and pools to the target grid). k > 1 trains the scale-conditioned
            prior at the ×14–16 scales that pixel-level upsampling uses, not only at ×z.
        lr, betas, weight_decay: AdamW.
        min_lr: learning rate at the end of the cosine schedule.
        crop_weight, self_consistency_weight, consistency_weight, temporal_weight: loss weights.
        jitter: strength of the photometric jitter of the consistency term.
        modes: propagation modes to train (one drawn per step); None: the model's configured mode. The
            trained checkpoint records them (`model.trained_modes`).
        freeze_spynet: keep the network's own SPyNet fixed.
        spynet_weights: SPyNet weights (bundled name, folder or checkpoint) for the network's SPyNet at the
            start and for the flows of the temporal term; None: the network's own weights for both.
        bf16: bf16 autocast; None: on when training on CUDA.
        init_weights: start from these VideoAnyUp weights (folder or bundled name) — a warm start (`warm_start`):
            every tensor of the checkpoint must exist in the model with its shape, or with more inputs (the new
            ones start at zero); model tensors the checkpoint lacks keep their initialisation (listed in the log).
        new_lr_scale: learning-rate multiplier of the tensors a warm start leaves new or widened (e.g. a gate
            that must learn from new cues in a short fine-tune).
        grad_clip_norm: clip the gradients' global L2 norm to this (None: no clipping).
        degrade_probability: chance that a clip step degrades one frame of each clip (0: never).
        degradations: the kinds to draw from (`degrade.KINDS`).
        blur_sigma: range of the blur's σ, in pixels of the training frames (motion blur and defocus scale it).
        event_probability: chance that a clip step (not degraded) has a scene event instead (0: never).
        events: the kinds to draw from (`events.EVENTS`); "cut" needs the data module's `other_clips`.
        altered_weight: weight of an extra crop term on the altered frames alone, in the modes that read
            neighbouring frames: it teaches what to take from the neighbours and when not to (0: off).
        shot_weight: weight of the shot test's binary cross-entropy on the clip steps' supervised pairs.
        compile: run the network's forward through `torch.compile` (true: inductor, or a backend's name;
            `--model.compile true` on the command line), see `tasks/compile_option.py`.
        seed: seed of the per-step draws.
    """

    def __init__(
        self,
        model: VideoAnyUp,
        *,
        backbones: Sequence[str] = ("dinov2_vits14",),
        random_backbones: bool = False,
        backbone_seed: int = 0,
        grids: Sequence[int] = (16,),
        zooms: Sequence[int] = (2, 4, 8),
        supersample: Sequence[int] = (1,),
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-5,
        min_lr: float = 1e-6,
        crop_weight: float = 1.0,
        self_consistency_weight: float = 0.1,
        consistency_weight: float = 0.1,
        temporal_weight: float = 0.5,
        jitter: float = 0.3,
        modes: Sequence[str] | None = None,
        freeze_spynet: bool = True,
        spynet_weights: str | None = "synthetic",
        bf16: bool | None = None,
        grad_clip_norm: float | None = None,
        seed: int = 0,
        init_weights: str | None = None,
        new_lr_scale: float = 1.0,
        degrade_probability: float = 0.0,
        degradations: Sequence[str] = KINDS,
        blur_sigma: tuple[float, float] = (1.5, 4.0),
        event_probability: float = 0.0,
        events: Sequence[str] = EVENTS,
        altered_weight: float = 0.0,
        shot_weight: float = 0.0,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if not isinstance(model, VideoAnyUp):
            raise ValueError(f"model must be a VideoAnyUp, got {type(model).__name__}")
        if not backbones:
            raise ValueError("backbones is empty: name at least one registered backbone")
        for name in backbones:  # registered names or specs (resnet50@s8, timm:NAME@LEVEL), checked before training
            check_backbone_spec(name, "backbones")
        if not grids or min(grids) < 1 or not zooms or min(zooms) < 1:
            raise ValueError(f"grids={list(grids)} and zooms={list(zooms)} must be non-empty lists of positive integers")
        if not supersample or min(supersample) < 1:
            raise ValueError(f"supersample must be a non-empty list of positive integers, got {list(supersample)}")
        if not 0.0 <= degrade_probability <= 1.0 or not 0.0 <= event_probability <= 1.0 - degrade_probability:
            raise ValueError(
                f"degrade_probability={degrade_probability} and event_probability={event_probability} must be in "
                "[0, 1] with a sum <= 1"
            )
        bad = [k for k in degradations if k not in KINDS]
        if not degradations or bad:
            raise ValueError(f"degradations must be a non-empty subset of {list(KINDS)}, got {list(degradations)}")
        bad = [k for k in events if k not in EVENTS]
        if not events or bad:
            raise ValueError(f"events must be a non-empty subset of {list(EVENTS)}, got {list(events)}")
        if len(blur_sigma) != 2 or not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (low, high) with 0 < low <= high, got {tuple(blur_sigma)}")
        if altered_weight < 0 or shot_weight < 0:
            raise ValueError(f"altered_weight={altered_weight} and shot_weight={shot_weight} must be >= 0")
        modes = list(modes) if modes else [model.config.mode]
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise ValueError(f"modes={modes} contains unknown modes {unknown}; known: {list(MODES)}")
        self.save_hyperparameters(ignore=["model"])
        if new_lr_scale <= 0:
            raise ValueError(f"new_lr_scale must be > 0, got {new_lr_scale}")
        self.new_tensors: list[str] = []  # tensors a warm start left at their initialisation
        if init_weights is not None:
            self.new_tensors = warm_start(model, init_weights)
        if spynet_weights is not None:
            from videoanyup.tasks.flow.weights import load_spynet

            model.spynet.load_state_dict(load_spynet(spynet_weights).state_dict())
        if freeze_spynet:
            model.spynet.requires_grad_(False)
        compile_forward(model, compile)
        self.model = model
        self.modes = modes
        # Plain containers, not submodules: frozen, rebuilt on demand, never in the checkpoint.
        self._backbones: dict[str, Backbone] = {}
        self._flow_net = [copy.deepcopy(model.spynet).eval().requires_grad_(False)]
        self._shot_logits: list[Tensor] = []  # what the shot test said in the last forward (a hook)
        model.shot.register_forward_hook(lambda module, args, logits: self._shot_logits.append(logits))

    # -- frozen helpers ------------------------------------------------------------------------------
    def backbone(self, name: str) -> Backbone:
        """The frozen backbone `name` on this system's device (built on first use)."""
        if name not in self._backbones:
            hp = self.hparams
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(hp.backbone_seed + list(hp.backbones).index(name))
                self._backbones[name] = build_backbone(name, random=hp.random_backbones)
        backbone = self._backbones[name]
        if next(backbone.parameters()).device != self.device:
            backbone.to(self.device)
        return backbone

    def flow_net(self):
        net = self._flow_net[0]
        if net.mean.device != self.device:
            net.to(self.device)
        return net

    def autocast(self):
        enabled = self.hparams.bf16 if self.hparams.bf16 is not None else self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if enabled else nullcontext()

    def draws(self, batch_size: int) -> dict[str, Any]:
        """This step's draws (`step_draws` at this global step and rank)."""
        hp = self.hparams
        return step_draws(
            hp.seed, self.global_step, self.global_rank, batch_size, backbones=list(hp.backbones), grids=list(hp.grids),
            zooms=list(hp.zooms), modes=self.modes, supersample=list(hp.supersample),
        )

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        new = set(self.new_tensors)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if n not in new], "lr": hp.lr}]
        if new:  # a warm start's new modules learn at new_lr_scale × lr (the schedule scales both groups alike)
            groups.append({"params": [p for n, p in named if n in new], "lr": hp.lr * hp.new_lr_scale})
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        return self.cosine_schedule(optimizer)

    def on_fit_start(self) -> None:
        self.model.trained_modes = tuple(self.modes)

    # -- the step ------------------------------------------------------------------------------------
    def losses(self, frames: Tensor, draws: dict[str, Any], other: Tensor | None = None) -> dict[str, Tensor]:
        """The loss terms of one batch `(B, T, 3, S, S)` under one step's draws (T = 1: images); `other`: another
        clip per clip (the other shot of a cut)."""
        hp = self.hparams
        b, t, _, height, width = frames.shape
        grid, zoom, mode = draws["grid"], draws["zoom"], draws["mode"]
        if height != width or zoom * grid > height:
            raise ValueError(f"frames must be square with S >= zoom × grid = {zoom * grid}, got {tuple(frames.shape)}")
        size = (zoom * grid, zoom * grid)  # the loss grid
        k = int(draws.get("supersample", 1))
        predicted = (k * size[0], k * size[1])  # the network's output grid, pooled by k to the loss grid

        def pooled(x: Tensor) -> Tensor:  # (N, C, kH, kW) -> (N, C, H, W)
            return F.avg_pool2d(x, k) if k > 1 else x

        backbone = self.backbone(draws["backbone"])
        clip = self.alter(frames, draws, other)  # what the network sees, and what the targets are made of
        frames, scene = clip.inputs, clip.scene
        images = rearrange(frames, "b t c h w -> (b t) c h w")  # (B·T, 3, S, S)
        scene_images = rearrange(scene, "b t c h w -> (b t) c h w")
        degraded = [i for i in range(b * t) if not torch.equal(images[i], scene_images[i])]  # frames a degradation hit
        with torch.no_grad(), self.autocast():
            lr = lr_features(backbone, images, grid).float()  # (B·T, C, g, g)
            target = crop_targets(backbone, scene_images, draws["windows"], grid=grid, zoom=zoom).float()  # (B·T, C, g, g)
            lr_clean = lr
            if degraded:  # the self-consistency reference is the scene's
                lr_clean = lr.clone()
                lr_clean[degraded] = lr_features(backbone, scene_images[degraded], grid).float()
        self._shot_logits.clear()
        with self.autocast():
            out = self.model(rearrange(lr, "(b t) c h w -> b t c h w", b=b), frames, size=predicted, mode=mode)
        logits = list(self._shot_logits)
        flat = pooled(rearrange(out, "b t c h w -> (b t) c h w").float())  # (B·T, C, H, W) on the loss grid
        out = rearrange(flat, "(b t) c h w -> b t c h w", b=b)
        terms = {
            "crop": feature_loss(take_windows(flat, draws["windows"], grid), target),
            "self_consistency": self_consistency_loss(flat, lr_clean),
        }
        altered = clip.altered.flatten().nonzero()[:, 0]  # rows of the altered frames
        if len(altered) and hp.get("altered_weight", 0.0) and mode != "perframe":
            rows = altered.to(flat.device)
            terms["altered"] = feature_loss(take_windows(flat[rows], draws["windows"][altered], grid), target[rows])
        if t > 1 and hp.get("shot_weight", 0.0):
            terms["shot"] = self.shot_loss(logits, clip, other, grid)
        if t == 1 and hp.consistency_weight:
            jittered = photometric_jitter(images, draws["generator"], strength=hp.jitter).view_as(frames)
            with self.autocast():
                out_jittered = self.model(rearrange(lr, "(b t) c h w -> b t c h w", b=b), jittered, size=predicted, mode=mode)
            terms["consistency"] = consistency_loss(pooled(rearrange(out_jittered, "b t c h w -> (b t) c h w").float()), flat)
        if t > 1 and hp.temporal_weight:
            flows, visible = self.clip_flows(scene, size)
            kept = (~clip.broken).to(visible)[:, :, None, None, None]  # (B, T − 1, 1, 1, 1): pairs an event broke
            terms["temporal"] = temporal_loss(out, flows, visible * kept)
        return terms

    def shot_loss(self, logits: list[Tensor], clip: AlteredClip, other: Tensor | None, grid: int) -> Tensor:
        """Binary cross-entropy of the shot test: the supervised pairs of the clip the network ran on (its logits
        `(B·(T − 1),)` from the forward, when the mode computed them), and, with another clip per clip, each of its
        frames against the other clip's frame at the same time (another shot: as many negatives as the clip has
        frames, so that the test learns from every clip step, not only from the few with a cut)."""
        predictions, labels = [], []
        if logits:
            b, pairs = clip.labelled.shape
            logit = logits[0].float().view(b, pairs)  # the pairs (j, j + 1) of each clip
            labelled = clip.labelled.to(logit.device)
            predictions.append(logit[labelled])
            labels.append(clip.same_shot.to(logit.device)[labelled])
        if other is not None:
            scene = rearrange(clip.scene, "b t c h w -> (b t) c h w")
            others = rearrange(other.to(scene), "b t c h w -> (b t) c h w")
            with self.autocast():
                cross = shot_logits_between(self.model, scene, others, (grid, grid)).float()
            predictions.append(cross)
            labels.append(torch.zeros_like(cross))
        if not predictions:
            return torch.zeros((), device=self.device)
        return F.binary_cross_entropy_with_logits(torch.cat(predictions), torch.cat(labels))

    def alter(self, frames: Tensor, draws: dict[str, Any], other: Tensor | None) -> AlteredClip:
        """This clip step's `AlteredClip` (unaltered for images, or when the draw says no)."""
        hp = self.hparams
        b, t = frames.shape[:2]
        p_degrade, p_event = hp.get("degrade_probability", 0.0), hp.get("event_probability", 0.0)
        if t == 1 or not (p_degrade or p_event):
            return unaltered(frames)
        events = tuple(hp.get("events", EVENTS))
        if other is None:
            events = tuple(e for e in events if e != "cut") or ("fade",)
        alteration = draw_alteration(
            draws["generator"], b, t, tuple(frames.shape[-2:]), degrade_probability=p_degrade, event_probability=p_event,
            degradations=tuple(hp.get("degradations", KINDS)), events=events,
            blur_sigma=tuple(hp.get("blur_sigma", (1.5, 4.0))),
        )
        if alteration is None:
            return unaltered(frames)
        return alteration.apply(frames, other, draws["generator"])

    @torch.no_grad()
    def clip_flows(self, frames: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Flows t→t−1 and their visibility at the output grid, from SPyNet on the S × S guidance.

        Args: frames `(B, T, 3, S, S)`. Returns: `(B, T−1, 2, H, W)` and `(B, T−1, 1, H, W)`.
        """
        b = frames.shape[0]
        current = rearrange(frames[:, 1:], "b t c h w -> (b t) c h w").float()
        previous = rearrange(frames[:, :-1], "b t c h w -> (b t) c h w").float()
        net = self.flow_net()
        with torch.autocast(self.device.type, enabled=False):
            forward = resize_flow(net(current, previous), size)  # f_{t→t−1}: flow_warp(prev, f) ≈ current
            backward = resize_flow(net(previous, current), size)  # f_{t−1→t}
            visible = non_occluded(forward, backward)
        return (
            rearrange(forward, "(b t) c h w -> b t c h w", b=b),
            rearrange(visible, "(b t) c h w -> b t c h w", b=b),
        )

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        hp = self.hparams
        weights = {
            "crop": hp.crop_weight,
            "self_consistency": hp.self_consistency_weight,
            "consistency": hp.consistency_weight,
            "temporal": hp.temporal_weight,
            "altered": hp.get("altered_weight", 0.0),
            "shot": hp.get("shot_weight", 0.0),
        }
        return sum(weights[k] * v for k, v in terms.items())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        frames = batch["frames"]  # (B, T, 3, S, S)
        draws = self.draws(frames.shape[0] * frames.shape[1])
        terms = self.losses(frames, draws, batch.get("other"))
        loss = self.weighted(terms)
        kind = "clip" if frames.shape[1] > 1 else "image"
        self.log("train/loss", loss, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value)
            if name == "crop":
                self.log(f"train/crop_x{draws['zoom']}", value)
        self.log(f"train/{kind}_loss", loss)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    # -- validation ----------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Crop objective with the centre window at every zoom, for every backbone, and the bilinear baseline."""
        frames = batch["frames"]  # (B, 1, 3, S, S)
        images = frames[:, 0]
        grid = int(self.hparams.grids[0])
        for name in self.hparams.backbones:
            backbone = self.backbone(name)
            for zoom in self.hparams.zooms:
                if zoom * grid > images.shape[-1]:
                    continue
                centre = (zoom * grid - grid) // 2
                windows = torch.full((images.shape[0], 2), centre, dtype=torch.long)
                with self.autocast():
                    lr = lr_features(backbone, images, grid).float()
                    target = crop_targets(backbone, images, windows, grid=grid, zoom=zoom).float()
                    out = self.model(lr, images, size=(zoom * grid, zoom * grid), mode=self.modes[0]).float()
                bilinear = F.interpolate(lr, size=out.shape[-2:], mode="bilinear", align_corners=False)
                self.log(f"val/{name}/crop_x{zoom}", feature_loss(take_windows(out, windows, grid), target), sync_dist=True)
                self.log(f"val/{name}/bilinear_x{zoom}", feature_loss(take_windows(bilinear, windows, grid), target), sync_dist=True)
                self.log("val/crop", feature_loss(take_windows(out, windows, grid), target), prog_bar=True, sync_dist=True)

    # -- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the network's architecture, so the `.ckpt` alone can rebuild it."""
        checkpoint["videoanyup"] = {"config": asdict(self.model.config), "trained_modes": list(self.modes)}
