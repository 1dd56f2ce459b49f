"""Video files and frame folders: round trips, frame rates, odd sizes, and clear errors without partial output."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from videoanyup.tasks.video_io import VideoError, VideoWriter, iter_frames, probe, read_video, to_tensor, to_uint8


def frames(count=5, height=21, width=30, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def write(path, clip, **kwargs):
    with VideoWriter(path, **kwargs) as writer:
        for frame in clip:
            writer.write(frame)


def test_png_folder_round_trip_in_name_order(tmp_path):
    clip = frames()
    write(tmp_path / "out", clip)
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:2] == [".videoanyup-output.json", "00000000.png"]
    info = probe(tmp_path / "out")
    assert (info.kind, info.num_frames, info.height, info.width, info.fps) == ("frames", 5, 21, 30, None)
    assert np.array_equal(np.stack(list(iter_frames(tmp_path / "out"))), np.stack(clip))
    assert np.array_equal(to_uint8(read_video(tmp_path / "out", 1, 3)), np.stack(clip[1:4]))


def test_lossless_mp4_round_trip_keeps_odd_size_and_frame_rate(tmp_path):
    clip = frames()
    write(tmp_path / "a.mp4", clip, fps=Fraction(30000, 1001), lossless=True)
    info = probe(tmp_path / "a.mp4")
    assert (info.kind, info.num_frames, info.height, info.width) == ("file", 5, 21, 30)
    assert info.fps == Fraction(30000, 1001)
    assert np.array_equal(np.stack(list(iter_frames(tmp_path / "a.mp4"))), np.stack(clip))


def test_yuv420_pads_odd_sizes_and_yuv444_keeps_them(tmp_path):
    smooth = [np.full((21, 31, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    write(tmp_path / "pad.mp4", smooth, fps=24)
    assert (probe(tmp_path / "pad.mp4").height, probe(tmp_path / "pad.mp4").width) == (22, 32)
    write(tmp_path / "keep.mp4", smooth, fps=24, pix_fmt="yuv444p", crf=0)
    info = probe(tmp_path / "keep.mp4")
    assert (info.height, info.width, info.fps) == (21, 31, 24)
    decoded = np.stack(list(iter_frames(tmp_path / "keep.mp4"))).astype(int)
    assert np.abs(decoded - np.stack(smooth)).max() <= 2


def test_failed_writes_leave_nothing_behind(tmp_path):
    for target in (tmp_path / "x.mp4", tmp_path / "folder"):
        with pytest.raises(RuntimeError, match="boom"):
            with VideoWriter(target) as writer:
                writer.write(frames(1)[0])
                raise RuntimeError("boom")
        with pytest.raises(VideoError, match="size"):
            with VideoWriter(target) as writer:
                writer.write(frames(1, 20, 20)[0])
                writer.write(frames(1, 22, 20)[0])
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    write(tmp_path / "o.mp4", frames(2), fps=24)
    with pytest.raises(VideoError, match="already exists"):
        VideoWriter(tmp_path / "o.mp4")
    write(tmp_path / "o.mp4", frames(3), fps=24, overwrite=True)
    assert probe(tmp_path / "o.mp4").num_frames == 3


def test_bad_inputs_raise_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no frames"):
        probe(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    write(mixed, frames(2, 20, 20))
    from PIL import Image

    Image.fromarray(frames(1, 24, 20)[0]).save(mixed / "00000009.png")
    with pytest.raises(VideoError, match="mixed sizes"):
        probe(mixed)
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoError, match="junk.mp4"):
        probe(tmp_path / "junk.mp4")
    write(tmp_path / "ok.mp4", frames(8), fps=24)
    data = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom lost
    with pytest.raises(VideoError, match="cut.mp4"):
        probe(tmp_path / "cut.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nothing.mp4")


def test_tensor_conversions():
    clip = np.stack(frames(2))
    tensor = to_tensor(clip)
    assert tensor.shape == (2, 3, 21, 30) and tensor.dtype.is_floating_point
    assert np.array_equal(to_uint8(tensor), clip)
