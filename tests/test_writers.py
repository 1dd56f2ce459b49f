"""Every output under one rule, every failure one line: the cases where a command lost data, went silently
wrong, hung or ended in a traceback (`upscale`, `evaluate`, `probe`, the writers and the API's size guard).

Each test pins one case: it fails on the code before the shared writer (`output_guard`) and passes after.
The `features` cases are in test_writers_features.py, the enumeration of the commands in
test_writers_commands.py and the property-based test in test_writers_property.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.cli import main
from videoanyup.tasks.video_io import VideoError, VideoWriter, probe

from conftest import SLOW_UPSCALE, TINY_BASICAVSR as TINY, save_tiny_basicavsr  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("writers")
    save_tiny_basicavsr(root / "weights")
    write_synthetic_clip(root / "clip.mp4", frames=3, height=12, width=16, image="coffee")
    write_synthetic_clip(root / "frames", frames=3, height=12, width=16, image="rocket")
    return root


def weights(root) -> list[str]:
    return ["--weights", str(root / "weights"), "--quiet"]


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_line(err: str, *words: str) -> str:
    """The error's last line, after checking that there is no traceback and that it holds every one of `words`."""
    assert "Traceback" not in err, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert all(word in last for word in words), last
    return last


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if `upscale` starts computing frames (the check had to come before the work)."""
    import videoanyup.tasks.avsr.upscale as upscale

    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the check")

    monkeypatch.setattr(upscale, "upscale_frames", refuse)


# -- data loss -------------------------------------------------------------------------------------------
def test_evaluate_json_never_replaces_its_input_or_a_foreign_file(setup, tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    clip.write_bytes((setup / "clip.mp4").read_bytes())
    base = ["evaluate", "--data", str(clip), "--scales", "2", "--frames", "3", "--weights", "none", "--crop-border", "0", "--quiet"]
    for extra in ([], ["--overwrite"]):
        code, err = run_cli([*base, "--json", str(clip), *extra], capsys)
        assert code == 2 and clip.read_bytes() == (setup / "clip.mp4").read_bytes()
        one_line(err, "is the input", str(clip))
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"mine": true}\n')
    for extra, words in (([], "already exists"), (["--overwrite"], "not written by it")):
        code, err = run_cli([*base, "--json", str(theirs), *extra], capsys)
        assert code == 2 and theirs.read_text() == '{"mine": true}\n'
        one_line(err, words, str(theirs))
    assert main([*base, "--json", str(tmp_path / "r.json")]) == 0  # its own JSON: replaced with --overwrite only
    assert main([*base, "--json", str(tmp_path / "r.json"), "--overwrite", "--scales", "3"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["scales"] == ["x3"]


def test_evaluate_figures_never_replace_a_users_file(setup, tmp_path, capsys):
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "psnr_vs_scale.png").write_bytes(b"the user's picture")
    base = ["evaluate", "--data", str(setup / "frames"), "--scales", "2", "--weights", "none", "--crop-border", "0", "--quiet",
            "--figures", str(figures)]
    for extra in ([], ["--overwrite"]):
        code, err = run_cli([*base, *extra], capsys)
        assert code == 2 and (figures / "psnr_vs_scale.png").read_bytes() == b"the user's picture"
        one_line(err, str(figures))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs"] and [p.name for p in figures.iterdir()] == ["psnr_vs_scale.png"]


def test_probe_json_never_replaces_an_input_frame(tmp_path, capsys):
    from test_probes import write_davis

    davis = write_davis(tmp_path / "davis", ["alpha", "beta"], frames=3)
    frame = davis / "JPEGImages" / "alpha" / "00000.jpg"
    before = frame.read_bytes()
    for extra in ([], ["--overwrite"]):  # a run that would complete: the frame must be refused as its output
        code, err = run_cli(["probe", "--task", "vos", "--train", str(davis), "--train-seqs", "alpha", "--test", str(davis),
                             "--test-seqs", "beta", "--backbone", "dinov2_vits14", "--random-backbone", "--upsampler",
                             "bilinear", "--frames-per-seq", "3", "--short-side", "42", "--pixels", "64", "--steps", "5",
                             "--json", str(frame), "--quiet", *extra], capsys)
        assert code == 2 and frame.read_bytes() == before
        one_line(err, str(frame))


def test_a_file_that_appears_at_the_target_during_the_run_is_kept(tmp_path):
    target = tmp_path / "out.gif"
    with pytest.raises(ValueError, match="appeared while this run was writing"):
        with VideoWriter(target, fps=10) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            target.write_bytes(b"arrived during the run")
    assert target.read_bytes() == b"arrived during the run"
    assert [p.name for p in tmp_path.iterdir()] == ["out.gif"]


# -- silently wrong ------------------------------------------------------------------------------------
def test_frame_rates_outside_what_containers_store_are_refused(setup, tmp_path, capsys):
    for fps in ("1e9", "1e-9", "2000"):
        with pytest.raises(SystemExit) as exit_info:
            main(["upscale", str(setup / "clip.mp4"), str(tmp_path / "o.mp4"), "--scale", "2", "--fps", fps, *weights(setup)])
        assert exit_info.value.code == 2 and "--fps takes a frame rate from 0.01 to 1000" in capsys.readouterr().err
    for fps, suffix in ((1e9, ".mp4"), (1e-9, ".mp4"), (240, ".gif")):
        with pytest.raises(VideoError, match="fps=.* must be a frame rate from 0.01 to"):
            VideoWriter(tmp_path / f"o{suffix}", fps=fps)
    code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(tmp_path / "o.gif"), "--scale", "2", "--fps", "240",
                         *weights(setup)], capsys)
    assert code == 2
    one_line(err, "for a GIF")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_frames_must_be_positive(setup, capsys):
    from videoanyup.tasks.avsr.evaluate import evaluate

    for frames in ("-1", "0"):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "--data", str(setup / "frames"), "--scales", "2", "--frames", frames, "--weights", "none"])
        assert exit_info.value.code == 2 and "--frames takes an integer ≥ 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--frames must be an integer ≥ 1"):
        evaluate([setup / "frames"], [(2.0, 2.0)], model=None, frames=-1, progress=False)


def test_a_scale_that_makes_no_pixel_is_refused(setup, tmp_path, capsys, no_work):
    code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(tmp_path / "o.mp4"), "--scale", "1e-9", *weights(setup)],
                        capsys)
    assert code == 2
    one_line(err, "--scale", "under one pixel")
    model = BasicAVSR.from_config("lite", **TINY)
    with pytest.raises(ValueError, match=r"scale=1e-09 makes the 6×8 input .* under one pixel"):
        model(torch.rand(1, 2, 3, 6, 8), scale=1e-9)
    assert list(tmp_path.iterdir()) == []


# -- tracebacks where a message belongs ----------------------------------------------------------------
def test_a_255_byte_output_name_is_written_and_a_longer_one_refused_before_the_work(setup, tmp_path, capsys,
                                                                                   monkeypatch):
    for name in ("v" * 251 + ".mp4", "f" * 255):  # the longest legal names: their temporaries must fit too
        assert main(["upscale", str(setup / "clip.mp4"), str(tmp_path / name), "--scale", "2", *weights(setup)]) == 0
        assert probe(tmp_path / name).num_frames == 3
    assert main(["evaluate", "--data", str(setup / "frames"), "--scales", "2", "--weights", "none", "--crop-border", "0", "--quiet",
                 "--json", str(tmp_path / ("j" * 250 + ".json"))]) == 0
    assert main(["upscale", str(setup / "clip.mp4"), str(tmp_path / name), "--scale", "2", "--overwrite", *weights(setup)]) == 0
    assert sorted(len(p.name) for p in tmp_path.iterdir()) == [255, 255, 255]  # nothing hidden left
    import videoanyup.tasks.avsr.upscale as upscale

    monkeypatch.setattr(upscale, "upscale_frames", None)  # the work must not start
    long = tmp_path / ("w" * 252 + ".mp4")
    code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(long), "--scale", "2", *weights(setup)], capsys)
    assert code == 2
    one_line(err, repr(str(long)), "name too long", "255 bytes")
    assert len(list(tmp_path.iterdir())) == 3


CAUSES = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
          errno.ENOSPC: "no space left on the device", errno.ENAMETOOLONG: "name too long", errno.EBUSY: "busy"}


@pytest.mark.parametrize("code", sorted(CAUSES), ids=[errno.errorcode[c] for c in sorted(CAUSES)])
@pytest.mark.parametrize("output", ["o.mp4", "frames", "r.json"])
def test_system_errors_at_the_final_rename_are_one_line_and_leave_nothing(setup, tmp_path, capsys, monkeypatch, code,
                                                                          output):
    target = tmp_path / "new" / output
    real_replace, real_link = os.replace, os.link

    def refused(real):
        def call(src, dst, *args, **kwargs):
            if Path(dst) == target or Path(dst).parent == target:
                raise OSError(code, os.strerror(code), str(dst))
            return real(src, dst, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", refused(real_replace))
    monkeypatch.setattr(os, "rename", refused(os.rename))
    monkeypatch.setattr(os, "link", refused(real_link))
    if output == "r.json":
        argv = ["evaluate", "--data", str(setup / "frames"), "--scales", "2", "--weights", "none", "--crop-border", "0", "--quiet",
                "--json", str(target)]
    else:
        argv = ["upscale", str(setup / "clip.mp4"), str(target), "--scale", "2", *weights(setup)]
    status, err = run_cli(argv, capsys)
    assert status == 2
    one_line(err, repr(str(target)), CAUSES[code])
    assert list(tmp_path.iterdir()) == []  # no temporary, and the folder the run created is gone


def test_read_only_unwritable_and_full_locations_are_refused_before_the_work(setup, tmp_path, capsys, monkeypatch,
                                                                             no_work):
    from videoanyup.tasks import output_errors

    target = tmp_path / "o.mp4"
    argv = ["upscale", str(setup / "clip.mp4"), str(target), "--scale", "2", *weights(setup)]
    real_statvfs = os.statvfs

    class ReadOnly:
        def __init__(self, path):
            self.f_flag = real_statvfs(path).f_flag | os.ST_RDONLY

    with monkeypatch.context() as patch:
        patch.setattr(output_errors.os, "statvfs", ReadOnly)
        code, err = run_cli(argv, capsys)
    assert code == 2
    one_line(err, repr(str(target)), "read-only file system", repr(str(tmp_path)))
    with monkeypatch.context() as patch:
        patch.setattr(output_errors.os, "access", lambda path, mode: False)
        code, err = run_cli(argv, capsys)
    assert code == 2
    one_line(err, repr(str(target)), "permission denied", repr(str(tmp_path)))
    with monkeypatch.context() as patch:
        patch.setattr(output_errors.shutil, "disk_usage", lambda path: type("usage", (), {"free": 0})())
        code, err = run_cli(argv, capsys)
    assert code == 2
    one_line(err, repr(str(target)), "no space left", "needs about", "0 GB is free")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into any folder")
def test_a_folder_without_write_permission_is_refused_before_the_work(setup, tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(locked / "o.mp4"), "--scale", "2", *weights(setup)],
                            capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2
    one_line(err, repr(str(locked / "o.mp4")), "permission denied")


def test_a_full_disk_during_the_work_is_one_line_and_leaves_nothing(setup, tmp_path, capsys, monkeypatch):
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    target = tmp_path / "deep" / "frames"
    code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(target), "--scale", "2", *weights(setup)], capsys)
    assert code == 2
    one_line(err, repr(str(target)), "no space left on the device", "GB free there now")
    assert list(tmp_path.iterdir()) == []


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares `width × height` RGB pixels, with almost no image data (a decompression bomb's
    header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_a_huge_png_header_meets_the_tools_own_limit(tmp_path, capsys, setup):
    from videoanyup.tasks import frame_folder

    folder = tmp_path / "bomb"
    folder.mkdir()
    _png_header(folder / "00000.png", 20000, 20000)  # 400 megapixels: PIL's own limit refuses it at open
    assert frame_folder.frame_size(folder / "00000.png") == (20000, 20000)  # headers are read at any size
    code, err = run_cli(["upscale", str(folder), str(tmp_path / "o.mp4"), "--scale", "2", *weights(setup)], capsys)
    assert code == 2
    one_line(err, "--max-pixels")
    code, err = run_cli(["upscale", str(folder), str(tmp_path / "o.mp4"), "--size", "16x16", "--max-pixels", "500000000",
                         *weights(setup)], capsys)  # raised: decoded, and found truncated
    assert code == 2
    assert "DecompressionBomb" not in one_line(err, "00000.png")
    with pytest.raises(frame_folder.FrameError, match="above the limit --max-pixels 1,000,000"):
        frame_folder.read_frame(folder / "00000.png", 10**6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb"]


def test_a_scale_that_overflows_is_one_line(setup, tmp_path, capsys, no_work):
    code, err = run_cli(["upscale", str(setup / "clip.mp4"), str(tmp_path / "o.mp4"), "--scale", "1e308x1e308",
                         *weights(setup)], capsys)
    assert code == 2
    one_line(err, "--scale", "too large")
    with pytest.raises(ValueError, match="too large"):
        BasicAVSR.from_config("lite", **TINY)(torch.rand(1, 1, 3, 6, 8), scale=1e308)


def test_an_empty_mount_point_is_filled_in_place(setup, tmp_path, monkeypatch):
    mount = tmp_path / "mnt"
    mount.mkdir()
    mount.chmod(0o750)
    inode = mount.stat().st_ino
    real_ismount, real_replace, real_rename = os.path.ismount, os.replace, os.rename

    def busy(real):  # renaming anything onto a mount point fails with EBUSY
        def call(src, dst, *args, **kwargs):
            if Path(dst) == mount:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(dst))
            return real(src, dst, *args, **kwargs)
        return call

    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == mount or real_ismount(path))
    monkeypatch.setattr(os, "replace", busy(real_replace))
    monkeypatch.setattr(os, "rename", busy(real_rename))
    assert main(["upscale", str(setup / "clip.mp4"), str(mount), "--scale", "2", *weights(setup)]) == 0
    assert probe(mount).num_frames == 3 and mount.stat().st_ino == inode
    assert stat.S_IMODE(mount.stat().st_mode) == 0o750
    assert main(["upscale", str(setup / "clip.mp4"), str(mount), "--scale", "1.5", "--overwrite", *weights(setup)]) == 0
    assert probe(mount).height == 18 and mount.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["mnt"]


def _python(code: str, *args: str) -> subprocess.Popen:
    """A fresh interpreter running `code` with Ctrl-C delivered as in a terminal (a background parent may ignore it)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.6])
