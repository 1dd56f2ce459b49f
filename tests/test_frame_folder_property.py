"""Issue 15: a property test (Hypothesis) over generated frame folders.

Frame folders with random sizes, PIL modes, numbered names (any zero padding and prefix), stray files
and an occasional corrupt, empty or odd-sized frame go through `videoanyup upscale`. It either writes
exactly one output frame per input frame, in numeric order (each equal to the network's output on the
frames in that order), or exits 2 with a message naming the folder and leaves nothing behind; a file
already in the output's parent folder is untouched either way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.inference import upscale_frames
from videoanyup.tasks.cli import main
from videoanyup.tasks.video_io import iter_frames, probe, to_tensor, to_uint8

from conftest import TINY_BASICAVSR as TINY  # noqa: E402

pytest.importorskip("hypothesis", reason="the property test needs hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    torch.manual_seed(0)
    model = BasicAVSR.from_config("lite", **TINY)
    model.trained_modes = ("bidirectional",)
    model.save_pretrained(root / "weights")
    return root, model.eval()


MODES = ("L", "LA", "RGB", "RGBA", "P", "I;16")


def _image(content: np.ndarray, mode: str) -> Image.Image:
    """`content` (h, w, 3) uint8 as a PIL image of `mode` (gray modes use its first channel)."""
    if mode == "L":
        return Image.fromarray(content[..., 0])
    if mode == "LA":
        return Image.fromarray(np.stack([content[..., 0], content[..., 1]], -1), mode="LA")
    if mode == "RGB":
        return Image.fromarray(content)
    if mode == "RGBA":
        return Image.fromarray(np.concatenate([content, content[..., :1]], -1))
    if mode == "P":
        return Image.fromarray(content).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return Image.fromarray(content[..., 0].astype(np.uint16) * 257)  # I;16


def _expected_rgb(image: Image.Image) -> np.ndarray:
    """What a frame must read as, from the mode's definition (not from the reader under test)."""
    if image.mode == "I;16":
        g = (np.asarray(image).astype(np.float64) / 257).round().astype(np.uint8)
        return np.repeat(g[..., None], 3, -1)
    if image.mode in ("L", "LA"):
        return np.repeat(np.asarray(image)[..., :1] if image.mode == "LA" else np.asarray(image)[..., None], 3, -1)
    if image.mode == "RGBA":
        return np.asarray(image)[..., :3]
    return np.asarray(image.convert("RGB"))


folders = st.fixed_dictionaries({
    "numbers": st.lists(st.integers(0, 200), min_size=1, max_size=5, unique=True),
    "padding": st.integers(0, 4),
    "prefix": st.sampled_from(["", "frame", "img_", "Shot-"]),
    "suffix": st.sampled_from([".png", ".PNG", ".png"]),
    "height": st.integers(4, 9),
    "width": st.integers(4, 9),
    "modes": st.lists(st.sampled_from(MODES), min_size=5, max_size=5),
    "strays": st.lists(st.sampled_from(["notes.txt", "Thumbs.db", ".DS_Store", "sub", "readme.md"]), max_size=3, unique=True),
    "corrupt": st.sampled_from([None, None, None, "truncated", "empty", "odd_size"]),
    "seed": st.integers(0, 2**16),
})


@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=folders)
def test_frame_folders_upscale_in_numeric_order_or_fail_cleanly(model_dir, tmp_path, capsys, spec):
    root, model = model_dir
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    folder, out = work / "in", work / "out"
    folder.mkdir()
    (work / "keep.bin").write_bytes(bytes(range(256)))
    rng = np.random.default_rng(spec["seed"])
    numbers = spec["numbers"]
    expected = {}
    for number, mode in zip(numbers, spec["modes"]):
        image = _image(rng.integers(0, 256, (spec["height"], spec["width"], 3), dtype=np.uint8), mode)
        name = f"{spec['prefix']}{number:0{spec['padding']}d}{spec['suffix']}"
        image.save(folder / name, format="PNG")
        expected[number] = _expected_rgb(image)
    for stray in spec["strays"]:
        (folder / stray).mkdir() if stray == "sub" else (folder / stray).write_bytes(b"not a frame")
    broken = spec["corrupt"]
    if broken == "odd_size" and len(numbers) == 1:
        broken = None  # one frame of any size is a valid clip
    if broken is not None:
        victim = folder / f"{spec['prefix']}{numbers[-1]:0{spec['padding']}d}{spec['suffix']}"
        if broken == "truncated":
            victim.write_bytes(victim.read_bytes()[:40])
        elif broken == "empty":
            victim.write_bytes(b"")
        else:
            Image.fromarray(np.zeros((spec["height"] + 1, spec["width"], 3), np.uint8)).save(victim, format="PNG")
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    code = main(["upscale", str(folder), str(out), "--scale", "1.5", "--weights", str(root / "weights"), "--quiet"])
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before
    err = capsys.readouterr().err
    if broken is not None:
        assert code == 2 and "videoanyup upscale: error: " in err and str(folder) in err, err
        assert sorted(p.name for p in work.iterdir()) == ["in", "keep.bin"]  # no output, no hidden partial
        return
    assert code == 0 and sorted(p.name for p in work.iterdir()) == ["in", "keep.bin", "out"]
    ordered = [expected[n] for n in sorted(numbers)]
    assert [np.array_equal(a, b) for a, b in zip(iter_frames(folder), ordered)] == [True] * len(numbers)
    reference = [to_uint8(f) for f in upscale_frames(model, to_tensor(np.stack(ordered)), size=(probe(out).height, probe(out).width))]
    written = list(iter_frames(out))
    assert len(written) == len(numbers)
    assert all(np.array_equal(a, b) for a, b in zip(written, reference))
