"""Issue 15: nothing lost, nothing silently wrong — outputs, overwrite, containers, signals, limits, messages.

Each test pins one defect of the issue: it fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from videoanyup.tasks import output_guard
from videoanyup.tasks.cli import main
from videoanyup.tasks.video_io import VideoWriter, probe

from conftest import SLOW_UPSCALE, save_tiny_basicavsr  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("safety")
    save_tiny_basicavsr(root / "weights")
    write_synthetic_clip(root / "one.mp4", frames=3, height=12, width=16, image="coffee")
    return root


def weights(root):
    return ["--weights", str(root / "weights"), "--quiet"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


# -- 1. --overwrite never deletes the input or files this tool did not write ------------------------
def test_overwrite_refuses_an_output_folder_that_holds_the_input(setup, tmp_path, capsys):
    v = tmp_path / "v"
    v.mkdir()
    (v / "in.mp4").write_bytes((setup / "one.mp4").read_bytes())
    (v / "notes.txt").write_text("x\n")
    before = snapshot(v)
    code, err = run_cli(["upscale", str(v / "in.mp4"), str(v), "--scale", "2", "--overwrite", *weights(setup)], capsys)
    assert code == 2
    assert str(v) in err and str(v / "in.mp4") in err and "holds the input" in err
    assert snapshot(v) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_the_current_folder_and_its_ancestors_are_refused(setup, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.mp4").write_bytes((setup / "one.mp4").read_bytes())
    (tmp_path / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    for output in (".", "..", str(work)):  # the case: `upscale in.mp4 . --overwrite` emptied the folder
        code, err = run_cli(["upscale", "in.mp4", output, "--scale", "2", "--overwrite", *weights(setup)], capsys)
        assert code == 2 and f"output {output!r} holds the input 'in.mp4'" in err, err
    for output in (".", ".."):  # an input elsewhere: still refused
        code, err = run_cli(["upscale", str(setup / "one.mp4"), output, "--scale", "2", "--overwrite", *weights(setup)], capsys)
        assert code == 2 and f"output {output!r} is the current folder" in err, err
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_what_this_tool_wrote(setup, tmp_path, capsys):
    clip, out = str(setup / "one.mp4"), tmp_path / "frames"
    assert main(["upscale", clip, str(out), "--scale", "2", *weights(setup)]) == 0
    listed = json.loads((out / output_guard.MANIFEST).read_text())["files"]
    assert listed == ["00000000.png", "00000001.png", "00000002.png"]
    assert main(["upscale", clip, str(out), "--scale", "1.5", "--overwrite", *weights(setup)]) == 0  # its own output
    assert probe(out).height == 18
    (out / "notes.txt").write_text("someone else's")
    before = snapshot(out)
    code, err = run_cli(["upscale", clip, str(out), "--scale", "2", "--overwrite", *weights(setup)], capsys)
    assert code == 2 and str(out / "notes.txt") in err and "only what videoanyup wrote" in err
    assert snapshot(out) == before

    mine = tmp_path / "mine"  # a folder of the user's, no manifest
    mine.mkdir()
    (mine / "a.png").write_bytes(b"user data")
    code, err = run_cli(["upscale", clip, str(mine), "--scale", "2", "--overwrite", *weights(setup)], capsys)
    assert code == 2 and str(mine / "a.png") in err and "no videoanyup manifest" in err
    assert (mine / "a.png").read_bytes() == b"user data"

    foreign = tmp_path / "theirs.mp4"  # a video another program wrote: no videoanyup tag
    import av

    with av.open(str(foreign), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 12, "yuv420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((12, 16, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = foreign.read_bytes()
    code, err = run_cli(["upscale", clip, str(foreign), "--scale", "2", "--overwrite", *weights(setup)], capsys)
    assert code == 2 and "was not written by it" in err and str(foreign) in err
    assert foreign.read_bytes() == data
    assert main(["upscale", clip, str(tmp_path / "ours.mp4"), "--scale", "2", *weights(setup)]) == 0
    assert main(["upscale", clip, str(tmp_path / "ours.mp4"), "--scale", "3", "--overwrite", *weights(setup)]) == 0
    assert probe(tmp_path / "ours.mp4").height == 36


def test_a_file_that_appears_during_the_run_is_never_deleted(tmp_path):
    """The last step checks the old folder again: a file that arrived during the run fails the run."""
    out = tmp_path / "out"
    with VideoWriter(out) as writer:
        writer.write(np.zeros((4, 6, 3), np.uint8))
    before = snapshot(out)
    with pytest.raises(output_guard.OutputError, match="late.txt"):
        with VideoWriter(out, overwrite=True) as writer:
            writer.write(np.ones((4, 6, 3), np.uint8))
            (out / "late.txt").write_text("arrived during the run")
    assert snapshot(out) == before | {"late.txt": b"arrived during the run"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_put_in_place_keeps_unlisted_files_of_the_old_folder(tmp_path, caplog):
    old, new = tmp_path / "out", tmp_path / "new"
    old.mkdir()
    (old / "a.png").write_bytes(b"old")
    output_guard.write_manifest(old)
    new.mkdir()
    (new / "b.png").write_bytes(b"new")
    output_guard.write_manifest(new)
    real = output_guard.check_replaceable
    output_guard.check_replaceable = lambda target, overwrite: None  # a race: the check passed, then a file came
    try:
        (old / "late.txt").write_text("keep me")
        output_guard.put_in_place(new, old)
    finally:
        output_guard.check_replaceable = real
    assert (old / "b.png").read_bytes() == b"new" and not (old / "a.png").exists()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".out.") and p.name.endswith(".old")]
    assert len(kept) == 1 and [p.name for p in kept[0].iterdir()] == ["late.txt"]
    assert "did not write" in caplog.text


# -- 2. SIGTERM cleans up like Ctrl-C; both end with one line ------------------------------------------


@pytest.mark.parametrize("sig, code, word, output", [
    (signal.SIGTERM, 143, "terminated", "o.mp4"),
    (signal.SIGINT, 130, "interrupted", "frames"),
])
def test_signals_remove_partial_output_and_print_one_line(setup, tmp_path, sig, code, word, output):
    argv = [sys.executable, "-c", SLOW_UPSCALE, "upscale", str(setup / "one.mp4"), str(tmp_path / output), "--scale", "4",
            *weights(setup)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        # Signal only once the run sleeps inside the writer (it says "writing" first), not during its set-up.
        before = []
        while not before or "writing" not in before[-1]:
            before.append(process.stderr.readline())
            assert before[-1], "".join(before) + str(process.communicate())  # "" : the process ended first
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(f".{Path(output).stem}") for p in tmp_path.iterdir()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        err = "".join(before) + err
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, err
    assert list(tmp_path.iterdir()) == []  # no hidden partial file or folder
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1] == f"videoanyup upscale: {word} ({'SIGTERM' if code == 143 else 'Ctrl-C'})"


# -- 5. an output's extension decides its container ----------------------------------------------------
@pytest.mark.parametrize("suffix, container, codec", [
    (".mp4", "mp4", "h264"), (".m4v", "mp4", "h264"), (".mkv", "matroska", "h264"), (".mov", "mov", "h264"),
    (".avi", "avi", "h264"), (".webm", "matroska", "vp9"), (".gif", "gif", "gif"),
])
def test_every_output_container_has_its_own_format(tmp_path, suffix, container, codec):
    import av

    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(4)]
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, fps=20, preset="ultrafast") as writer:
        for frame in clip:
            writer.write(frame)
    with av.open(str(path)) as opened:
        assert container in opened.format.name.split(",")
        assert opened.streams.video[0].codec_context.name == codec
        decoded = [f.to_ndarray(format="rgb24") for f in opened.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].shape == (10, 14, 3)
    assert probe(path).num_frames == 4
    assert output_guard.is_tagged(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    if suffix != ".gif":  # exact RGB in every container but GIF's 256 colours
        with VideoWriter(tmp_path / f"exact{suffix}", fps=20, lossless=True, preset="ultrafast") as writer:
            for frame in clip:
                writer.write(frame)
        with av.open(str(tmp_path / f"exact{suffix}")) as opened:
            assert all(np.array_equal(f.to_ndarray(format="rgb24"), c) for f, c in zip(opened.decode(video=0), clip))


def test_unknown_extensions_are_refused_with_the_accepted_list(setup, tmp_path, capsys):
    for name in ("out.xyz", "clip.v2", "a.png"):
        code, err = run_cli(["upscale", str(setup / "one.mp4"), str(tmp_path / name), "--scale", "2", *weights(setup)], capsys)
        assert code == 2 and repr(str(tmp_path / name)) in err
        assert ".mp4, .m4v, .mkv, .mov, .avi, .webm, .gif" in err and "without an extension" in err
    assert list(tmp_path.iterdir()) == []
    assert main(["upscale", str(setup / "one.mp4"), str(tmp_path / "out.gif"), "--scale", "2", *weights(setup)]) == 0
    assert (tmp_path / "out.gif").is_file() and probe(tmp_path / "out.gif").num_frames == 3


# -- 7. absurd work is refused before it starts -------------------------------------------------------
def test_max_pixels_refuses_before_probing_the_input(setup, tmp_path, capsys, monkeypatch):
    import videoanyup.tasks.avsr.upscale as upscale

    def no_probe(*args, **kwargs):
        raise AssertionError("the input was probed or decoded before the size check")

    monkeypatch.setattr(upscale, "probe", no_probe)
    monkeypatch.setattr(upscale, "iter_frames", no_probe)
    start = time.perf_counter()
    code, err = run_cli(["upscale", str(setup / "one.mp4"), str(tmp_path / "big.mp4"), "--scale", "1000", *weights(setup)], capsys)
    assert code == 2
    assert "12000×16000" in err and "192.0 megapixels" in err and "--max-pixels" in err and "33,177,600" in err
    code, err = run_cli(["upscale", str(setup / "one.mp4"), str(tmp_path / "o"), "--scale", "2", "--max-pixels", "700",
                         *weights(setup)], capsys)
    assert code == 2 and "24×32" in err and "--max-pixels 768" in err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main(["upscale", str(setup / "one.mp4"), str(tmp_path / "o"), "--scale", "2", "--max-pixels", "768", *weights(setup)]) == 0


# -- 8. messages that name their problem ---------------------------------------------------------------
def test_command_line_messages_name_the_option(setup, tmp_path, capsys):
    clip = str(setup / "one.mp4")
    if not torch.cuda.is_available():
        code, err = run_cli(["upscale", clip, str(tmp_path / "o.mp4"), "--scale", "2", "--device", "cuda", *weights(setup)], capsys)
        assert code == 2 and "--device 'cuda'" in err and "no CUDA device" in err
    code, err = run_cli(["upscale", clip, str(tmp_path / "o.mp4"), "--scale", "2", "--device", "tpu7", *weights(setup)], capsys)
    assert code == 2 and "--device 'tpu7'" in err
    (tmp_path / "afile").write_text("x")
    code, err = run_cli(["upscale", clip, str(tmp_path / "afile" / "o.mp4"), "--scale", "2", *weights(setup)], capsys)
    assert code == 2 and f"{str(tmp_path / 'afile')!r} is a file" in err and "Traceback" not in err
    for fps in ("nan", "0", "-5", "inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(["upscale", clip, str(tmp_path / "o.mp4"), "--scale", "2", "--fps", fps, *weights(setup)])
        assert exit_info.value.code == 2
        assert f"--fps takes a finite frame rate > 0, e.g. 25 or 29.97, got {fps!r}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_upscale_fps_zero_is_not_silently_replaced(setup, tmp_path):
    from videoanyup.tasks.avsr.upscale import upscale
    from videoanyup.tasks.avsr.weights import load_weights

    model = load_weights(setup / "weights")
    for fps in (0, float("nan"), -1.0):
        with pytest.raises(ValueError, match=r"--fps must be a finite number > 0"):
            upscale(setup / "one.mp4", tmp_path / "o.mp4", model, scale=2, fps=fps, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- 9. outputs get the permissions of the user's umask ------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_umask_permissions(setup, tmp_path, capsys, umask):
    from videoanyup.tasks.avsr.evaluate import write_json

    old = os.umask(umask)
    try:
        assert main(["upscale", str(setup / "one.mp4"), str(tmp_path / "o.mp4"), "--scale", "2", *weights(setup)]) == 0
        assert main(["upscale", str(setup / "one.mp4"), str(tmp_path / "frames"), "--scale", "2", *weights(setup)]) == 0
        write_json({"a": 1}, tmp_path / "r.json")
    finally:
        os.umask(old)
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "o.mp4").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "frames").stat().st_mode) == folder_mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "frames").iterdir()} == {file_mode}


# -- the same rule in `demo` and in the features folders ----------------------------------------------
def test_demo_replaces_its_own_folder_and_refuses_others(setup, tmp_path, capsys):
    from conftest import write_synthetic_clip

    clip = setup / "demo" / "clip.mp4"
    if not clip.exists():
        write_synthetic_clip(clip, frames=2, height=24, width=32, image="rocket")
    base = ["demo", "--pixels", "--input", str(clip), "--weights", str(setup / "weights"), "--scale", "2",
            "--frames", "2", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "d")]) == 0
    assert main([*base, "--out", str(tmp_path / "d")]) == 0  # replaces its own output
    capsys.readouterr()
    (tmp_path / "d" / "mine.txt").write_text("x")
    code, err = run_cli([*base, "--out", str(tmp_path / "d")], capsys)
    assert code == 2 and str(tmp_path / "d" / "mine.txt") in err and (tmp_path / "d" / "mine.txt").exists()
    code, err = run_cli([*base, "--out", str(setup / "demo")], capsys)
    assert code == 2 and "holds the input" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_features_folders_follow_the_ownership_rule(tmp_path):
    from videoanyup.tasks.features.shards import INDEX_FILE, partial_folder, write_index

    out = tmp_path / "feats"
    with partial_folder(out) as tmp:
        write_index(tmp, {"format": "x"})
    assert sorted(p.name for p in out.iterdir()) == [output_guard.MANIFEST, INDEX_FILE]
    with partial_folder(out, overwrite=True) as tmp:  # its own output: replaced
        write_index(tmp, {"format": "y"})
    (out / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        with partial_folder(out, overwrite=True) as tmp:
            write_index(tmp, {"format": "z"})
    assert json.loads((out / INDEX_FILE).read_text()) == {"format": "y"} and (out / "notes.txt").exists()
    with pytest.raises(ValueError, match="holds the input"):
        with partial_folder(tmp_path, overwrite=True, inputs=(tmp_path / "feats" / "notes.txt",)):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats"]
