"""Issue 15: frame folders — every PIL mode, natural order, skipped files reported.

The property test over generated folders is in `test_frame_folder_property.py`.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from videoanyup.tasks.frame_folder import natural_key, to_rgb8
from videoanyup.tasks.video_io import iter_frames, list_frames, probe


def gray(height=6, width=9, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


# -- 3. every PNG mode PIL can give ---------------------------------------------------------------------
def test_sixteen_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    """The issue's case: a mid-gray 16-bit PNG came out almost white (mean 246 where 124 was expected)."""
    values = np.linspace(0, 65535, 12 * 16).reshape(12, 16).astype(np.uint16)
    (tmp_path / "f").mkdir()
    Image.fromarray(values).save(tmp_path / "f" / "0.png")
    assert Image.open(tmp_path / "f" / "0.png").mode == "I;16"
    frame = next(iter_frames(tmp_path / "f"))
    expected = np.round(values / 257.0).astype(np.uint8)
    assert frame.shape == (12, 16, 3) and np.array_equal(frame, np.repeat(expected[..., None], 3, axis=-1))
    assert abs(frame.mean() - 127.5) < 0.5


def test_every_mode_becomes_the_same_rgb(tmp_path, caplog):
    g = gray()
    rgb = np.repeat(g[..., None], 3, axis=-1)
    wide = g.astype(np.uint16) * 257
    images = {
        "L": Image.fromarray(g),
        "LA": Image.fromarray(np.stack([g, np.full_like(g, 7)], -1), mode="LA"),
        "RGB": Image.fromarray(rgb),
        "RGBA": Image.fromarray(np.concatenate([rgb, np.full_like(g, 3)[..., None]], -1)),
        "P": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "I;16": Image.fromarray(wide),
        "I;16B": Image.frombytes("I;16B", (g.shape[1], g.shape[0]), wide.astype(">u2").tobytes()),
    }
    folder = tmp_path / "modes"
    folder.mkdir()
    for index, (mode, image) in enumerate(images.items()):
        assert image.mode == mode
        image.save(folder / f"{index}.png")
    caplog.set_level(logging.WARNING)
    frames = list(iter_frames(folder))
    for mode, frame in zip(images, frames):
        if mode == "P":  # a palette of the frame's own grays: PIL's adaptive palette keeps ≤ 256 grays exactly
            assert np.abs(frame.astype(int) - rgb).max() <= 8, mode
        else:
            assert np.array_equal(frame, rgb), mode
    alpha_lines = [r for r in caplog.records if "alpha" in r.getMessage()]
    assert len(alpha_lines) == 1 and "1.png" in alpha_lines[0].getMessage()  # once per folder, naming the first
    # I and F (TIFF-only in PIL) on the 16-bit scale; values outside it are refused, naming the file
    assert np.array_equal(to_rgb8(Image.fromarray(wide.astype(np.int32), mode="I"), "x")[0], rgb)
    assert np.array_equal(to_rgb8(Image.fromarray(wide.astype(np.float32), mode="F"), "x")[0], rgb)
    with pytest.raises(ValueError, match=r"frame 'bad.tif' \(mode F\) has values in \[-1, 65535\]"):
        to_rgb8(Image.fromarray(np.array([[-1.0, 65535.0]], np.float32), mode="F"), "bad.tif")


# -- 4. natural order, skipped files reported ------------------------------------------------------------
def test_frames_are_read_in_numeric_order_and_skipped_files_are_reported(tmp_path, caplog):
    folder = tmp_path / "clip"
    folder.mkdir()
    for number in range(1, 13):
        Image.fromarray(np.full((4, 5), number * 10, np.uint8)).save(folder / f"{number}.png")
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    caplog.set_level(logging.WARNING)
    assert [p.name for p in list_frames(folder)] == [f"{n}.png" for n in range(1, 13)]
    assert [int(f[0, 0, 0]) for f in iter_frames(folder)] == [n * 10 for n in range(1, 13)]
    assert probe(folder).num_frames == 12
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "skipped 2 entries" in lines[0] and "notes.txt" in lines[0] and "sub" in lines[0]
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame_002_b.png", "frame_002_a.png", "x.png", "007.png"]
    assert sorted(names, key=natural_key) == [
        "007.png", "Frame1.png", "frame2.png", "frame10.png", "frame_002_a.png", "frame_002_b.png", "x.png"
    ]
