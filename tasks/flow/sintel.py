"""MPI-Sintel samples: the `.flo` format and the end-point-error evaluation of SPyNet beside references.

A sample folder (`sintel/{clean,final}/{easy,medium,hard}/`) holds `frame_0001..4.png` and the ground truth of
frame 2 → 3: `gt/frame_0002.flo`, `gt/invalid/frame_0002.png` (255 = no ground truth) and
`gt/occlusions/frame_0002.png` (255 = occluded in frame 3). Sintel's flow follows SPyNet's convention with
ref = frame 2 and supp = frame 3. The EPE is averaged over valid pixels ("all"), and over valid
non-occluded pixels ("noc"). References: zero flow, and OpenCV's DIS optical flow (medium preset) on grayscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoanyup.layers.spynet import SPyNet

FLO_MAGIC = 202021.25
PASSES = ("clean", "final")
DIFFICULTIES = ("easy", "medium", "hard")
METHODS = ("zero", "dis", "spynet")


def read_flo(path: str | Path) -> Tensor:
    """A Middlebury `.flo` file → flow `(2, H, W)` float32, channels (u, v) = (x, y)."""
    path = Path(path)
    with path.open("rb") as handle:
        magic = np.fromfile(handle, np.float32, count=1)
        if magic.size != 1 or magic[0] != np.float32(FLO_MAGIC):
            raise ValueError(f"{str(path)!r} is not a .flo file (magic {magic[:1]}, expected {FLO_MAGIC})")
        width, height = (int(v) for v in np.fromfile(handle, np.int32, count=2))
        data = np.fromfile(handle, np.float32, count=width * height * 2)
    if width <= 0 or height <= 0 or data.size != width * height * 2:
        raise ValueError(f"{str(path)!r} is truncated: header says {width}×{height}, holds {data.size} floats")
    return torch.from_numpy(data.reshape(height, width, 2).copy()).permute(2, 0, 1).contiguous()


def write_flo(path: str | Path, flow: Tensor) -> None:
    """Write flow `(2, H, W)` (channels x, y) as a Middlebury `.flo` file."""
    if flow.dim() != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got {tuple(flow.shape)}")
    _, height, width = flow.shape
    with Path(path).open("wb") as handle:
        np.array([FLO_MAGIC], np.float32).tofile(handle)
        np.array([width, height], np.int32).tofile(handle)
        flow.detach().float().cpu().permute(1, 2, 0).contiguous().numpy().tofile(handle)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise ValueError(f"Sintel sample is missing {str(path)!r}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "1") else image)


@dataclass(frozen=True)
class SintelSample:
    """One sample folder: frames 2 and 3 as `(3, H, W)` in [0, 1], flow `(2, H, W)`, valid and non-occluded `(H, W)` bool."""

    name: str
    ref: Tensor
    supp: Tensor
    flow: Tensor
    valid: Tensor
    visible: Tensor

    @classmethod
    def load(cls, folder: str | Path, name: str | None = None) -> "SintelSample":
        folder = Path(folder)
        frames = [torch.from_numpy(_read_image(folder / f"frame_000{i}.png").copy()).permute(2, 0, 1).float() / 255 for i in (2, 3)]
        flow = read_flo(folder / "gt" / "frame_0002.flo")
        invalid = folder / "gt" / "invalid" / "frame_0002.png"
        occluded = folder / "gt" / "occlusions" / "frame_0002.png"
        valid = torch.from_numpy(_read_image(invalid) == 0) if invalid.is_file() else torch.ones(flow.shape[-2:], dtype=torch.bool)
        visible = torch.from_numpy(_read_image(occluded) == 0) if occluded.is_file() else torch.ones_like(valid)
        if valid.dim() == 3:
            valid, visible = valid.all(-1), visible.all(-1)
        if frames[0].shape[-2:] != flow.shape[-2:]:
            raise ValueError(f"{str(folder)!r}: frames are {tuple(frames[0].shape[-2:])} but the flow is {tuple(flow.shape[-2:])}")
        return cls(name or folder.name, frames[0], frames[1], flow, valid, visible & valid)


def find_samples(root: str | Path) -> list[Path]:
    """Sample folders under `root` (the `sintel/` folder): `{clean,final}/{easy,medium,hard}` that exist."""
    root = Path(root)
    folders = [root / p / d for p in PASSES for d in DIFFICULTIES if (root / p / d / "gt" / "frame_0002.flo").is_file()]
    if not folders:
        raise ValueError(f"sintel={str(root)!r} holds no {{clean,final}}/{{easy,medium,hard}}/gt/frame_0002.flo")
    return folders


def dis_flow(ref: Tensor, supp: Tensor) -> Tensor:
    """OpenCV DIS optical flow (medium preset) from `ref` to `supp` `(3, H, W)` in [0, 1] → `(2, H, W)`."""
    import cv2

    def gray(x: Tensor) -> np.ndarray:
        rgb = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(gray(ref), gray(supp), None)  # (H, W, 2), ref(p) ≈ supp(p + flow)
    return torch.from_numpy(flow).permute(2, 0, 1).contiguous()


def epe(flow: Tensor, target: Tensor, mask: Tensor) -> float:
    """Mean end-point error of `flow` vs `target` `(2, H, W)` over `mask` `(H, W)` bool."""
    error = (flow - target).norm(dim=0)  # (H, W)
    return float(error[mask].mean())


@torch.no_grad()
def evaluate_sample(sample: SintelSample, spynet: SPyNet) -> dict[str, float | str]:
    """EPE (all valid pixels and non-occluded ones) of zero flow, DIS and `spynet` on one sample."""
    device = next(spynet.parameters()).device
    flows = {
        "zero": torch.zeros_like(sample.flow),
        "dis": dis_flow(sample.ref, sample.supp),
        "spynet": spynet(sample.ref[None].to(device), sample.supp[None].to(device))[0].float().cpu(),
    }
    row: dict[str, float | str] = {"sample": sample.name}
    for method, flow in flows.items():
        row[method] = epe(flow, sample.flow, sample.valid)
        row[f"{method}_noc"] = epe(flow, sample.flow, sample.visible)
    return row


def evaluate_sintel(root: str | Path, spynet: SPyNet) -> list[dict[str, float | str]]:
    """One row per sample folder under `root` (named like "clean/easy"), then a "mean" row."""
    root = Path(root)
    was_training = spynet.training
    spynet.eval()
    try:
        rows = [evaluate_sample(SintelSample.load(f, f"{f.parent.name}/{f.name}"), spynet) for f in find_samples(root)]
    finally:
        spynet.train(was_training)
    keys = [k for k in rows[0] if k != "sample"]
    rows.append({"sample": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in keys}})
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    """A Markdown table of EPE (all valid pixels, and non-occluded in brackets) per sample and method."""
    lines = ["| sample | zero flow | DIS (OpenCV) | SPyNet |", "| --- | ---: | ---: | ---: |"]
    for row in rows:
        cells = [f"{row[m]:.2f} ({row[m + '_noc']:.2f})" for m in METHODS]
        lines.append(f"| {row['sample']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_met(rows: list[dict[str, float | str]], *, dis_factor: float = 1.5) -> dict[str, bool]:
    """The issue's targets: SPyNet below zero flow on every sample; its mean within `dis_factor` × DIS's mean."""
    samples = [r for r in rows if r["sample"] != "mean"]
    mean = next(r for r in rows if r["sample"] == "mean")
    return {
        "below_zero_flow_everywhere": all(r["spynet"] < r["zero"] for r in samples),
        f"within_{dis_factor}x_dis_mean": mean["spynet"] <= dis_factor * mean["dis"],
    }
