"""`videoanyup features`: fp16 shards equal `videoanyup.upsample`, the index, the loader, chunked memory, bad inputs.

Offline: a random DINOv2 ViT-S/14 on a tiny synthetic clip and a tiny VideoAnyUp saved to tmp.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import videoanyup
from videoanyup.backbones.registry import build_backbone
from videoanyup.checkpoint import bundled_names
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.cli import main
from videoanyup.tasks.features import load_features, load_lr, read_index
from videoanyup.tasks.features.shards import ShardWriter, partial_folder, write_index
from videoanyup.tasks.video_io import read_video

from conftest import write_synthetic_clip  # noqa: E402

BACKBONE = "dinov2_vits14"


def reference(clip, weights, *, mode, start=0, frames=None, short_side=None, size=None):
    """What the command should write, computed in memory: resized clip → random backbone → upsample."""
    torch.manual_seed(0)  # the command's default --seed
    backbone = build_backbone(BACKBONE, random=True)
    video = read_video(clip, start, frames)  # (T, 3, H, W)
    video = resize_guidance(video, backbone.input_size(*video.shape[-2:], short_side))
    with torch.no_grad():
        lr = backbone.extract(video[None])  # (1, T, C, h, w)
    model = VideoAnyUp.from_pretrained(weights).eval()
    return lr[0], videoanyup.upsample(lr, video[None], model=model, mode=mode, size=size)[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    torch.manual_seed(0)
    VideoAnyUp.from_config("tiny").save_pretrained(root / "weights")
    write_synthetic_clip(root / "clip", frames=8, height=48, width=64)
    write_synthetic_clip(root / "clip.mp4", frames=6, height=48, width=64, image="coffee")
    return root


@pytest.fixture(scope="module")
def written(setup):
    """The command run once on the frame folder; the whole-clip forward is forbidden meanwhile."""
    root = setup
    chunk_shapes = []
    original = VideoAnyUp.iter_chunks

    def recording(self, *args, **kwargs):
        for t0, part in original(self, *args, **kwargs):
            chunk_shapes.append((t0, tuple(part.shape)))
            yield t0, part

    def forbidden(self, *args, **kwargs):
        raise AssertionError("features must not run the whole-clip forward (it allocates the full HR tensor)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VideoAnyUp, "iter_chunks", recording)
        patch.setattr(VideoAnyUp, "forward", forbidden)
        status = main([
            "features", str(root / "clip"), "-o", str(root / "out"), "--backbone", BACKBONE, "--random-backbone",
            "--weights", str(root / "weights"), "--mode", "unidirectional", "--chunk-frames", "3",
            "--shard-frames", "5", "--save-lr", "--quiet",
        ])
    assert status == 0
    return root / "out", chunk_shapes


def test_shards_equal_upsample_within_fp16_rounding(setup, written):
    out, chunk_shapes = written
    lr, expected = reference(setup / "clip", setup / "weights", mode="unidirectional")
    got = load_features(out)
    assert got.dtype == np.float16 and got.shape == (8, 384, 42, 70) == tuple(expected.shape)
    expected = expected.numpy()
    assert np.abs(got.astype(np.float32) - expected).max() <= 1e-5 + 2.0**-10 * np.abs(expected).max()
    assert np.mean(got == expected.astype(np.float16)) > 0.999  # the same numbers, rounded once
    assert np.array_equal(load_lr(out), lr.numpy().astype(np.float16))
    # the HR clip was never whole: 3-frame chunks of (B, n, C, H, W)
    assert chunk_shapes == [(0, (1, 3, 384, 42, 70)), (3, (1, 3, 384, 42, 70)), (6, (1, 2, 384, 42, 70))]


def test_index_describes_the_shards(setup, written):
    out, _ = written
    index = json.loads((out / "index.json").read_text())
    assert index == read_index(out)
    assert {k: index[k] for k in ("backbone", "random_backbone", "embed_dim", "patch_size", "frames", "start")} == dict(
        backbone=BACKBONE, random_backbone=True, embed_dim=384, patch_size=14, frames=8, start=0
    )
    assert index["video_size"] == [48, 64] and index["input_size"] == [42, 70]  # sides rounded to 14
    assert index["lr_grid"] == [3, 5] and index["output_size"] == [42, 70] and index["shape"] == [8, 384, 42, 70]
    assert index["shards"] == [
        {"file": "features_00000.npy", "start": 0, "stop": 5},
        {"file": "features_00001.npy", "start": 5, "stop": 8},
    ]
    assert index["dtype"] == "float16" and index["lr"] == "lr.npy" and index["mode"] == "unidirectional"
    assert index["weights"] == str(setup / "weights")
    assert index["command"].startswith("videoanyup features ") and "--random-backbone" in index["command"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".videoanyup-output.json", "features_00000.npy", "features_00001.npy", "index.json", "lr.npy"
    ]
    assert np.load(out / "features_00001.npy").shape == (3, 384, 42, 70)
    assert not list(setup.glob(".out.*"))  # no partial folder left behind


def test_load_features_slices(written):
    out, _ = written
    whole = np.array(load_features(out))
    inside = load_features(out, frames=slice(1, 4))
    assert isinstance(inside, np.memmap) and np.array_equal(inside, whole[1:4])  # a view of one shard
    for frames in (slice(3, 7), slice(None, None, 2), slice(None, None, -3), slice(6, 20), slice(5, 5), slice(-2, None)):
        assert np.array_equal(load_features(out, frames=frames), whole[frames]), frames
    assert load_features(out, frames=slice(5, 5)).shape == (0, 384, 42, 70)
    with pytest.raises(ValueError, match="frames"):
        load_features(out, frames=3)


def test_mp4_with_start_frames_size_and_short_side(setup, tmp_path):
    out = tmp_path / "mp4"
    assert main([
        "features", str(setup / "clip.mp4"), "-o", str(out), "--backbone", BACKBONE, "--random-backbone",
        "--weights", str(setup / "weights"), "--mode", "perframe", "--start", "2", "--frames", "3",
        "--short-side", "28", "--size", "20x30", "--quiet",
    ]) == 0
    index = read_index(out)
    assert index["frames"] == 3 and index["start"] == 2 and index["lr"] is None
    assert index["input_size"] == [28, 42] and index["lr_grid"] == [2, 3] and index["output_size"] == [20, 30]
    _, expected = reference(setup / "clip.mp4", setup / "weights", mode="perframe", start=2, frames=3, short_side=28,
                            size=(20, 30))
    got = load_features(out).astype(np.float32)
    assert got.shape == (3, 384, 20, 30)
    assert np.abs(got - expected.numpy()).max() <= 1e-5 + 2.0**-10 * float(expected.abs().max())


def test_shard_writer_round_trip(tmp_path):
    data = np.random.default_rng(0).standard_normal((11, 2, 3, 4)).astype(np.float32)
    with partial_folder(tmp_path / "f") as tmp:
        writer = ShardWriter(tmp, frames=11, frame_shape=(2, 3, 4), shard_frames=4)
        for a, b in [(0, 3), (3, 9), (9, 10), (10, 11)]:  # chunks that straddle the shard boundaries
            writer.write(data[a:b])
        write_index(tmp, {"format": "videoanyup-features/1", "frames": 11, "shape": [11, 2, 3, 4],
                          "shards": writer.shards(), "lr": None})
    assert [s["stop"] - s["start"] for s in read_index(tmp_path / "f")["shards"]] == [4, 4, 3]
    assert np.array_equal(load_features(tmp_path / "f"), data.astype(np.float16))
    with pytest.raises(ValueError, match="index.json"):
        load_features(tmp_path)


def test_a_failure_leaves_no_output(setup, tmp_path, capsys, monkeypatch):
    def broken(self, frames):
        raise ValueError("disk on fire")

    monkeypatch.setattr(ShardWriter, "write", broken)
    out = tmp_path / "out"
    assert main(["features", str(setup / "clip"), "-o", str(out), "--backbone", BACKBONE, "--random-backbone",
                 "--weights", str(setup / "weights"), "--frames", "2", "--quiet"]) == 2
    assert "disk on fire" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither OUT nor a .out.*.partial folder


def _fails(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("videoanyup features: error:") and match in err, err


def test_bad_arguments_exit_2_naming_the_argument(setup, tmp_path, capsys):
    clip, weights = str(setup / "clip"), ["--weights", str(setup / "weights")]
    base = ["-o", str(tmp_path / "o"), "--backbone", BACKBONE, "--random-backbone", "--quiet"]
    _fails(["features", str(tmp_path / "missing"), *base, *weights], capsys, "input")
    _fails(["features", clip, *base[:3], "resnet9000", "--quiet", *weights], capsys, "--backbone")
    _fails(["features", clip, *base, *weights, "--frames", "0"], capsys, "--frames")
    _fails(["features", clip, *base, *weights, "--start", "8"], capsys, "--start")
    _fails(["features", clip, *base, *weights, "--frames", "9"], capsys, "--frames")
    _fails(["features", clip, *base, *weights, "--chunk-frames", "0"], capsys, "--chunk-frames")
    _fails(["features", clip, *base, "--weights", str(tmp_path / "nothing")], capsys, "--weights")
    _fails(["features", clip, *base, *weights, "--mode", "sideways"], capsys, "mode")
    if "default" not in bundled_names("videoanyup"):
        _fails(["features", clip, *base], capsys, "--weights")
    (tmp_path / "o").mkdir()  # an empty folder counts as absent (it is filled in place); one with a file does not
    (tmp_path / "o" / "mine.txt").write_text("mine")
    _fails(["features", clip, *base, *weights], capsys, "already exists")
    with pytest.raises(SystemExit) as exit_info:
        main(["features", clip, *base, *weights, "--size", "0x5"])
    assert exit_info.value.code == 2 and "--size" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
