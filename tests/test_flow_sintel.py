"""The .flo format and the Sintel evaluation (videoanyup.tasks.flow.sintel), on a fake sample folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from videoanyup.layers.spynet import SPyNet
from videoanyup.tasks.flow.sintel import (
    SintelSample,
    epe,
    evaluate_sintel,
    find_samples,
    format_table,
    read_flo,
    targets_met,
    write_flo,
)
from videoanyup.tasks.flow.system import zero_flow_heads


def test_flo_round_trip(tmp_path):
    flow = torch.randn(2, 7, 11)
    write_flo(tmp_path / "a.flo", flow)
    assert (tmp_path / "a.flo").stat().st_size == 12 + 7 * 11 * 2 * 4
    assert torch.equal(read_flo(tmp_path / "a.flo"), flow)
    raw = np.fromfile(tmp_path / "a.flo", np.float32)
    assert raw[0] == np.float32(202021.25) and raw.view(np.int32)[1:3].tolist() == [11, 7]


def test_flo_errors(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="not a .flo"):
        read_flo(tmp_path / "bad.flo")
    write_flo(tmp_path / "short.flo", torch.zeros(2, 4, 4))
    (tmp_path / "short.flo").write_bytes((tmp_path / "short.flo").read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(ValueError, match="flow"):
        write_flo(tmp_path / "x.flo", torch.zeros(3, 4, 4))


def _fake_sintel(root, shift=(3, 2)):
    """root/clean/easy: two frames of a scikit-image picture, frame 3 = frame 2 moved by `shift` (x, y)."""
    import skimage.data

    picture = skimage.data.astronaut()
    dx, dy = shift
    folder = root / "clean" / "easy"
    (folder / "gt" / "invalid").mkdir(parents=True)
    (folder / "gt" / "occlusions").mkdir(parents=True)
    h, w = 64, 96
    ref = picture[100 : 100 + h, 150 : 150 + w]
    supp = picture[100 - dy : 100 - dy + h, 150 - dx : 150 - dx + w]  # supp(p + (dx, dy)) = ref(p)
    for i, frame in ((1, ref), (2, ref), (3, supp), (4, supp)):
        Image.fromarray(np.ascontiguousarray(frame)).save(folder / f"frame_000{i}.png")
    flow = torch.zeros(2, h, w)
    flow[0], flow[1] = dx, dy
    write_flo(folder / "gt" / "frame_0002.flo", flow)
    invalid = np.zeros((h, w), np.uint8)
    invalid[0, 0] = 255
    Image.fromarray(invalid).save(folder / "gt" / "invalid" / "frame_0002.png")
    occluded = np.zeros((h, w), np.uint8)
    occluded[:, -dx:] = 255
    Image.fromarray(occluded).save(folder / "gt" / "occlusions" / "frame_0002.png")
    return folder


def test_sample_loading_and_epe_of_the_true_flow_is_zero(tmp_path):
    folder = _fake_sintel(tmp_path)
    sample = SintelSample.load(folder, "clean/easy")
    assert sample.ref.shape == (3, 64, 96) and sample.flow.shape == (2, 64, 96)
    assert not sample.valid[0, 0] and sample.valid.sum() == 64 * 96 - 1
    assert not sample.visible[:, -3:].any()
    assert epe(sample.flow, sample.flow, sample.valid) == 0.0
    assert epe(torch.zeros_like(sample.flow), sample.flow, sample.valid) == pytest.approx(13**0.5, rel=1e-6)
    assert find_samples(tmp_path) == [folder]


def test_evaluation_table(tmp_path):
    pytest.importorskip("cv2")
    _fake_sintel(tmp_path)
    rows = evaluate_sintel(tmp_path, zero_flow_heads(SPyNet()))  # an untrained SPyNet predicts zero flow
    assert [r["sample"] for r in rows] == ["clean/easy", "mean"]
    assert rows[0]["spynet"] == pytest.approx(rows[0]["zero"], abs=1e-6)
    assert rows[0]["dis"] < rows[0]["zero"]  # DIS finds a plain translation
    table = format_table(rows)
    assert "| clean/easy |" in table and "| mean |" in table
    assert targets_met(rows)["below_zero_flow_everywhere"] is False


def test_missing_samples_are_named(tmp_path):
    with pytest.raises(ValueError, match="sintel="):
        find_samples(tmp_path)
