"""Transfer to feature types the bundled weights never saw: bilinear, the bundled weights and an oracle.

For each backbone (a registered name or a spec: `resnet50`, `sam2_hiera_small@s8`, `timm:NAME@LEVEL`),
random weights (offline), on held-out DAVIS clips (default blackswan, breakdance, car-shadow, dog, the
first 8 frames, short side 224, sides snapped to the backbone's size multiple), seeds 1–3 (the seed of the
random backbone), it reports the probes' two figures side by side (`tasks/probes`):

- fidelity: cosine of the upsampled features, area-pooled, to the backbone on the 2× upscaled frames
  (`fidelity.py`; a CNN's reference cells pooled over their own squares);
- temporal error: DIS-flow-warped 1 − cos between consecutive outputs on non-occluded pixels, as a ratio to
  bilinear's (`temporal_consistency.py`).

Rows, per backbone: bilinear (between the cells' true centres), the bundled weights per frame and
bidirectional, and the oracle per frame and bidirectional: the same architecture trained on that backbone
type alone (random weights, backbone seed 0, so every evaluated seed is an unseen instance), on the six
training DAVIS sequences plus scikit-image pictures, with the bundled recipe's losses and a CPU budget
(`--oracle-steps`, `--oracle-minutes`), through `videoanyup train-upsampler`. Every learned row gets the
backbone's geometry (`upsample(geometry=...)`); where the cells do not tile the frame a diagnostic row,
the bundled per frame without it, shows what the geometry is worth. The share is the part of the
oracle's fidelity gain over bilinear that the bundled weights reach, per mode:
`(bundled − bilinear) / (oracle − bilinear)`.

Oracles are cached: `--oracle-dir DIR` holds `DIR/<backbone>/videoanyup` (weights), `recipe.json` (how it
was trained), the generated `oracle.yaml`, logs and checkpoints; a later run with the same recipe reuses
the weights, and an interrupted training resumes from its last checkpoint. Prints a table, writes JSON.

    python benchmarks/bench_transfer.py --davis ../shared/data/davis   # the full protocol: 4 oracles × 90 min, then the evaluation
    python benchmarks/bench_transfer.py --backbones resnet50 --seeds 1 --seqs dog,blackswan --frames 4 \\
        --oracle-steps 100 --oracle-minutes 5 --oracle-dir runs/transfer_smoke   # a smoke run
    python benchmarks/bench_transfer.py --no-oracle --backbones dinov3_vits16,resnet50 --seeds 1  # no training
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).parent / "results" / "bench_transfer.json"
HELD_OUT = ("blackswan", "breakdance", "car-shadow", "dog")
TRAINING_SEQS = ("bmx-trees", "camel", "car-roundabout", "cows", "dance-twirl", "drift-chicane")
# a seen ViT, an unseen ViT (RoPE, registers), a CNN at stride 16, a hierarchical level at stride 8 (Hiera's random
# stride-16 cells share one direction: mean pairwise cosine 0.85, bilinear fidelity 0.98, little to measure)
DEFAULT_BACKBONES = ("dinov2_vits14", "dinov3_vits16", "resnet50", "sam2_hiera_small@s8")
BASE_CONFIG = ROOT / "configs" / "upsampler" / "cpu_default.yaml"  # the bundled recipe's losses, alterations, data and schedule


def recipe_backbones(config: Path = BASE_CONFIG) -> list[str]:
    """The backbones the bundled recipe trains on (its `model.backbones`, each once, in order)."""
    import yaml

    return list(dict.fromkeys(yaml.safe_load(config.read_text())["model"]["backbones"]))

ORACLE_MODES = ("bidirectional", "perframe")
MODES = ("perframe", "bidirectional")


def backbone_spec(text: str) -> str:
    """argparse type: a backbone spec, checked (a bad one exits 2 naming it)."""
    from videoanyup.backbones.spec import parse_backbone

    try:
        return parse_backbone(text).text
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def folder_name(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


# -- the oracle ----------------------------------------------------------------------------------------
def backbone_hash(spec: str) -> str:
    """A short SHA-256 of the random backbone the oracle trains on (seed 0): a change of how random backbones
    are built retires the cached oracles."""
    import hashlib

    from videoanyup.backbones import build_backbone

    torch.manual_seed(0)
    digest = hashlib.sha256()
    for name, tensor in sorted(build_backbone(spec, random=True).state_dict().items()):
        digest.update(name.encode() + tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def oracle_recipe(spec: str, args: argparse.Namespace, architecture: dict) -> dict:
    """What an oracle is trained with; a cached oracle is reused only when this matches."""
    return dict(
        backbone=spec, backbone_hash=backbone_hash(spec), random_backbone=True, backbone_seed=0,
        steps=args.oracle_steps, minutes=args.oracle_minutes,
        modes=list(ORACLE_MODES), clips=list(TRAINING_SEQS), base_config=str(BASE_CONFIG.relative_to(ROOT)),
        architecture=architecture,
    )


def oracle_config(spec: str, folder: Path, args: argparse.Namespace, architecture: dict) -> dict:
    """The training config: the bundled recipe's config (losses, degradations and scene events, data,
    schedule) with the bundled architecture trained from scratch, this backbone alone, the six training DAVIS
    sequences and the budget."""
    import yaml

    config = yaml.safe_load(BASE_CONFIG.read_text())
    model = config["model"]
    model["model"]["init_args"]["config"] = copy.deepcopy(architecture)
    model.update(backbones=[spec], random_backbones=True, backbone_seed=0, modes=list(ORACLE_MODES), init_weights=None)
    davis = Path(args.davis).resolve()
    data = config["data"]
    data["clip_sources"] = [str(davis / "JPEGImages" / name) for name in TRAINING_SEQS]
    data["val_sources"] = [str(davis / "JPEGImages" / name / "00000.jpg") for name in ("blackswan", "dog")]
    grids = _oracle_grids(spec)
    if grids is not None:
        model["grids"] = grids
    trainer = config["trainer"]
    minutes = args.oracle_minutes
    trainer.update(max_steps=args.oracle_steps, max_time=f"00:{int(minutes // 60):02d}:{int(minutes % 60):02d}:00")
    for callback in trainer.get("callbacks", []):
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"].update(dirpath=str(folder / "checkpoints"), save_top_k=1, every_n_train_steps=100)
    config["logging"] = dict(save_dir=str(folder / "runs"), name="oracle", wandb="off", project="videoanyup")
    return config


def _oracle_grids(spec: str) -> list[int] | None:
    """Grids that keep whole cells for this backbone (Hiera levels need multiples of 32 px of input); None:
    the base config's."""
    from videoanyup.backbones.spec import parse_backbone

    request = parse_backbone(spec)
    if "hiera" not in request.model:
        return None
    import yaml

    base = yaml.safe_load(BASE_CONFIG.read_text())["model"]["grids"]
    from videoanyup.backbones import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(spec, random=True)
    step = backbone.size_multiple // math.gcd(backbone.stride, backbone.size_multiple)
    return sorted({max(step, step * round(g / step)) for g in base})