def test_ctrl_c_during_start_up_is_one_line(setup, tmp_path, delay):
    """Wherever the start-up is (imports, parsing, loading the weights), Ctrl-C ends with one line and 130."""
    process = _python("import runpy; runpy.run_module('videoanyup.tasks.cli', run_name='__main__')", "upscale",
                      str(setup / "clip.mp4"), str(tmp_path / "o.mp4"), "--scale", "2", *weights(setup))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:  # the whole run fitted into the delay
        return
    assert process.returncode == 130, err
    assert one_line(err) == "videoanyup upscale: interrupted (Ctrl-C)"
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_that_breaks_an_import_half_way_still_ends_as_an_interrupt(monkeypatch, capsys):
    """Ctrl-C inside an import can leave a module half-built; the error that surfaces is then another one (numpy's
    lazy `linalg` recursing). The command line still ends with the interrupt's one line and 130."""
    import videoanyup.tasks.cli as cli

    def interrupted_import(argv, name):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            pass  # swallowed half-way, as an interrupted import can be
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "_run", interrupted_import)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with it ignored
    try:
        assert cli.main(["upscale"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err.strip() == "videoanyup upscale: interrupted (Ctrl-C)"
    monkeypatch.setattr(cli, "_run", lambda argv, name: (_ for _ in ()).throw(RecursionError("a real one")))
    with pytest.raises(RecursionError):  # without an interrupt, an error is not called one
        cli.main(["upscale"])


def test_an_unknown_preset_is_refused_before_the_work(setup, tmp_path, capsys, no_work):
    from videoanyup.tasks.avsr.upscale import upscale
    from videoanyup.tasks.avsr.weights import load_weights

    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(setup / "clip.mp4"), str(tmp_path / "o.mp4"), "--scale", "2", "--preset", "bogus",
              *weights(setup)])
    assert exit_info.value.code == 2 and "--preset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'bogus' is not an encoder preset; use one of ultrafast"):
        upscale(setup / "clip.mp4", tmp_path / "o.mp4", load_weights(setup / "weights"), scale=2, preset="bogus",
                progress=False)
    with pytest.raises(VideoError, match="preset='bogus'"):
        VideoWriter(tmp_path / "o.mp4", preset="bogus")
    assert list(tmp_path.iterdir()) == []


