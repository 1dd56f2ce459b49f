"""BasicAVSR data: sources, the degradation, the deterministic resumable sampler, the datasets."""

from __future__ import annotations

import math

import pytest
import torch

from videoanyup.functional import downsample
from videoanyup.tasks.avsr.datasets import EvalClips, TrainPatches
from videoanyup.tasks.avsr.degradation import degrade, eval_lr_size, parse_scale, scale_label
from videoanyup.tasks.avsr.sampling import ClipBatchSampler, ClipRequest, ResumableLoader
from videoanyup.tasks.avsr.sources import find_clips
from videoanyup.tasks.video_io import VideoError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("avsr_data")
    write_synthetic_clip(root / "reds" / "000", frames=6, height=40, width=48)
    write_synthetic_clip(root / "reds" / "001", frames=7, height=40, width=48, image="coffee")
    write_synthetic_clip(root / "videos" / "clip.mp4", frames=6, height=40, width=48, image="chelsea")
    return root


def sampler(clips, **overrides):
    kwargs = dict(num_frames=3, lr_patch=8, gt_patch=8, scale_range=(1.0, 4.0), batch_size=2, seed=1, samples_per_epoch=12)
    kwargs.update(overrides)
    return ClipBatchSampler(clips, **kwargs)


def test_find_clips_reds_layout_videos_and_lists(root):
    reds = find_clips(root / "reds")
    assert [c.name for c in reds] == ["000", "001"] and reds[1].num_frames == 7
    both = find_clips([root / "reds" / "000", root / "videos"])
    assert [(c.name, c.num_frames, c.height, c.width) for c in both] == [("000", 6, 40, 48), ("clip", 6, 40, 48)]
    assert both[1].read(2, 3).shape == (3, 3, 40, 48)
    (root / "nothing").mkdir(exist_ok=True)
    with pytest.raises(VideoError, match="holds no clips"):
        find_clips(root / "nothing")


def test_scales_and_protocol_sizes():
    assert parse_scale("4") == (4.0, 4.0) and parse_scale("2.5x3.5") == (2.5, 3.5) and parse_scale(3) == (3.0, 3.0)
    assert scale_label((4.0, 4.0)) == "x4" and scale_label((2.5, 3.5)) == "x2.5x3.5"
    assert eval_lr_size(720, 1280, (3.0, 3.0)) == (240, 426)
    assert eval_lr_size(720, 1280, (2.4, 2.4)) == (300, 533)  # 720 / 2.4 is 300, not 299
    for bad in ("0", "-2", "2x", "abc", "1x2x3"):
        with pytest.raises(ValueError, match="scale"):
            parse_scale(bad)


def test_degradation_is_torch_bicubic():
    hr = torch.rand(2, 3, 32, 40)
    assert torch.equal(degrade(hr, (8, 10)), downsample(hr, (8, 10)).clamp(0, 1))
    aa = degrade(hr, (8, 10), antialias=True)
    assert not torch.equal(aa, degrade(hr, (8, 10)))
    assert torch.equal(degrade(hr, (8, 10), quantize_8bit=True) * 255, (degrade(hr, (8, 10)) * 255).round())


def test_sampler_plan_is_a_function_of_seed_and_epoch(root):
    clips = find_clips(root / "reds")
    a, b = sampler(clips), sampler(clips)
    assert a.epoch_plan(0) == b.epoch_plan(0)
    assert a.epoch_plan(0) != a.epoch_plan(1)
    assert sampler(clips, seed=2).epoch_plan(0) != a.epoch_plan(0)
    plan = a.epoch_plan(0)
    assert len(plan) == len(a) == 6
    scales = set()
    for batch in plan:
        assert len({(r.hr_crop, r.region) for r in batch}) == 1  # one scale and region per batch
        for r in batch:
            clip = clips[r.clip]
            assert 0 <= r.start <= clip.num_frames - 3
            assert r.top + r.hr_crop[0] <= clip.height and r.left + r.hr_crop[1] <= clip.width
            top, bottom, left, right = r.region
            assert 0 <= top and bottom <= r.hr_crop[0] and 0 <= left and right <= r.hr_crop[1] and bottom - top == 8
            assert 8 <= r.hr_crop[0] <= 32 and 8 <= r.hr_crop[1] <= 32
        scales.add(batch[0].hr_crop)
    assert any(h != w for h, w in scales)  # a and b drawn independently
    flags = [(r.reverse, r.hflip, r.vflip) for batch in plan for r in batch]
    assert len(set(flags)) > 2


def test_sampler_splits_steps_over_processes(root):
    clips = find_clips(root / "reds")
    ranks = [sampler(clips, rank=r, world_size=2).epoch_plan(0) for r in range(2)]
    single = sampler(clips, batch_size=4).epoch_plan(0)
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 3
    for step in range(3):
        assert ranks[0][step] + ranks[1][step] == single[step]


def test_sampler_checks_clip_sizes(root):
    clips = find_clips(root / "reds")
    with pytest.raises(ValueError, match="lr_patch"):
        sampler(clips, lr_patch=16)  # 16 × 4 > 40
    with pytest.raises(ValueError, match="num_frames"):
        sampler(clips, num_frames=9)
    with pytest.raises(ValueError, match="gt_patch"):
        sampler(clips, gt_patch=9)


