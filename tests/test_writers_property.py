"""Property-based tests of the writers (Hypothesis): random sequences of runs, kills at random points, files of
the user's at random places, files that appear during a run, and concurrent starts.

Every run is a forked child, so that it can die on the spot (`os._exit`: what SIGKILL leaves) as well as
unwind (an exception: what Ctrl-C and SIGTERM do). After each step:

- no file of the user's changed or vanished;
- a run that wrote its output left it whole (every frame, its own content) and changed nothing but the
  output and the folders above it; a run that did not left the previous tree exactly, plus, only when it
  was killed on the spot, hidden temporaries and the folders holding them;
- in a dataset output, every video the manifest lists as done is complete on disk and readable
  (`finished_videos`, `load_features`, `FeatureDataset`), and every video that finished is listed, but
  the one a kill caught between its rename and its line.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from videoanyup.tasks.video_io import VideoWriter, iter_frames, probe  # noqa: E402

TARGETS = ["a.gif", "f", "sub/deep/b.gif", "sub/g"]  # files and folders, some under folders not yet made
SPOTS = ["a.gif", "f/u.txt", "sub/u.txt", "sub/deep/b.gif", "sub/g/u.txt", "u.txt", "sub/deep/u.txt"]
MISSING = object()
EXAMPLES = int(os.environ.get("VIDEOANYUP_PROPERTY_EXAMPLES", "25"))  # raise it for a longer search
CHECKS = settings(max_examples=EXAMPLES, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Killed(BaseException):
    """What Ctrl-C / SIGTERM look like inside a run: an exception that unwinds it."""


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root`: relative path → bytes (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def is_hidden_temporary(relative: str) -> bool:
    return any(part.startswith(".") and (".partial" in part or part.endswith(".old")) for part in Path(relative).parts)


def placeable(root: Path, spot: str) -> bool:
    path = root / spot
    return not os.path.lexists(path) and not any(p.exists() and not p.is_dir() for p in path.parents)


def place(root: Path, spot: str, text: bytes) -> None:
    (root / spot).parent.mkdir(parents=True, exist_ok=True)
    (root / spot).write_bytes(text)


def fork(body, *args) -> int:
    """Run `body(*args)` in a forked child; it ends with 0 (done), 2 (refused), 3 (unwound) or 9 (killed)."""
    pid = os.fork()
    if pid:
        return pid
    try:
        body(*args)
        os._exit(0)
    except ValueError:
        os._exit(2)
    except Killed:
        os._exit(3)
    except BaseException:  # noqa: BLE001 - anything else fails the test, with its traceback
        traceback.print_exc()
        os._exit(1)


def status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# -- single outputs: video files and frame folders -------------------------------------------------------
def run(root: Path, target: str, overwrite: bool, payload: tuple[int, int], kill: str | None, point: int,
        race: str | None, gate: tuple[int, int] | None) -> None:
    """One run writing `payload` = (pixel value, frame count) to `target`; at frame `point` it may wait for the
    other run (`gate`: both are past their checks), let a user's file appear (`race`), and be killed."""
    value, count = payload
    try:
        with VideoWriter(root / target, fps=10, overwrite=overwrite) as writer:
            for index in range(count):
                if index == min(point, count - 1):
                    if gate is not None:
                        os.write(gate[1], b"r")
                        gate = os.read(gate[0], 1) and None
                    if race is not None and placeable(root, race):
                        place(root, race, b"race")
                        raced(root).write_text(race)  # tells the test that this file is the user's
                    if kill == "hard":
                        os._exit(9)
                    if kill == "soft":
                        raise Killed
                writer.write(np.full((8, 8, 3), value, np.uint8))
    finally:
        if gate is not None:  # refused before the meeting point: let the other run go on
            os.write(gate[1], b"x")


def raced(root: Path) -> Path:
    """Where a run notes (outside the tree) the file of the user's it made appear during the run."""
    return root.parent / f"{root.name}.raced"


def content(path: Path) -> tuple[int, int]:
    """(frame count, first pixel value: 0 or 255, which GIF's palette keeps apart) of an output: which run wrote it."""
    return probe(path).num_frames, 255 * int(next(iter_frames(path))[0, 0, 0] > 127)


run_step = st.tuples(st.just("run"), st.sampled_from(TARGETS), st.booleans(), st.sampled_from([None, "soft", "hard"]),
                     st.integers(0, 2), st.one_of(st.none(), st.sampled_from(SPOTS)))