# -- the API's size guard ------------------------------------------------------------------------------
def test_the_api_refuses_absurd_output_sizes_at_once():
    from videoanyup.models.videoanyup import VideoAnyUp

    model = BasicAVSR.from_config("lite", **TINY)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"16000000×24000000 .* above max_pixels=33,177,600 .* pass max_pixels="):
        model(torch.rand(1, 3, 3, 16, 24), scale=1e6)
    with pytest.raises(ValueError, match="16×24 = 384 pixels per frame, above max_pixels=383"):
        model(torch.rand(1, 1, 3, 4, 6), scale=4, max_pixels=383)
    assert model(torch.rand(1, 1, 3, 4, 6), scale=4, max_pixels=16 * 24).shape == (1, 1, 3, 16, 24)
    with pytest.raises(ValueError, match="max_pixels"):
        model.stream(scale=1e6, mode="unidirectional").push(torch.rand(1, 3, 16, 24))
    net = VideoAnyUp.from_config("tiny")
    feats, video = torch.rand(1, 2, 8, 4, 4), torch.rand(1, 2, 3, 16, 16)
    with pytest.raises(ValueError, match="max_pixels"):
        net(feats, video, scale=1e5)
    with pytest.raises(ValueError, match="max_pixels=99"):
        net(feats, video, size=(10, 10), max_pixels=99)
    assert net(feats, video, size=(10, 10), max_pixels=100).shape == (1, 2, 8, 10, 10)
    with pytest.raises(ValueError, match="max_pixels"):
        net.iter_chunks(feats, video, scale=1e5)
    with pytest.raises(ValueError, match="max_pixels"):
        net.stream(scale=1e5, mode="unidirectional").push(feats[:, 0], video[:, 0])
    assert time.perf_counter() - start < 60  # refused before any work (the unguarded call ran for minutes)