def train_oracle(spec: str, args: argparse.Namespace, architecture: dict) -> Path:
    """The oracle's weights folder: cached when its recipe matches, else trained now (module docstring)."""
    import yaml

    folder = Path(args.oracle_dir) / folder_name(spec)
    weights, recipe_file = folder / "videoanyup", folder / "recipe.json"
    recipe = oracle_recipe(spec, args, architecture)
    if weights.exists():
        cached = json.loads(recipe_file.read_text()) if recipe_file.exists() else None
        if cached is not None and cached.get("recipe") == recipe:
            print(f"oracle {spec}: cached in {weights}", flush=True)
            return weights
        raise SystemExit(
            f"oracle {spec}: {weights} was trained with another recipe ({recipe_file}); pass --retrain to replace it "
            f"or another --oracle-dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    pending = folder / "recipe.pending.json"
    resume = (
        pending.exists() and json.loads(pending.read_text()) == recipe and (folder / "checkpoints" / "last.ckpt").exists()
    )
    pending.write_text(json.dumps(recipe, indent=2) + "\n")
    config_file = folder / "oracle.yaml"
    config_file.write_text(yaml.safe_dump(oracle_config(spec, folder, args, architecture), sort_keys=False))
    command = [sys.executable, "-m", "videoanyup.tasks.cli", "train-upsampler", "--config", str(config_file)]
    if resume:
        command += ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS=str(args.oracle_threads))
    print(f"oracle {spec}: training ({'resuming, ' if resume else ''}{args.oracle_steps} steps, at most "
          f"{args.oracle_minutes} min): {' '.join(command)}", flush=True)
    began = time.perf_counter()
    with open(folder / "train.log", "a") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if status != 0:
        raise SystemExit(f"oracle {spec}: training failed (exit {status}); see {folder / 'train.log'}")
    versions = sorted((folder / "runs" / "oracle").glob("version_*/videoanyup"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise SystemExit(f"oracle {spec}: training wrote no weights under {folder / 'runs'}")
    shutil.copytree(versions[-1], weights)
    steps = _last_step(folder)
    recipe_file.write_text(json.dumps(dict(recipe=recipe, trained_from=str(versions[-1]), seconds=time.perf_counter() - began,
                                           steps_done=steps), indent=2) + "\n")
    pending.unlink()
    print(f"oracle {spec}: {steps} steps in {time.perf_counter() - began:.0f} s -> {weights}", flush=True)
    return weights


def _last_step(folder: Path) -> int | None:
    """The last logged training step of the oracle's run (CSV logger), if any."""
    import csv

    logs = sorted((folder / "runs" / "oracle").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    with open(logs[-1]) as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row.get("step")]
    return max(steps) + 1 if steps else None


# -- evaluation ----------------------------------------------------------------------------------------
def evaluate(spec: str, methods: dict, args: argparse.Namespace, flow_cache: dict) -> dict:
    """Per method: per-frame fidelities and per-pair temporal errors over the seeds and clips.

    Args:
        methods: name -> (VideoAnyUp or None for bilinear, mode, whether the geometry is passed).
    """
    from videoanyup.backbones import build_backbone
    from videoanyup.tasks.probes import davis
    from videoanyup.tasks.probes.fidelity import fidelity, reference_features, reference_geometry
    from videoanyup.tasks.probes.temporal_consistency import clip_flows, temporal_error
    from videoanyup.tasks.probes.upsamplers import make_upsampler

    scores = {name: {"fidelity": [], "temporal": []} for name in methods}
    geometry_info = None
    for seed in args.seeds:
        torch.manual_seed(seed)
        backbone = build_backbone(spec, random=True)
        for name in args.seqs:
            seq = davis.load_sequence(args.davis, name, frames=args.frames, short_side=args.short_side,
                                      patch_size=backbone.size_multiple)
            frames = seq.frames  # (T, 3, H, W)
            size = tuple(frames.shape[-2:])
            key = (name, size, args.frames)
            if key not in flow_cache:
                flow_cache[key] = clip_flows(frames)
            flows = flow_cache[key]
            with torch.inference_mode():
                feats = backbone.extract(frames[None])[0].float()  # (T, C, h, w)
            reference = reference_features(backbone, frames)  # (T, C, 2h, 2w)
            geometry, cells = backbone.geometry(*size), reference_geometry(backbone, frames)
            if geometry_info is None:  # on the network's own input: offsets in its pixels
                own = backbone.geometry(*backbone.input_size(*size))
                geometry_info = dict(stride=backbone.stride, channels=backbone.embed_dim, level=backbone.levels[0].module,
                                     offset_px=list(own.offset), tiling=own.is_tiling(), grid=list(own.grid))
            for method, (model, mode, placed) in methods.items():
                up = make_upsampler("bilinear" if model is None else mode, model)
                hr = up(feats, frames, geometry=geometry if placed else None)  # (T, C, H, W)
                scores[method]["fidelity"].extend(fidelity(hr, reference, cells))
                scores[method]["temporal"].extend(temporal_error(hr, flows, "cosine"))
                del hr
            print(f"  {spec} seed {seed} {name}: done", flush=True)
    return dict(scores=scores, **(geometry_info or {}))


def summarise(spec: str, evaluated: dict, seen: bool) -> dict:
    """Means, temporal ratios to bilinear, the shares of the oracle's gain and the issue's checks."""
    import numpy as np

    from videoanyup.tasks.probes.temporal_consistency import ratio

    scores = evaluated["scores"]
    bilinear_te = scores["bilinear"]["temporal"]
    rows = {
        method: dict(fidelity=float(np.mean(s["fidelity"])), temporal_ratio=ratio(s["temporal"], bilinear_te),
                     temporal_error=float(np.nanmean(s["temporal"])))
        for method, s in scores.items()
    }
    bilinear = rows["bilinear"]["fidelity"]
    shares = {}
    for mode in MODES:
        bundled, oracle = rows.get(f"default {mode}"), rows.get(f"oracle {mode}")
        if bundled and oracle:
            gain = oracle["fidelity"] - bilinear
            shares[mode] = (bundled["fidelity"] - bilinear) / gain if gain > 0 else float("nan")
    checks = {}
    if "default perframe" in rows:
        perframe, bidirectional = rows["default perframe"], rows["default bidirectional"]
        checks = {
            "perframe >= bilinear + 0.01": perframe["fidelity"] >= bilinear + 0.01,
            "bidirectional >= perframe": bidirectional["fidelity"] >= perframe["fidelity"],
            "bidirectional temporal <= 0.3 bilinear": bidirectional["temporal_ratio"] <= 0.3,  # per frame: no neighbours
        }
        if "perframe" in shares:
            checks["share >= 0.7"] = shares["perframe"] >= 0.7
    keep = {k: v for k, v in evaluated.items() if k != "scores"}
    return dict(backbone=spec, seen=seen, **keep, rows=rows, share_of_oracle_gain=shares, checks=checks,
                per_run={m: s for m, s in scores.items()})


def table(results: list[dict]) -> str:
    lines = ["| backbone | stride, C | upsampler | fidelity | temporal / bilinear | share of oracle gain |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        kind = f"{r.get('stride')}, {r.get('channels')}" + ("" if r.get("tiling", True) else " (off-tiling)")
        name = f"{r['backbone']} ({'seen' if r['seen'] else 'unseen'})"
        for method, row in r["rows"].items():
            mode = method.split(" ", 1)[1] if method.startswith("default ") else None
            share = r["share_of_oracle_gain"].get(mode) if mode in MODES and method.startswith("default ") else None
            share_text = "" if share is None else ("–" if not math.isfinite(share) else f"{100 * share:.0f} %")
            te = row["temporal_ratio"]
            lines.append(f"| {name} | {kind} | {method} | {row['fidelity']:.3f} | "
                         f"{'–' if not math.isfinite(te) else f'{te:.2f}'} | {share_text} |")
            name, kind = "", ""
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", type=lambda s: [backbone_spec(v) for v in s.split(",") if v.strip()],
                        default=list(DEFAULT_BACKBONES), help="comma list of backbone specs (random weights)")
    parser.add_argument("--weights", default="default", help="the bundled weights (name or folder) under test")
    parser.add_argument("--davis", default=str(ROOT.parent / "shared" / "data" / "davis"), help="DAVIS root")
    parser.add_argument("--seqs", type=lambda s: s.split(","), default=list(HELD_OUT), help="held-out clips")
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--seen", type=lambda s: s.split(","), default=None,
                        help="backbones the weights were trained on (default: the bundled recipe's, configs/upsampler/cpu_default.yaml)")
    parser.add_argument("--oracle-dir", default=str(ROOT / "runs" / "transfer_oracles"), help="oracle cache folder")
    parser.add_argument("--oracle-steps", type=int, default=3500, help="oracle training steps (cosine schedule length)")
    parser.add_argument("--oracle-minutes", type=float, default=90, help="oracle wall-clock budget (trainer.max_time)")
    parser.add_argument("--oracle-threads", type=int, default=2, help="OMP threads of the oracle's training")
    parser.add_argument("--no-oracle", action="store_true", help="bilinear and the bundled weights only")
    parser.add_argument("--retrain", action="store_true", help="replace cached oracles trained with another recipe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.frames < 2:
        parser.error(f"--frames must be ≥ 2 (the temporal error compares consecutive frames), got {args.frames}")
    torch.set_num_threads(args.threads)
    seen = args.seen if args.seen is not None else recipe_backbones()
    from videoanyup.models.videoanyup import VideoAnyUp

    bundled = VideoAnyUp.from_pretrained(args.weights).eval()
    architecture = _architecture(bundled)
    began = time.perf_counter()
    results, flow_cache = [], {}
    for spec in args.backbones:
        methods = {"bilinear": (None, None, True)}
        methods.update({f"default {mode}": (bundled, mode, True) for mode in MODES})
        if not args.no_oracle:
            if args.retrain:
                shutil.rmtree(Path(args.oracle_dir) / folder_name(spec) / "videoanyup", ignore_errors=True)
            oracle = VideoAnyUp.from_pretrained(train_oracle(spec, args, architecture)).eval()
            methods.update({f"oracle {mode}": (oracle, mode, True) for mode in MODES})
        methods["default perframe, cells assumed to tile"] = (bundled, "perframe", False)
        evaluated = evaluate(spec, methods, args, flow_cache)
        if evaluated.get("tiling", True):
            del evaluated["scores"]["default perframe, cells assumed to tile"]  # the same as with the geometry
        results.append(summarise(spec, evaluated, spec in seen))
    print()
    print(table(results))
    output = dict(weights=str(args.weights), seqs=args.seqs, seeds=args.seeds, frames=args.frames,
                  short_side=args.short_side, seen=seen, oracle=None if args.no_oracle else dict(
                      steps=args.oracle_steps, minutes=args.oracle_minutes, dir=str(args.oracle_dir)),
                  results=results, seconds=time.perf_counter() - began)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2) + "\n")
    print(f"wrote {args.json}")


def _architecture(model) -> dict:
    """The bundled network's configuration (what `config.json` records), without its trained modes."""
    from dataclasses import asdict, is_dataclass

    config = model.config
    values = asdict(config) if is_dataclass(config) else dict(vars(config))
    values.pop("trained_modes", None)
    return values


if __name__ == "__main__":
    main()