user_step = st.tuples(st.just("user"), st.sampled_from(SPOTS))
together_step = st.tuples(st.just("together"), st.sampled_from(TARGETS), st.booleans(), st.booleans())


@CHECKS
@given(steps=st.lists(st.one_of(run_step, run_step, user_step, together_step), min_size=1, max_size=6))
@example(steps=[("run", "sub/deep/b.gif", False, "soft", 0, None)])  # the folders it made go with it
@example(steps=[("run", "a.gif", True, None, 1, "a.gif")])  # a file appears at the target during the run
@example(steps=[("run", "f", False, None, 0, None), ("user", "f/u.txt"), ("run", "f", True, None, 1, None)])
@example(steps=[("together", "a.gif", False, False), ("together", "sub/g", True, False)])  # concurrent starts
def test_runs_keep_user_files_and_leave_a_whole_output_or_the_previous_one(tmp_path_factory, steps):
    root = tmp_path_factory.mktemp("writers")
    user: dict[str, bytes] = {}  # the user's files: path → bytes
    serial = 0
    for step in steps:
        before = tree(root)
        if step[0] == "user":
            if placeable(root, step[1]):
                place(root, step[1], b"user")
                user[step[1]] = b"user"
            continue
        serial += 1
        if step[0] == "run":
            _, target, overwrite, kill, point, race = step
            payload = (255 * (serial % 2), 2 + serial % 3)
            codes = {payload: status(fork(run, root, target, overwrite, payload, kill, point, race, None))}
            if raced(root).is_file():
                user[raced(root).read_text()] = b"race"
                raced(root).unlink()
        else:  # two runs start together: both pass their checks before either ends
            _, target, overwrite_a, overwrite_b = step
            gates, ready = (os.pipe(), os.pipe()), (os.pipe(), os.pipe())
            payloads = [(0, 2), (255, 3)]
            pids = [fork(run, root, target, ov, pl, None, 1, None, (gate[0], done[1]))
                    for ov, pl, gate, done in zip((overwrite_a, overwrite_b), payloads, gates, ready)]
            for done in ready:
                os.read(done[0], 1)
            for gate in gates:
                os.write(gate[1], b"g")
            codes = {pl: status(pid) for pl, pid in zip(payloads, pids)}
            for fd in (*gates[0], *gates[1], *ready[0], *ready[1]):
                os.close(fd)
        assert all(code in (0, 2, 3, 9) for code in codes.values()), (step, codes)
        after = tree(root)
        for path, data in user.items():
            assert after.get(path, MISSING) == data, (step, path)  # no file of the user's changed
        users = set(user) | {str(p) for u in user for p in Path(u).parents if str(p) != "."}
        written = [pl for pl, code in codes.items() if code == 0]
        allowed = [overwrite] if step[0] == "run" else [overwrite_a, overwrite_b]  # --overwrite of each run
        existed = target in before and (before[target] is not None or any(p.startswith(target + "/") for p in before))
        if existed:  # an output in place already: only a run with --overwrite may replace it
            assert all(ov for (pl, code), ov in zip(codes.items(), allowed) if code == 0), (step, codes)
        if len(written) == 2:  # both wrote: the one without --overwrite first, so the other's is what stays
            assert any(allowed), (step, codes)
            if not all(allowed):
                last = list(codes)[allowed.index(True)]
                assert content(root / target) == (last[1], last[0]), (step, codes)
        if written:  # whole, one run's own, and nothing else changed but the output and the folders above it
            assert content(root / target) in {(count, value) for value, count in written}, (step, codes)
            changed = {p for p in set(before) | set(after) if before.get(p, MISSING) != after.get(p, MISSING)}
            for p in changed - users:
                assert Path(p) == Path(target) or Path(target) in Path(p).parents or Path(p) in Path(target).parents, (step, p)
        else:  # the previous tree; a run killed on the spot may leave hidden temporaries (and their folders)
            assert all(after.get(p, MISSING) == data for p, data in before.items()), (step, codes)
            new = set(after) - set(before) - users
            if 9 in codes.values():
                assert all(is_hidden_temporary(p) or after[p] is None for p in new), (step, new)
            else:
                assert not new, (step, codes, new)


# -- a dataset's manifest against the disk -------------------------------------------------------------
SETTINGS = {"backbone": "b", "backbone_hash": "0", "upsampler": "none", "upsampler_hash": None, "size": None,
            "short_side": None, "mode": None, "precision": "32-true", "save_lr": False}
