"""`benchmarks/bench_transfer.py`: the oracle's training config, the shares of its gain, the table, bad specs."""

import argparse
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transfer.py"
spec = importlib.util.spec_from_file_location("bench_transfer", SCRIPT)
transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer)


def arguments(tmp_path, **changes) -> argparse.Namespace:
    values = dict(davis=str(tmp_path / "davis"), oracle_steps=120, oracle_minutes=75, oracle_dir=str(tmp_path / "oracles"))
    values.update(changes)
    return argparse.Namespace(**values)


def test_oracle_config_is_the_bundled_recipe_on_one_backbone(tmp_path):
    from videoanyup.models.videoanyup import VideoAnyUp

    architecture = transfer._architecture(VideoAnyUp.from_pretrained("default"))
    assert "trained_modes" not in architecture and architecture["neighbour_window"] == 3
    folder = tmp_path / "oracles" / "resnet50"
    config = transfer.oracle_config("resnet50", folder, arguments(tmp_path), architecture)
    model = config["model"]
    assert model["model"]["init_args"]["config"] == architecture
    assert model["backbones"] == ["resnet50"] and model["random_backbones"] is True and model["backbone_seed"] == 0
    assert model["modes"] == ["bidirectional", "perframe"] and model["init_weights"] is None  # from scratch
    davis = (tmp_path / "davis").resolve()
    assert config["data"]["clip_sources"] == [str(davis / "JPEGImages" / n) for n in transfer.TRAINING_SEQS]
    assert not set(transfer.TRAINING_SEQS) & set(transfer.HELD_OUT)
    assert config["trainer"]["max_steps"] == 120 and config["trainer"]["max_time"] == "00:01:15:00"
    checkpoint = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
    assert checkpoint["init_args"]["dirpath"] == str(folder / "checkpoints")
    assert config["logging"]["save_dir"] == str(folder / "runs") and config["logging"]["wandb"] == "off"


def test_hiera_oracles_get_grids_that_keep_whole_cells():
    assert transfer._oracle_grids("resnet50") is None  # the base config's 8 and 10 work at stride 16
    grids = transfer._oracle_grids("sam2_hiera_small@s8")  # 32-px inputs: grids of 4 cells at stride 8
    assert grids and all(g * 8 % 32 == 0 for g in grids)


def test_shares_of_the_oracle_gain_and_the_checks():
    def run(fid, te):
        return {"fidelity": fid, "temporal": te}

    scores = {
        "bilinear": run([0.80, 0.80], [1.0]),
        "default perframe": run([0.86, 0.86], [0.2]),
        "default bidirectional": run([0.87, 0.87], [0.1]),
        "oracle perframe": run([0.88, 0.88], [0.2]),
        "oracle bidirectional": run([0.90, 0.90], [0.1]),
    }
    result = transfer.summarise("resnet50", {"scores": scores, "stride": 16, "channels": 1024, "tiling": False}, seen=False)
    assert result["share_of_oracle_gain"]["perframe"] == pytest.approx(0.06 / 0.08)
    assert result["share_of_oracle_gain"]["bidirectional"] == pytest.approx(0.07 / 0.10)
    assert result["rows"]["default bidirectional"]["temporal_ratio"] == pytest.approx(0.1)
    assert result["checks"] == {"perframe >= bilinear + 0.01": True, "bidirectional >= perframe": True,
                                "bidirectional temporal <= 0.3 bilinear": True, "share >= 0.7": True}
    text = transfer.table([result])
    assert "| resnet50 (unseen) | 16, 1024 (off-tiling) | bilinear | 0.800 | 1.00 |  |" in text
    assert "| default perframe | 0.860 | 0.20 | 75 % |" in text
    scores["oracle perframe"] = run([0.79, 0.79], [0.3])  # an oracle below bilinear: no share
    result = transfer.summarise("resnet50", {"scores": scores}, seen=False)
    assert math.isnan(result["share_of_oracle_gain"]["perframe"])


def test_bad_backbone_spec_exits_2_naming_it():
    done = subprocess.run([sys.executable, str(SCRIPT), "--backbones", "resnet50,timm:resnet50@s99x", "--no-oracle"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "timm:resnet50@s99x" in done.stderr and "--backbones" in done.stderr
