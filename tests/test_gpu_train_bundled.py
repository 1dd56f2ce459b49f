"""`benchmarks/gpu_train_bundled.sh smoke`: every stage of the GPU script for 3 steps on the CPU, on tiny clips the
test writes itself (nothing outside the checkout), writes weights that load and held-out scores for new and shipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_train_bundled.sh"
DAVIS = ("bmx-trees", "camel", "car-roundabout", "cows", "dance-twirl", "drift-chicane", "blackswan", "breakdance", "car-shadow", "dog")
CLIPS = ("bedroom", "reds_demo_000_lr", "bigbuckbunny", "bikes", "carphone_pristine")


def write_clip(folder: Path, base: np.ndarray, frames: int, *, mask_folder: Path | None = None) -> None:
    """`frames` crops of `base` moving a pixel or two a frame (32×40 JPEG), with a square mask per frame if asked."""
    from PIL import Image

    folder.mkdir(parents=True)
    if mask_folder is not None:
        mask_folder.mkdir(parents=True)
    for t in range(frames):
        crop = base[t : t + 32, 2 * t : 2 * t + 40]
        Image.fromarray(crop).save(folder / f"{t:05d}.jpg", quality=95)
        if mask_folder is not None:
            mask = np.zeros((32, 40), np.uint8)
            mask[8 + t : 20 + t, 12:28] = 255
            Image.fromarray(mask).save(mask_folder / f"{t:05d}.png")


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    from skimage import data as skdata

    root = tmp_path / "data"
    base = skdata.astronaut()[::4, ::4]  # (128, 128, 3)
    for i, name in enumerate(DAVIS):
        shifted = np.roll(base, 7 * i, axis=1)
        write_clip(root / "davis" / "JPEGImages" / name, shifted, 4, mask_folder=root / "davis" / "Annotations" / name)
    for i, name in enumerate(CLIPS):
        write_clip(root / "clips" / name, np.roll(base, 11 * i, axis=0), 4)
    return root


def test_smoke_run_writes_weights_and_held_out_scores(tiny_data: Path, tmp_path: Path) -> None:
    from videoanyup.models.basicavsr import BasicAVSR
    from videoanyup.models.videoanyup import VideoAnyUp

    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DATA=str(tiny_data), WORK=str(tmp_path / "work"), PYTHON=sys.executable,
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(["bash", str(SCRIPT), "smoke"], env=env, capture_output=True, text=True, timeout=600)
    log = (out / "log.txt").read_text() if (out / "log.txt").is_file() else result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "basicavsr_lite/config.json", "basicavsr_lite/model.safetensors", "log.txt", "scores.json", "summary.txt",
        "videoanyup_default/config.json", "videoanyup_default/model.safetensors",
    ], log[-4000:]
    scores = json.loads((out / "scores.json").read_text())
    for chain in ("lite", "videoanyup"):
        failed = {k: v for k, v in scores[chain]["stages"].items() if "seconds" not in v}
        assert not failed, failed
    # lite: trained 3 steps in each stage, for all three modes; held-out scores of the new and the shipped weights
    lite = BasicAVSR.from_pretrained(str(out / "basicavsr_lite"))
    assert set(lite.trained_modes) == {"bidirectional", "unidirectional", "lookahead"}
    assert scores["lite"]["speed_bidirectional"]["steps"] == 3 and scores["lite"]["speed_modes"]["steps"] == 3
    for label in ("new", "shipped"):
        held = scores["lite"]["heldout"][label]
        assert set(held["bidirectional"]["average"]) == {"x2", "x3", "x4", "x2.5x3.5"}
        assert set(held["bidirectional"]["clips"]) == {"blackswan", "breakdance", "car-shadow", "dog", "bikes", "carphone_pristine"}
        assert {"unidirectional", "lookahead", "bicubic"} <= set(held["causal"]["average"]["x4"])
    # the bicubic baseline is the same whichever weights are scored
    new, shipped = (scores["lite"]["heldout"][k]["bidirectional"]["average"]["x4"]["bicubic"]["psnr"] for k in ("new", "shipped"))
    assert new == pytest.approx(shipped)
    # VideoAnyUp: the shipped architecture, all four modes, probe and altered-frame scores of both
    up = VideoAnyUp.from_pretrained(str(out / "videoanyup_default"))
    assert up.config == VideoAnyUp.from_config("default").config
    assert set(up.trained_modes) == {"bidirectional", "unidirectional", "lookahead", "perframe"}
    for label, methods in (("new", {"bilinear", "perframe", "videoanyup"}), ("shipped", {"perframe", "videoanyup"})):
        held = scores["videoanyup"]["heldout"][label]
        assert {r["method"] for r in held["altered_frame"]["rows"]} >= {"bilinear", "perframe", "bidirectional"}
        assert methods | {"featureless"} <= {r["upsampler"] for r in held["vos_probe"]}
    assert "VideoAnyUp new altered frame" in (out / "summary.txt").read_text()