def test_train_patch_follows_its_request(root):
    clips = find_clips(root / "reds")
    dataset = TrainPatches(clips, num_frames=3)
    request = ClipRequest(
        clip=1, start=2, top=3, left=5, reverse=True, hflip=True, vflip=False, hr_crop=(20, 30), lr_patch=(8, 8),
        region=(4, 12, 10, 18),
    )
    sample = dataset[request]
    crop = clips[1].read(2, 3)[..., 3:23, 5:35].flip(0).flip(-1)  # (3, 3, 20, 30)
    assert torch.equal(sample["lr"], degrade(crop, (8, 8)))
    assert torch.equal(sample["hr"], crop[..., 4:12, 10:18])
    assert sample["hr_size"].tolist() == [20, 30] and sample["region"].tolist() == [4, 12, 10, 18]


def test_loader_state_resumes_at_the_next_batch(root):
    clips = find_clips(root / "reds")
    dataset = TrainPatches(clips, num_frames=3)
    loader = ResumableLoader(dataset, sampler(clips))
    loader.batch_sampler.set_epoch(1)
    full = [b["lr"] for b in loader]
    iterator = iter(loader)
    seen = [next(iterator)["lr"] for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 1, "consumed": 2}
    fresh = ResumableLoader(dataset, sampler(clips))
    fresh.load_state_dict(state)
    rest = [b["lr"] for b in fresh]
    assert len(rest) == len(full) - 2
    assert all(torch.equal(x, y) for x, y in zip(seen + rest, full))
    fresh.load_state_dict({"epoch": 1, "consumed": len(full)})  # an epoch-end checkpoint starts the next epoch
    assert fresh.batch_sampler.epoch == 2 and fresh.batch_sampler.skip == 0
    assert fresh.sampler is fresh.batch_sampler  # where Lightning calls set_epoch


def test_eval_clips_protocol_and_padding(root):
    clips = find_clips(root / "reds")
    items = [EvalClips(clips, [(2.5, 3.0)], rank=r, world_size=2, num_frames=2) for r in range(2)]
    assert len(items[0]) == len(items[1]) == 1
    three = [EvalClips(clips + clips[:1], [(2.5, 3.0)], rank=r, world_size=2) for r in range(2)]
    assert [len(d) for d in three] == [2, 2] and three[1][1]["valid"] is False and three[0][1]["valid"] is True
    sample = items[0][0]
    assert sample["hr"].shape == (2, 3, 40, 48)
    assert sample["lr"].shape == (2, 3, math.floor(40 / 2.5), math.floor(48 / 3.0))
    assert torch.equal(sample["lr"], degrade(sample["hr"], (16, 16), quantize_8bit=True))
    assert sample["label"] == "x2.5x3"
    cropped = EvalClips(clips, [(2.0, 2.0)], crop=(20, 30))[0]
    assert cropped["hr"].shape[-2:] == (20, 30)


class _WhoLoads(TrainPatches):
    """TrainPatches that also says which process built each sample and counts `preload` calls (main process)."""

    preloads: list[int] = []

    def preload(self) -> None:
        import os

        super().preload()
        self.preloads.append(os.getpid())

    def __getitem__(self, request):
        import os

        return {**super().__getitem__(request), "pid": torch.tensor(os.getpid())}


def test_workers_persist_across_epochs_and_resume_exactly(root):
    """One worker serves every epoch (same process), with the batches of the in-process loader, epoch by epoch
    and after a mid-epoch resume; the dataset's videos are decoded once, in the main process, before it starts."""
    import os

    from videoanyup.tasks.avsr.sources import _decoded_video

    clips = find_clips([root / "reds", root / "videos"])
    _decoded_video.cache_clear()
    _WhoLoads.preloads = []
    plain = ResumableLoader(TrainPatches(clips, num_frames=3), sampler(clips))
    loader = ResumableLoader(_WhoLoads(clips, num_frames=3), sampler(clips), num_workers=1)
    assert loader.persistent_workers and not plain.persistent_workers
    pids = set()
    for epoch in (0, 1):
        plain.batch_sampler.set_epoch(epoch)
        loader.batch_sampler.set_epoch(epoch)
        expected = [b["lr"] for b in plain]
        got = list(loader)
        assert len(got) == len(expected) and all(torch.equal(b["lr"], e) for b, e in zip(got, expected))
        pids |= {int(p) for b in got for p in b["pid"]}
    assert len(pids) == 1 and os.getpid() not in pids  # one worker process, kept between epochs
    assert _WhoLoads.preloads == [os.getpid()]  # once, here, before the worker started
    assert _decoded_video.cache_info().currsize == 1  # the mp4 was decoded in this process (frame folders never are)
    iterator = iter(loader)  # epoch 1 again, interrupted after 2 batches and resumed by a fresh loader state
    seen = [next(iterator)["lr"] for _ in range(2)]
    state = loader.state_dict()
    loader.load_state_dict(state)
    resumed = list(loader)
    rest = [b["lr"] for b in resumed]
    assert all(torch.equal(x, y) for x, y in zip(seen + rest, expected)) and len(seen + rest) == len(expected)
    assert {int(p) for b in resumed for p in b["pid"]} == pids and _WhoLoads.preloads == [os.getpid()]
