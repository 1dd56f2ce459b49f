"""`videoanyup features` on a dataset under the writers' rule: its output folder checked like every output, one
run at a time, a manifest that is the truth at every moment, Ctrl-C as everywhere, and `--overwrite` that
removes only what the index lists.

Offline and small: two tiny clips, a random DINOv2 ViT-S/14, `--upsampler none` (the backbone's own features).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from videoanyup.tasks.cli import main
from videoanyup.tasks.features import FeatureDataset, load_features

from conftest import write_synthetic_clip  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers_features")
    torch.manual_seed(0)
    write_synthetic_clip(root / "ds" / "a.mp4", frames=3, height=28, width=42, image="astronaut")
    write_synthetic_clip(root / "ds" / "b.mp4", frames=2, height=28, width=42, image="coffee")
    return root


def args(dataset, out, *extra) -> list[str]:
    return ["features", str(dataset / "ds"), "-o", str(out), "--backbone", "dinov2_vits14", "--random-backbone",
            "--upsampler", "none", "--quiet", "--accelerator", "cpu", "--threads", "1", *extra]


def manifest(out) -> dict[str, dict]:
    return {line["video"]: line for line in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def last_line(err: str, whole: bool = False) -> str:
    """The last line of stderr; with `whole`, after checking that it holds no traceback (in-process runs may
    show Lightning's logging errors about a stream an earlier test closed, so only subprocesses are checked)."""
    assert not whole or "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()][-1]


def test_overwrite_with_changed_settings_keeps_a_users_file_in_a_video_folder(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args(dataset, out)) == 0
    (out / "videos" / "a" / "mine.txt").write_text("the user's notes")
    assert main(args(dataset, out, "--short-side", "28", "--overwrite")) == 1  # a cannot be replaced: it holds mine.txt
    assert (out / "videos" / "a" / "mine.txt").read_text() == "the user's notes"
    assert sorted(p.name for p in (out / "videos" / "a").iterdir()) == ["mine.txt"]  # only the index's files went
    lines = manifest(out)
    assert lines["a"]["status"] == "failed" and "mine.txt" in lines["a"]["error"]
    assert lines["b"]["status"] == "done" and load_features(out, video="b").shape[0] == 2
    assert "1 of 2 videos failed: a" in capsys.readouterr().err


def test_an_output_folder_that_is_not_ours_is_refused(dataset, tmp_path, capsys, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "manifest.jsonl").write_text("the user's own manifest\n")
    assert main(args(dataset, project)) == 2
    assert "is not an earlier output of `videoanyup features`" in last_line(capsys.readouterr().err)
    assert [p.name for p in project.iterdir()] == ["manifest.jsonl"]
    assert (project / "manifest.jsonl").read_text() == "the user's own manifest\n"
    monkeypatch.chdir(project)
    assert main(args(dataset, ".")) == 2
    assert "is the current folder" in last_line(capsys.readouterr().err)
    assert [p.name for p in project.iterdir()] == ["manifest.jsonl"]


SLOW_RUN = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal
from videoanyup.tasks.features import predict
real = predict.FeatureExtraction.predict_step
def slow(self, item, batch_idx):
    record = real(self, item, batch_idx)
    if record.get("status") == "done":
        print("finished " + record["video"], file=sys.stderr, flush=True)
        time.sleep(120)
    return record
predict.FeatureExtraction.predict_step = slow
from videoanyup.tasks.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_one_run_at_a_time_readers_see_each_finished_video_and_ctrl_c_exits_130(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    first = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args(dataset, out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not lines or not lines[-1].startswith("finished"):
            lines.append(first.stderr.readline())
            assert lines[-1], "".join(lines) + str(first.communicate())
        assert lines[-1].strip() == "finished a"  # the longest clip; the run now sleeps before b
        # readers see the finished video at once (the manifest is appended as each video completes)
        assert load_features(out, video="a").shape == (3, 384, 2, 3)
        assert [item["video"] for item in FeatureDataset(out)] == ["a"]
        # a second run on the same OUT stops at once, naming the first
        assert main(args(dataset, out)) == 2
        assert f"pid {first.pid}" in last_line(capsys.readouterr().err)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert last_line(err, whole=True) == "videoanyup features: interrupted (Ctrl-C)"
    assert set(manifest(out)) == {"a"} and sorted(p.name for p in (out / "videos").iterdir()) == ["a"]
    assert main(args(dataset, out)) == 0  # the lock went with the process; a is kept, b done
    lines = manifest(out)
    assert lines["a"]["resumed"] and not lines["b"]["resumed"]


def test_a_failed_rerun_keeps_the_intact_folder_readable(dataset, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "ds").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (data / "ds" / name).write_bytes((dataset / "ds" / name).read_bytes())
    out = tmp_path / "out"
    assert main(args(data, out)) == 0
    before = np.array(load_features(out, video="b"))
    (data / "ds" / "b.mp4").write_bytes(b"\x00 now corrupt " * 64)
    assert main(args(data, out, "--overwrite")) == 1
    assert "b failed" in capsys.readouterr().err
    line = manifest(out)["b"]
    assert line["status"] == "done" and "corrupt" in line["rerun_error"]  # the old folder is still there, and says so
    assert np.array_equal(load_features(out, video="b"), before)
    assert [item["video"] for item in FeatureDataset(out)] == ["a", "b"]
