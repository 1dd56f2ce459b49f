"""Every command writes only through the writer (`output_guard` and its parts), proven by watching the writes.

The commands are enumerated from the command line's own parser, so a new command fails this test until it is
run here or listed, with its reason, in `NOT_RUN`. Each runs in this process under a Python audit hook
(PEP 578) that records every file system change under the output area: files opened for writing, folders
made, renames, links, removals, mode changes. Each change must either happen inside a writer's hidden
temporary (`.NAME.XXXXXXXX.partial…`, the scratch space that becomes the output whole or is removed), or be
made by the writer's own code: the innermost frame of the project that makes it is in one of its modules.
Writes done by C libraries (PyAV's encoder) are not seen; they go to the temporary the writer made.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import videoanyup
import videoanyup.backbones
import videoanyup.tasks
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.cli import build_parser, main
from videoanyup.tasks.output_rename import TEMPORARY

from conftest import save_tiny_basicavsr, write_synthetic_clip  # noqa: E402

WRITER_MODULES = {"output_guard.py", "output_rename.py", "output_lock.py", "output_tags.py", "output_errors.py"}
PROJECT = [Path(m.__file__).resolve().parent for m in (videoanyup, videoanyup.tasks, videoanyup.backbones)]
TASKS = Path(videoanyup.tasks.__file__).resolve().parent
NOT_RUN = {  # command → why it is not run here
    "train": "LightningCLI training: checkpoints and logs in its run folder, written by Lightning",
    "train-upsampler": "LightningCLI training: checkpoints and logs in its run folder, written by Lightning",
    "train-flow": "SPyNet pretraining: checkpoints, logs and exported weights in its run folder (Lightning, checkpoint.py)",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.link", "os.symlink", "os.truncate", "os.chmod",
          "os.chown", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.utime"}


class Watch:
    """An audit hook (installed once: hooks cannot be removed) that records the changes under `self.area`."""

    def __init__(self) -> None:
        self.area: Path | None = None
        self.changes: list[tuple[str, Path, str | None]] = []  # (event, path, the project file that made it)
        sys.addaudithook(self)

    @staticmethod
    def _paths(event: str, args: tuple) -> list:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            return [path] if writing else []
        if event in ("os.rename", "os.link", "os.symlink", "shutil.copyfile", "shutil.move"):
            return [args[0], args[1]] if event != "shutil.copyfile" else [args[1]]
        return [args[0]] if event in EVENTS else []

    @staticmethod
    def _maker() -> str | None:
        frame = sys._getframe(2)
        while frame is not None:
            file = Path(frame.f_code.co_filename)
            if any(root in file.parents for root in PROJECT):
                return file.name if file.parent == TASKS else str(file)
            frame = frame.f_back
        return None

    def __call__(self, event: str, args: tuple) -> None:
        if self.area is None or (event != "open" and event not in EVENTS):
            return
        for path in self._paths(event, args):
            if isinstance(path, int) or path is None:
                continue
            path = Path(os.path.abspath(os.fsdecode(path)))
            if self.area in (path, *path.parents):
                self.changes.append((event, path, self._maker()))

    def run(self, area: Path, argv: list[str]) -> int:
        self.area, self.changes = area.resolve(), []
        try:
            return main(argv)
        finally:
            self.area = None


@pytest.fixture(scope="module")
def watch():
    return Watch()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from test_probes import write_davis

    root = tmp_path_factory.mktemp("commands")
    save_tiny_basicavsr(root / "weights")
    VideoAnyUp.from_config("tiny").save_pretrained(root / "feature_weights")
    write_synthetic_clip(root / "clip.mp4", frames=3, height=24, width=32, image="coffee")
    write_synthetic_clip(root / "ds" / "a.mp4", frames=2, height=28, width=42, image="astronaut")
    write_synthetic_clip(root / "ds" / "b", frames=2, height=28, width=42, image="chelsea")
    write_davis(root / "davis", ["alpha", "beta"], frames=3)
    return root


def runs(root: Path, out: Path) -> dict[str, list[list[str]]]:
    """Each command once or more, with every output it can write, into `out`."""
    up = ["--weights", str(root / "weights"), "--quiet"]
    features = ["--backbone", "dinov2_vits14", "--random-backbone", "--upsampler", "none", "--quiet", "--threads", "1"]
    return {
        "upscale": [["upscale", str(root / "clip.mp4"), str(out / "new" / "o.mp4"), "--scale", "2", *up],
                    ["upscale", str(root / "clip.mp4"), str(out / "new" / "o.mp4"), "--scale", "1.5", "--overwrite", *up],
                    ["upscale", str(root / "clip.mp4"), str(out / "frames"), "--scale", "2", *up],
                    ["upscale", str(root / "clip.mp4"), str(out / "o.gif"), "--scale", "2", "--fps", "10", *up]],
        "evaluate": [["evaluate", "--data", str(root / "clip.mp4"), "--scales", "2", "--weights", "none", "--quiet",
                      "--json", str(out / "r.json"), "--figures", str(out / "figs")],
                     ["evaluate", "--data", str(root / "clip.mp4"), "--scales", "2", "--weights", "none", "--quiet",
                      "--json", str(out / "r.json"), "--figures", str(out / "figs"), "--overwrite"]],
        "demo": [["demo", "--pixels", "--input", str(root / "clip.mp4"), "--scale", "2", "--frames", "2",
                  "--out", str(out / "demo"), *up],
                 ["demo", "--input", str(root / "clip.mp4"), "--frames", "2", "--short-side", "28", "--random-backbone",
                  "--weights", str(root / "feature_weights"), "--out", str(out / "feature_demo"), "--quiet"]],
        "probe": [["probe", "--task", "vos", "--train", str(root / "davis"), "--train-seqs", "alpha", "--test",
                   str(root / "davis"), "--test-seqs", "beta", "--backbone", "dinov2_vits14", "--random-backbone",
                   "--upsampler", "bilinear", "--frames-per-seq", "3", "--short-side", "42", "--pixels", "64",
                   "--steps", "5", "--json", str(out / "vos.json"), "--figures", str(out / "pca"), "--quiet"]],
        "features": [["features", str(root / "clip.mp4"), "-o", str(out / "one"), *features],
                     ["features", str(root / "ds"), "-o", str(out / "set"), *features, "--accelerator", "cpu"],
                     ["features", str(root / "ds"), "-o", str(out / "set"), *features, "--accelerator", "cpu",
                      "--short-side", "28", "--overwrite"]],
    }


def test_every_command_is_run_here_or_listed_with_its_reason(tmp_path):
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands == set(runs(tmp_path, tmp_path)) | set(NOT_RUN)


@pytest.mark.parametrize("command", ["upscale", "evaluate", "demo", "probe", "features"])
def test_every_command_writes_only_through_the_writer(watch, inputs, tmp_path, command):
    before = {p: p.stat().st_mtime_ns for p in inputs.rglob("*")}
    for argv in runs(inputs, tmp_path)[command]:
        assert watch.run(tmp_path, argv) == 0, argv
        assert watch.changes, f"{argv}: nothing written"
        for event, path, maker in watch.changes:
            scratch = any(TEMPORARY.match(part) for part in path.relative_to(tmp_path).parts[:-1])
            assert scratch or maker in WRITER_MODULES, f"{argv}: {event} {path} by {maker}, not by the writer"
    assert {p: p.stat().st_mtime_ns for p in inputs.rglob("*")} == before  # the inputs are untouched
    hidden = [p for p in tmp_path.rglob(".*") if TEMPORARY.match(p.name)]
    assert not hidden, hidden  # and no temporary is left
