"""Checks of SPyNet weights on frames no flow training saw: known motions on held-out DAVIS frames.

Not a benchmark of speed: a quality check with exact ground truth on real content that the Sintel samples do
not cover. For each weights name and each held-out frame (DAVIS blackswan, dog, breakdance, car-shadow — held
out of every training of this project), the frame is moved by a known translation (backward warp with
border padding) and SPyNet estimates it back:

- `static`: two identical frames (the flow should be 0);
- `shift`: translations of 3, 8 and 16 px in a few directions;
- `dim`: the same translations after dimming both frames alike (gamma 1.6, exposure 0.35), the regime of
  dark film scenes (Sintel's cave shots).

Reported: mean end-point error over the frame minus a 24-px border (the border holds padded content).
Prints a table and writes JSON.

    python benchmarks/flow_checks.py                                  # bundled "synthetic"
    python benchmarks/flow_checks.py --weights synthetic runs/spynet_lowlight --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

DEFAULT_JSON = Path(__file__).parent / "results" / "flow_checks.json"
HELD_OUT = ("blackswan", "dog", "breakdance", "car-shadow")
SHIFTS = ((3.0, 0.0), (0.0, -8.0), (-8.6, 7.0), (16.0, 0.0), (11.3, -11.3))
BORDER = 24


def load_frame(davis: Path, sequence: str):
    """The 10th frame of a DAVIS sequence, `(1, 3, H, W)` in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    frames = sorted((davis / "JPEGImages" / sequence).glob("*.jpg"))
    image = np.asarray(Image.open(frames[min(10, len(frames) - 1)]).convert("RGB"))
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255


def shifted_pair(frame, shift):
    """`(ref, supp, flow)` with `ref(p) = supp(p + shift)` (SPyNet's convention)."""
    import torch

    from videoanyup.functional.warp import flow_warp

    flow = torch.tensor(shift, dtype=frame.dtype).view(1, 2, 1, 1).expand(1, 2, *frame.shape[-2:])
    return frame, flow_warp(frame, -flow, padding_mode="border"), flow


def dim(x, gamma: float = 1.6, exposure: float = 0.35):
    return x.clamp(0, 1) ** gamma * exposure


def endpoint_error(flow, target) -> float:
    b = BORDER
    return float((flow - target)[..., b:-b, b:-b].norm(dim=1).mean())


def check(weights: str, davis: Path) -> dict:
    import torch

    from videoanyup.tasks.flow.weights import load_spynet

    spynet = load_spynet(weights).eval()
    rows = {"static": [], "shift": [], "dim": []}
    with torch.no_grad():
        for sequence in HELD_OUT:
            frame = load_frame(davis, sequence)
            rows["static"].append(endpoint_error(spynet(frame, frame), torch.zeros(1, 2, *frame.shape[-2:])))
            for shift in SHIFTS:
                ref, supp, flow = shifted_pair(frame, shift)
                rows["shift"].append(endpoint_error(spynet(ref, supp), flow))
                rows["dim"].append(endpoint_error(spynet(dim(ref), dim(supp)), flow))
    return {"weights": weights, **{k: sum(v) / len(v) for k, v in rows.items()}, "cases": {k: len(v) for k, v in rows.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["synthetic"], help="SPyNet weights: bundled names or folders")
    parser.add_argument("--davis", default="../shared/data/davis", help="DAVIS-layout folder with the held-out sequences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    davis = Path(args.davis)
    missing = [s for s in HELD_OUT if not (davis / "JPEGImages" / s).is_dir()]
    if missing:
        parser.error(f"--davis {str(davis)!r} lacks JPEGImages/{missing[0]}")
    results = [check(w, davis) for w in args.weights]
    print(f"Mean end-point error (px) on held-out DAVIS frames, {len(HELD_OUT)} frames × {len(SHIFTS)} translations")
    print(f"{'weights':<32} {'static':>8} {'shift':>8} {'dim':>8}")
    for r in results:
        print(f"{r['weights']:<32} {r['static']:8.2f} {r['shift']:8.2f} {r['dim']:8.2f}")
    mean_shift = sum(math.hypot(*s) for s in SHIFTS) / len(SHIFTS)
    print(f"(zero flow would score {mean_shift:.2f} px on shift and dim)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"results": results, "shifts": SHIFTS, "held_out": HELD_OUT}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
