"""CUDA checks and speed of both networks: parity with the CPU, reduced precision, frames per second, memory.

Needs a CUDA device (exits with a message otherwise). Uses the bundled weights when they are installed
(`basicavsr/lite`; VideoAnyUp `default` is random unless bundled), imports only the pure-PyTorch core.

1. parity: BasicAVSR lite on a small clip, CUDA fp32 against CPU fp32 (max |Δ|; TF32 off);
2. precision: bf16 and fp16 autocast against CUDA fp32 (PSNR of the difference, dB; higher = closer);
3. speed: BasicAVSR lite / paper, 180×320 → ×4 (720×1280) and ×3.7, T frames, each mode, fp32 / bf16:
   ms per frame and peak GPU memory; VideoAnyUp default, 32×32 → 448×448 features (C = 384), T frames,
   SDPA against the math backend (max |Δ|) and ms per frame.

    python benchmarks/bench_cuda.py --json benchmarks/results/bench_cuda.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

DEFAULT_JSON = Path(__file__).parent / "results" / "bench_cuda.json"


def _basicavsr(name: str):
    from videoanyup.checkpoint import bundled_names
    from videoanyup.models.basicavsr import BasicAVSR

    if name in bundled_names("basicavsr"):
        return BasicAVSR.from_pretrained(name).eval(), "bundled"
    return BasicAVSR.from_config(name).eval(), "random"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _timed(fn, repeat: int) -> tuple[float, float]:
    """(best seconds, peak GiB) over `repeat` runs after one warm-up."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, torch.cuda.max_memory_allocated() / 2**30


def _save(report: dict, rows: list[dict], json_path: str) -> Path:
    """Write the report so far (a run stopped part-way keeps the rows it measured)."""
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "rows": rows}, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "frames": args.frames}
    g = torch.Generator().manual_seed(0)

    # 1-2. parity and precision (lite, bidirectional, 64×96 → ×3.5)
    model, source = _basicavsr("lite")
    report["lite_weights"] = source
    clip = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 128, 192, generator=g), 2).unsqueeze(0)  # (1, 6, 3, 64, 96)
    with torch.no_grad():
        cpu = model(clip, scale=3.5, mode="bidirectional")
        model = model.to(device)
        gpu = model(clip.to(device), scale=3.5, mode="bidirectional")
        parity = (gpu.cpu() - cpu).abs().max().item()
        precision = {}
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            with torch.autocast("cuda", dtype=dtype):
                low = model(clip.to(device), scale=3.5, mode="bidirectional")
            precision[name] = {"psnr_vs_fp32_db": _psnr(low, gpu), "finite": bool(torch.isfinite(low).all())}
    report["parity_cpu_vs_cuda_max_abs"] = parity
    report["precision"] = precision
    print(f"lite ({source}): CUDA fp32 vs CPU max |Δ| = {parity:.2e}")
    for name, v in precision.items():
        print(f"  {name} autocast vs fp32: {v['psnr_vs_fp32_db']:.1f} dB, finite={v['finite']}")

    # 3. speed
    from videoanyup.models.basicavsr import BasicAVSR

    rows = []
    lr = torch.rand(1, args.frames, 3, 180, 320, generator=g).to(device)
    for config in ("lite", "paper"):
        net = BasicAVSR.from_config(config).eval().to(device)  # speed does not depend on the weights; every mode
        for scale in (4.0, 3.7):
            for mode in ("bidirectional", "unidirectional", "lookahead"):
                for precision_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                    def run():
                        with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                            net(lr, scale=scale, mode=mode)

                    seconds, peak = _timed(run, args.repeat)
                    row = {"network": f"basicavsr-{config}", "case": f"180x320 x{scale}", "mode": mode,
                           "precision": precision_name, "ms_per_frame": 1000 * seconds / args.frames, "peak_gib": peak}
                    rows.append(row)
                    _save(report, rows, args.json)
                    print(f"{row['network']:16s} {row['case']:14s} {mode:15s} {precision_name}: "
                          f"{row['ms_per_frame']:8.1f} ms/frame  {peak:6.2f} GiB", flush=True)
        net = None  # free the weights before the next config
        torch.cuda.empty_cache()

    from videoanyup.models.videoanyup import VideoAnyUp

    from videoanyup.checkpoint import bundled_names

    if "default" in bundled_names("videoanyup"):
        up, report["videoanyup_weights"] = VideoAnyUp.from_pretrained("default"), "bundled"
    else:
        up, report["videoanyup_weights"] = VideoAnyUp.from_config("default"), "random"
    up = up.eval().to(device)
    feats = torch.randn(1, args.frames, 384, 32, 32, generator=g).to(device)
    video = torch.rand(1, args.frames, 3, 448, 448, generator=g).to(device)
    math_up = VideoAnyUp(replace(up.config, backend="math")).eval().to(device)
    math_up.load_state_dict(up.state_dict())
    with torch.no_grad():
        sdpa_out = up(feats[:, :4], video[:, :4], mode="bidirectional")
        math_out = math_up(feats[:, :4], video[:, :4], mode="bidirectional")
    report["videoanyup_sdpa_vs_math_max_abs"] = (sdpa_out - math_out).abs().max().item()
    print(f"VideoAnyUp SDPA vs math max |Δ| = {report['videoanyup_sdpa_vs_math_max_abs']:.2e}")
    del math_up, sdpa_out, math_out
    up = VideoAnyUp(up.config).eval().to(device)  # same architecture, fresh weights: every mode may run
    for mode in ("bidirectional", "unidirectional", "perframe"):
        for precision_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            def run():
                with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    up(feats, video, mode=mode)

            seconds, peak = _timed(run, args.repeat)
            row = {"network": "videoanyup-default", "case": "32x32 -> 448x448, C=384", "mode": mode,
                   "precision": precision_name, "ms_per_frame": 1000 * seconds / args.frames, "peak_gib": peak}
            rows.append(row)
            _save(report, rows, args.json)
            print(f"{row['network']:16s} {row['case']:24s} {mode:15s} {precision_name}: "
                  f"{row['ms_per_frame']:8.1f} ms/frame  {peak:6.2f} GiB", flush=True)
    print(f"wrote {_save(report, rows, args.json)}")


if __name__ == "__main__":
    main()