# -- leftovers and permissions ---------------------------------------------------------------------------


def test_sigterm_removes_the_folders_the_run_created(setup, tmp_path):
    process = _python(SLOW_UPSCALE, "upscale", str(setup / "clip.mp4"), str(tmp_path / "new" / "deep" / "o.mp4"),
                      "--scale", "2", *weights(setup))
    lines = []
    try:
        while not lines or "writing" not in lines[-1]:
            lines.append(process.stderr.readline())
            assert lines[-1], "".join(lines) + str(process.communicate())
        deadline = time.monotonic() + 60
        while not (tmp_path / "new" / "deep").is_dir() or not any((tmp_path / "new" / "deep").iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert one_line(err) == "videoanyup upscale: terminated (SIGTERM)"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_empty_output_folder_keeps_its_mode_and_owner(setup, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    target.chmod(0o700)
    before = target.stat()
    assert main(["upscale", str(setup / "clip.mp4"), str(target), "--scale", "2", *weights(setup)]) == 0
    after = target.stat()
    assert stat.S_IMODE(after.st_mode) == 0o700 and (after.st_uid, after.st_gid, after.st_ino) == (
        before.st_uid, before.st_gid, before.st_ino)
    assert probe(target).num_frames == 3
    assert main(["upscale", str(setup / "clip.mp4"), str(target), "--scale", "1.5", "--overwrite", *weights(setup)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o700 and probe(target).height == 18  # a replaced folder: mode kept
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
