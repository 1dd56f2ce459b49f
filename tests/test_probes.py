"""The probes of videoanyup.tasks.probes and `videoanyup probe` on a tiny synthetic DAVIS-layout tree."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from videoanyup.tasks.cli import main
from videoanyup.tasks.probes import davis
from videoanyup.tasks.probes.depth import depth_metrics, read_depth
from videoanyup.tasks.probes.featureless import PositionMean, PositionPrior, copy_first_mask
from videoanyup.tasks.probes.label_propagation import propagate_labels, propagate_video
from videoanyup.tasks.probes.linear_probe import correct_prior, sample_pixels, train_probe
from videoanyup.tasks.probes.temporal_consistency import clip_flows, ratio, temporal_error, valid_mask
from videoanyup.tasks.probes.upsamplers import make_upsampler
from videoanyup.tasks.probes.vos import VOS_KEYS
from videoanyup.tasks.probes.vos_metrics import (
    boundary_f_measure,
    boundary_map,
    boundary_tolerance,
    region_similarity,
    sequence_scores,
)


# -- data ---------------------------------------------------------------------------------------------
def moving_object_clip(frames=4, height=42, width=56, step=(1, 3), image="astronaut", radius=8, start=(20, 14)):
    """(T, H, W, 3) uint8 frames of a scikit-image picture with a red disk moving by `step`, and its masks."""
    import skimage.data

    picture = getattr(skimage.data, image)()[..., :3]
    yy, xx = np.mgrid[:height, :width]
    clips, masks = [], []
    for t in range(frames):
        frame = picture[50 : 50 + height, 100 : 100 + width].copy()
        cy, cx = start[0] + step[0] * t, start[1] + step[1] * t
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        frame[mask] = (230, 30, 30)
        clips.append(frame)
        masks.append(mask)
    return np.stack(clips), np.stack(masks)


def write_davis(root, names, *, frames=4, palette=False):
    for k, name in enumerate(names):
        clip, masks = moving_object_clip(frames, step=(1, 2 + k), image=["astronaut", "coffee", "chelsea"][k % 3])
        (root / "JPEGImages" / name).mkdir(parents=True)
        (root / "Annotations" / name).mkdir(parents=True)
        for t in range(frames):
            Image.fromarray(clip[t]).save(root / "JPEGImages" / name / f"{t:05d}.jpg", quality=95)
            if palette:
                ids = Image.fromarray(masks[t].astype(np.uint8), mode="P")
                ids.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
                ids.save(root / "Annotations" / name / f"{t:05d}.png")
            else:
                Image.fromarray(masks[t].astype(np.uint8) * 255).save(root / "Annotations" / name / f"{t:05d}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_davis(tmp_path_factory.mktemp("davis"), ["alpha", "beta", "gamma"])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from videoanyup.models.videoanyup import VideoAnyUp

    torch.manual_seed(0)
    return str(VideoAnyUp.from_config("tiny").save_pretrained(tmp_path_factory.mktemp("w") / "tiny"))


# -- J and F -------------------------------------------------------------------------------------------
def test_region_similarity_exact():
    gt = np.zeros((6, 6), bool)
    gt[1:3, 1:4] = True  # 6 pixels
    pred = np.zeros((6, 6), bool)
    pred[1:3, 1:3] = True  # 4 pixels inside gt
    assert region_similarity(pred, gt) == pytest.approx(4 / 6)
    assert region_similarity(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert region_similarity(pred, np.zeros_like(gt)) == 0.0


def test_boundary_map_and_tolerance():
    mask = np.zeros((5, 5), bool)
    mask[:, 2:] = True
    assert np.array_equal(np.flatnonzero(boundary_map(mask).any(0)), [1])  # the column before the edge
    assert not boundary_map(np.ones((4, 4), bool)).any()  # the image border is no boundary
    assert boundary_tolerance((20, 20)) == 1  # ceil(0.008 · 28.3)
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 · 979.7)


def test_boundary_f_measure_exact():
    gt = np.zeros((20, 20), bool)
    gt[:, 10:] = True  # boundary: column 9, 20 pixels
    assert boundary_f_measure(gt, gt) == 1.0
    near = np.zeros_like(gt)
    near[:, 11:] = True  # boundary one column off: inside the 1-pixel tolerance
    assert boundary_f_measure(near, gt) == 1.0
    far = np.zeros_like(gt)
    far[:, 13:] = True  # three columns off
    assert boundary_f_measure(far, gt) == 0.0
    half = np.zeros_like(gt)
    half[:10, 10:] = True  # boundary: column 9 rows 0–9 and row 9 columns 10–19 (20 pixels)
    # precision: column 9 rows 0–9 + (9, 10) within gt's → 11/20; recall: gt column 9 rows 0–10 → 11/20
    assert boundary_f_measure(half, gt) == pytest.approx(0.55)
    assert boundary_f_measure(np.zeros_like(gt), gt) == 0.0
    assert boundary_f_measure(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_sequence_scores_skip_the_given_first_frame():
    gt = np.zeros((3, 8, 8), np.int64)
    gt[:, 2:6, 2:6] = 1
    pred = gt.copy()
    pred[0] = 0  # wrong on frame 0, which DAVIS does not score
    pred[2, 2:6, 2:4] = 0  # half the object missing on frame 2
    (j, f), = sequence_scores(pred, gt, [1]).values()
    assert j == pytest.approx((1 + 0.5) / 2)
    assert f == pytest.approx((1 + boundary_f_measure(pred[2] == 1, gt[2] == 1)) / 2)


# -- temporal consistency ------------------------------------------------------------------------------
def test_temporal_error_is_zero_for_a_static_clip():
    clip, _ = moving_object_clip(frames=1)
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255).repeat(3, 1, 1, 1)  # (3, 3, H, W)
    flows = clip_flows(frames)
    assert all(float(f.abs().max()) == 0 and bool(v.all()) for f, v in flows)
    maps = torch.randn(1, 5, *frames.shape[-2:]).repeat(3, 1, 1, 1)
    assert temporal_error(maps, flows) == pytest.approx([0.0, 0.0], abs=1e-6)  # 1 − cos(x, x) up to rounding
    assert temporal_error(maps, flows, "l1") == pytest.approx([0.0, 0.0], abs=1e-6)


def test_bilinear_ratio_of_bilinear_is_one_and_a_moving_clip_has_error():
    clip, _ = moving_object_clip(frames=3, step=(2, 3))
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255)
    flows = clip_flows(frames)
    lr = torch.randn(3, 6, 3, 4)
    errors = temporal_error(make_upsampler("bilinear")(lr, frames), flows)
    assert all(e > 0 for e in errors)
    assert ratio(errors, errors) == 1.0


def test_forward_backward_check_masks_an_occluded_region():
    forward, backward = torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)
    forward[0, 4:8, 4:8] = 5.0  # these pixels claim to move 5 px right, but nothing there moves back
    forward[0, :, 15] = 3.0  # the last column leaves the frame
    valid = valid_mask(forward, backward)
    assert not valid[4:8, 4:8].any() and not valid[:, 15].any()
    assert int(valid.sum()) == 16 * 16 - 16 - 16
    backward[0, 4:8, 9:13] = -5.0  # a consistent backward flow at the targets: no longer occluded
    assert bool(valid_mask(forward, backward)[4:8, 4:8].all())


# -- label propagation and the probe -------------------------------------------------------------------
def test_label_propagation_of_a_static_clip_reproduces_the_first_mask():
    torch.manual_seed(1)
    mask = torch.zeros(10, 13, dtype=torch.long)
    mask[2:6, 3:9] = 1
    mask[7:, :4] = 2
    feats = torch.randn(1, 32, 10, 13).repeat(4, 1, 1, 1)
    soft = propagate_labels(feats, torch.nn.functional.one_hot(mask, 3).permute(2, 0, 1).float(), tile=4)
    assert soft.shape == (4, 3, 10, 13)
    assert torch.equal(soft.argmax(1), mask.expand(4, -1, -1))
    # at the annotation size, with bands on the 1/4 grid's cells (straight edges: bilinear upsampling of the
    # soft labels rounds the corners of blocks, so they would not come back exactly)
    stripes = torch.zeros(10, 13, dtype=torch.long)
    stripes[2:5], stripes[7:] = 1, 2
    big = stripes.repeat_interleave(4, 0).repeat_interleave(4, 1)  # (40, 52)
    labels = propagate_video(feats.repeat_interleave(4, 2).repeat_interleave(4, 3), big, 3, (40, 52))
    assert torch.equal(labels, big.expand(4, -1, -1))


def test_probe_is_identical_for_the_same_seed():
    labels = torch.zeros(12, 12, dtype=torch.long)
    labels[3:6, 3:6] = 1
    a = sample_pixels(labels, (12, 12), 16, seed=3, key="seq/0")
    assert torch.equal(a, sample_pixels(labels, (12, 12), 16, seed=3, key="seq/0"))
    assert int((labels.reshape(-1)[a] == 1).sum()) == 8  # stratified: half from the object
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    first, second = (train_probe(x, y, outputs=3, steps=20, seed=5) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))
    other = train_probe(x, y, outputs=3, steps=20, seed=6)
    assert not torch.equal(first.linear.weight, other.linear.weight)


def test_prior_correction_shifts_biases_exactly_and_restores_the_bayes_decision():
    """Balanced samples of a 90 / 10 world: the corrected probe's biases move by log p_true − log p_sampled,
    and on data drawn with the real frequencies it errs less than the uncorrected one (over-predicts less)."""
    g = torch.Generator().manual_seed(0)

    def draw(n_bg: int, n_fg: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([torch.randn(n_bg, 1, generator=g), torch.randn(n_fg, 1, generator=g) + 1.5])
        return x, torch.cat([torch.zeros(n_bg), torch.ones(n_fg)]).long()

    x, y = draw(500, 500)
    probe = train_probe(x, y, outputs=2, steps=300, seed=0)
    before = probe.linear.bias.clone()
    test_x, test_y = draw(9000, 1000)
    errors_before = (probe(test_x).argmax(1) != test_y).float().mean()
    correct_prior(probe, torch.tensor([500, 500]), torch.tensor([900, 100]))
    shift = probe.linear.bias - before
    assert shift[0] - shift[1] == pytest.approx(float(np.log(9.0)), abs=1e-6)  # only differences matter
    assert shift[0] == pytest.approx(float(np.log(0.9 / 0.5)), abs=1e-6)
    errors_after = (probe(test_x).argmax(1) != test_y).float().mean()
    assert errors_after < 0.6 * errors_before  # ≈ 0.09 (Bayes) against ≈ 0.23
    with pytest.raises(ValueError, match=r"sampled_counts and true_counts must be \(2,\)"):
        correct_prior(probe, torch.tensor([1, 2, 3]), torch.tensor([1, 2]))


def test_position_prior_balanced_and_true_frequency_decisions():
    """Cell A is foreground in every training frame, cell B in 3 of 10 (foreground rate 1.3 / 16): a class-balanced
    decision (B's foreground frequency 0.3 against the rate 0.08) takes B; the true-frequency one (0.3 < 0.7) does
    not. The map is resized to any frame size, the same for every frame."""
    labels = torch.zeros(10, 4, 4, dtype=torch.long)
    labels[:, 0, 0] = 1  # A
    labels[:3, 2, 3] = 1  # B
    prior = PositionPrior(classes=2, grid=4)
    prior.add(labels[:4])
    prior.add(labels[4:])  # counts accumulate over calls
    balanced, true = prior.predict((2, 4, 4)), prior.predict((2, 4, 4), balanced=False)
    assert balanced.shape == (2, 4, 4) and torch.equal(balanced[0], balanced[1])
    assert balanced[0].nonzero().tolist() == [[0, 0], [2, 3]]
    assert true[0].nonzero().tolist() == [[0, 0]]
    assert prior.predict((1, 8, 8))[0, :2, :2].all() and not prior.predict((1, 8, 8))[0, 4:, :4].any()
    with pytest.raises(ValueError, match="needs at least one add"):
        PositionPrior(classes=2).predict((1, 4, 4))


def test_copy_first_mask():
    labels = torch.randint(0, 3, (4, 5, 6))
    copied = copy_first_mask(labels)
    assert copied.shape == labels.shape and all(torch.equal(copied[t], labels[0]) for t in range(4))


def test_position_mean_over_valid_pixels_only():
    """Grid 2 over 4 × 4 maps: the top cells average A (1, valid on top) and B (3), the bottom ones only B
    (A's NaN there is not valid); a cell no valid pixel reached takes the overall mean."""
    a, b = torch.full((4, 4), 1.0), torch.full((4, 4), 3.0)
    a[2:] = float("nan")
    mean = PositionMean(grid=2)
    mean.add(a, torch.isfinite(a))
    mean.add(b, torch.ones(4, 4, dtype=torch.bool))
    assert torch.equal(mean.predict((2, 2)), torch.tensor([[2.0, 2.0], [3.0, 3.0]]))
    assert mean.predict((8, 6)).shape == (8, 6)
    holes = PositionMean(grid=2)
    left = torch.zeros(4, 4, dtype=torch.bool)
    left[:, :2] = True
    holes.add(torch.arange(16.0).reshape(4, 4), left)  # left cells: 2.5 on top, 10.5 below; right cells empty
    assert torch.equal(holes.predict((2, 2)), torch.tensor([[2.5, 6.5], [10.5, 6.5]]))
    with pytest.raises(ValueError, match="values and valid must be the same"):
        mean.add(torch.zeros(4, 4), torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs at least one valid pixel"):
        PositionMean().predict((4, 4))


def test_depth_metrics_exact():
    gt = torch.tensor([[1.0, 2.0], [4.0, 0.0]])  # 0: missing
    assert depth_metrics(gt.clone(), gt) == (0.0, 1.0, 3)
    rmse, delta1, count = depth_metrics(torch.tensor([[1.2, 2.0], [2.0, 9.0]]), gt)
    assert rmse == pytest.approx(np.sqrt((0.04 + 0 + 4) / 3)) and delta1 == pytest.approx(2 / 3) and count == 3


def test_davis_2017_palette_masks_are_object_ids(tmp_path):
    root = write_davis(tmp_path, ["seq"], frames=2, palette=True)
    seq = davis.load_sequence(root, "seq", frames=2, short_side=28, patch_size=14)
    assert seq.objects == [1] and seq.frames.shape == (2, 3, 28, 42)
    assert set(np.unique(davis.read_labels(root / "Annotations" / "seq" / "00000.png"))) == {0, 1}


# -- the command line ----------------------------------------------------------------------------------
FAST = ["--backbone", "dinov2_vits14", "--random-backbone", "--short-side", "42", "--pixels", "64", "--steps", "20", "--quiet"]


def test_cli_vos_end_to_end(tree, weights, tmp_path, capsys):
    out = tmp_path / "vos.json"
    code = main([
        "probe", "--task", "vos", "--train", str(tree), "--train-seqs", "alpha,beta", "--test", str(tree),
        "--test-seqs", "gamma", "--upsampler", "bilinear,perframe,videoanyup", "--weights", weights,
        "--frames-per-seq", "3", "--json", str(out), "--figures", str(tmp_path / "figs"), *FAST,
    ])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["upsampler"] for r in rows] == ["bilinear", "perframe", "videoanyup", "featureless"]
    assert all(set(r) == set(VOS_KEYS) for r in rows)
    assert rows[0]["temporal_error"] == 1.0 and rows[0]["temporal_error_pred"] == 1.0
    assert all(0 <= r[k] <= 1 for r in rows for k in ("J", "F", "JF", "JF_prop"))
    featureless = rows[-1]  # no features: nothing to compare over time or with the backbone
    assert featureless["temporal_error"] is None and featureless["fidelity"] is None
    gamma = davis.load_sequence(tree, "gamma", frames=3, short_side=42, patch_size=14)
    ((j, f),) = sequence_scores(copy_first_mask(gamma.labels).numpy(), gamma.labels.numpy(), gamma.objects).values()
    assert featureless["JF_prop"] == pytest.approx((j + f) / 2)
    assert (tmp_path / "figs" / "gamma_pca.png").stat().st_size > 0
    assert (tmp_path / "figs" / "gamma_pca.mp4").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| videoanyup |" in out and "| featureless |" in out and "| – |" in out


def test_cli_prior_correction_changes_only_the_probe(tree, tmp_path):
    """`--prior-correction` moves the probe's biases: label propagation, feature temporal error and fidelity
    (which never see the probe) stay exactly the same."""
    rows = {}
    for flag in ([], ["--prior-correction"]):
        out = tmp_path / f"vos{len(flag)}.json"
        assert main([
            "probe", "--task", "vos", "--train", str(tree), "--train-seqs", "alpha,beta", "--test", str(tree),
            "--test-seqs", "gamma", "--upsampler", "bilinear", "--frames-per-seq", "3", "--json", str(out), *FAST,
        ]) == 0
        rows[len(flag)] = json.loads(out.read_text())["rows"][0]
    for key in ("JF_prop", "temporal_error", "fidelity"):
        assert rows[0][key] == rows[1][key]


def test_cli_depth_end_to_end(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "rgb").mkdir(parents=True)
        (tmp_path / split / "depth").mkdir(parents=True)
        for k in range(2):
            clip, masks = moving_object_clip(frames=1, start=(15 + 5 * k, 20 if split == "train" else 32))
            Image.fromarray(clip[0]).save(tmp_path / split / "rgb" / f"{k}.png")
            depth = np.where(masks[0], 1000, 3000).astype(np.uint16)  # mm: the disk is nearer
            Image.fromarray(depth).save(tmp_path / split / "depth" / f"{k}.png")
    out = tmp_path / "depth.json"
    assert main(["probe", "--task", "depth", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"),
                 "--upsampler", "bilinear", "--json", str(out), *FAST]) == 0
    row, featureless = json.loads(out.read_text())["rows"]
    assert set(row) == set(featureless) == {"upsampler", "rmse", "delta1", "temporal_error", "temporal_error_pred", "fidelity"}
    assert row["rmse"] >= 0 and 0 <= row["delta1"] <= 1 and row["temporal_error"] is None
    # the featureless row: the training maps' mean log-depth at each position, scored on the test maps
    position = PositionMean()
    for k in range(2):
        gt = read_depth(tmp_path / "train" / "depth" / f"{k}.png")
        position.add(gt.log(), gt > 0)
    scores = [depth_metrics(position.predict(tuple(gt.shape)).exp(), gt)
              for gt in (read_depth(tmp_path / "test" / "depth" / f"{k}.png") for k in range(2))]
    assert featureless["upsampler"] == "featureless" and featureless["fidelity"] is None
    assert featureless["rmse"] == pytest.approx(np.mean([s[0] for s in scores]), rel=1e-5)
    assert featureless["delta1"] == pytest.approx(np.mean([s[1] for s in scores]), rel=1e-5)  # equal counts


@pytest.mark.parametrize(
    "change, named",
    [
        ({"--upsampler": "bilinear,bicubic"}, "--upsampler"),
        ({"--frames-per-seq": "1"}, "--frames-per-seq"),
        ({"--test-seqs": "beta,gamma"}, "--train-seqs and --test-seqs overlap"),
        ({"--test-seqs": "delta"}, "--test-seqs"),
        ({"--weights": "/nonexistent/weights"}, "--weights"),
        ({"--train": "NOANNOTATIONS"}, "--train"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_them(tree, weights, tmp_path, capsys, change, named):
    options = {"--train": str(tree), "--train-seqs": "alpha,beta", "--test": str(tree), "--test-seqs": "gamma",
               "--upsampler": "bilinear,videoanyup", "--weights": weights, "--frames-per-seq": "3"}
    options.update(change)
    if options["--train"] == "NOANNOTATIONS":
        (tmp_path / "JPEGImages" / "x").mkdir(parents=True)
        options["--train"] = str(tmp_path)
    argv = ["probe", "--task", "vos"] + [v for item in options.items() for v in item] + FAST
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "error" in err
    if change.get("--train"):
        assert "Annotations" in err


def test_mode_upsamplers_run_the_model_in_that_mode():
    """"unidirectional" etc. run the model in that mode: equal to calling it so, and the causal one's frame 0
    does not see frame 1."""
    from videoanyup.models.videoanyup import VideoAnyUp

    torch.manual_seed(0)
    model = VideoAnyUp.from_config("tiny").eval()
    feats, frames = torch.randn(3, 8, 4, 4), torch.rand(3, 3, 16, 16)
    for mode in ("perframe", "bidirectional", "unidirectional", "lookahead"):
        with torch.inference_mode():
            expected = model(feats[None], frames[None], mode=mode)[0]
        torch.testing.assert_close(make_upsampler(mode, model)(feats, frames), expected, rtol=0, atol=0)
    changed = feats.clone()
    changed[1] += 1.0
    uni = make_upsampler("unidirectional", model)
    torch.testing.assert_close(uni(changed, frames)[0], uni(feats, frames)[0], rtol=0, atol=0)
    bidir = make_upsampler("bidirectional", model)
    assert not torch.allclose(bidir(changed, frames)[0], bidir(feats, frames)[0])