NAMES = ["a", "b", "c"]


def video(out: Path, name: str, count: int, kill: str | None, point: int) -> None:
    """What a rank does for one video (`predict.FeatureExtraction.predict_step`): the folder, then its line.
    `point` 0: killed while the folder is built; 1: between its rename and its line."""
    from videoanyup.tasks.features import manifest
    from videoanyup.tasks.features.shards import FORMAT, ShardWriter, partial_folder, write_index

    folder = out / "videos" / name
    with partial_folder(folder, overwrite=manifest.read_video_index(folder) is not None) as tmp:
        writer = ShardWriter(tmp, frames=count, frame_shape=(2, 3, 4), shard_frames=2)
        for t in range(count):
            if kill is not None and point == 0 and t == count - 1:
                if kill == "hard":
                    os._exit(9)
                raise Killed
            writer.write(np.full((1, 2, 3, 4), t, np.float32))
        write_index(tmp, {"format": FORMAT, "dataset": manifest.DATASET_FORMAT, "settings": manifest.normalise(SETTINGS),
                          "source": name, "frames": count, "shape": [count, 2, 3, 4], "dtype": "float16",
                          "shards": writer.shards(), "lr": None, "video": name})
    if kill == "hard" and point == 1:
        os._exit(9)
    record = {"video": name, "path": name, "status": "done", "rank": 0, "folder": f"videos/{name}", "frames": count,
              "shape": [count, 2, 3, 4], "dtype": "float16"}
    if hasattr(manifest, "part_file"):  # the layout before: per-rank files, merged at the end of a run
        manifest.append_record(manifest.part_file(out, 0), record)
    else:
        manifest.append_record(out, record)


def reset(out: Path, kill: str | None) -> None:
    """`--overwrite` with changed settings (`predict.FeatureExtraction.on_predict_start`), perhaps killed on the
    spot half-way through the removal (when it reaches video b)."""
    from videoanyup.tasks.features import manifest

    if kill == "hard":
        real = manifest.read_video_index

        def dies_at_b(folder):
            if folder.name == "b":
                os._exit(9)
            return real(folder)

        manifest.read_video_index = dies_at_b
    manifest.remove_owned_outputs(out)
    manifest.write_settings(out, SETTINGS)


def compact(out: Path) -> None:
    from videoanyup.tasks.features import manifest

    manifest.merge_manifest(out)


video_step = st.tuples(st.just("video"), st.sampled_from(NAMES), st.integers(1, 4),
                       st.sampled_from([None, None, "soft", "hard"]), st.integers(0, 1))
other_step = st.one_of(st.tuples(st.just("compact")), st.tuples(st.just("reset"), st.sampled_from([None, "hard"])),
                       st.tuples(st.just("user"), st.sampled_from(NAMES)))


@CHECKS
@given(steps=st.lists(st.one_of(video_step, video_step, other_step), min_size=1, max_size=7))
def test_a_datasets_manifest_agrees_with_the_disk_at_every_step(tmp_path_factory, steps):
    from videoanyup.tasks.features import FeatureDataset, finished_videos, load_features
    from videoanyup.tasks.features.manifest import write_settings

    out = tmp_path_factory.mktemp("dataset")
    write_settings(out, SETTINGS)
    user: dict[Path, bytes] = {}
    listed: set[str] = set()  # the videos the manifest must list: finished, and not removed since
    for step in steps:
        if step[0] == "user":
            place(out, f"videos/{step[1]}/notes.txt", b"notes")
            user[out / "videos" / step[1] / "notes.txt"] = b"notes"
            continue
        body = {"video": video, "reset": reset, "compact": compact}[step[0]]
        code = status(fork(body, out, *step[1:]))
        assert code in (0, 2, 3, 9), (step, code)
        if step[0] == "video" and code == 0:
            listed.add(step[1])
        if step[0] == "reset" and code in (0, 9):  # the manifest is emptied first, then folders go
            listed.clear()
        assert all(path.read_bytes() == data for path, data in user.items()), step
        done = finished_videos(out)
        assert listed <= set(done), (step, listed, set(done))
        for name in done:  # listed means there and readable, whole
            index = json.loads((out / "videos" / name / "index.json").read_text())
            assert load_features(out, video=name).shape[0] == index["frames"], (step, name)
        assert sorted({item["video"] for item in FeatureDataset(out)}) == sorted(done)
