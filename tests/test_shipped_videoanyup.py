"""The bundled VideoAnyUp `default` as a user gets it: eval mode, the architecture `CONFIGS["default"]` names, one
behaviour in training and inference, streams equal to the clip, no leak across a hard cut, and a fade treated as
the scene it is (DESIGN.md §5.5).

The clips are real pictures that scikit-image ships (none is among the training sources), panned by a few pixels
per frame; the features come from a random DINOv2 ViT-S/14 (seed 5) that no training used.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoanyup as vau
from videoanyup.backbones import build_backbone
from videoanyup.models.videoanyup import VideoAnyUp

SIZE = (112, 140)  # 8 × 10 patches of 14


def panned(name: str, frames: int, step=(2, 3)) -> torch.Tensor:
    """`(T, 3, H, W)`: a scikit-image picture panning by `step` pixels a frame, resized to `SIZE`."""
    import skimage.data

    picture = getattr(skimage.data, name)()
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    image = torch.from_numpy(np.ascontiguousarray(picture[..., :3])).permute(2, 0, 1).float().div(255)
    h, w = 2 * SIZE[0], 2 * SIZE[1]
    crops = [image[:, 20 + t * step[0] : 20 + t * step[0] + h, 20 + t * step[1] : 20 + t * step[1] + w] for t in range(frames)]
    return F.interpolate(torch.stack(crops), size=SIZE, mode="area")


@pytest.fixture(scope="module")
def shipped():
    return VideoAnyUp.from_pretrained("default")


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(5)
    return build_backbone("dinov2_vits14", random=True)


def features(backbone, frames: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return backbone.extract(frames[None])[0].float()  # (T, C, h, w)


def upsample(model, feats, frames, mode):
    with torch.no_grad():
        return model(feats[None], frames[None], mode=mode)[0]


def cosine(a, b):
    return float(F.cosine_similarity(a, b, dim=0).mean())


def test_from_pretrained_is_in_eval_mode_and_names_its_architecture(shipped):
    assert shipped.training is False and vau.BasicAVSR.from_pretrained("lite").training is False
    assert VideoAnyUp.from_config("default").config == shipped.config
    from test_api import load_hubconf

    hub = load_hubconf()
    assert hub.videoanyup(pretrained=False).config == hub.videoanyup(pretrained=True).config


def test_training_mode_gives_the_output_of_inference(shipped, backbone):
    frames = panned("astronaut", 4)
    feats = features(backbone, frames)
    for mode in ("bidirectional", "unidirectional"):
        evaluated = upsample(shipped, feats, frames, mode)
        shipped.train()
        try:
            trained = upsample(shipped, feats, frames, mode)
        finally:
            shipped.eval()
        assert torch.equal(trained, evaluated), mode


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead"])
def test_the_stream_equals_the_clip(shipped, backbone, mode):
    frames = panned("coffee", 5)
    feats = features(backbone, frames)
    clip = upsample(shipped, feats, frames, mode)
    stream = shipped.stream(mode=mode)
    outs = [o for t in range(5) for o in stream.push(feats[None, t], frames[None, t])] + stream.flush()
    torch.testing.assert_close(torch.cat(outs), clip, atol=1e-4, rtol=0)


def test_a_hard_cut_does_not_leak(shipped, backbone):
    """Frames 0–2 from another picture, frame 3 on: output 3 is that of the clip that starts at frame 3."""
    other, shot = panned("rocket", 3), panned("chelsea", 3, step=(1, -2))
    clip = torch.cat([other, shot])
    feats = features(backbone, clip)
    cut = upsample(shipped, feats, clip, "unidirectional")[3]
    fresh = upsample(shipped, feats[3:], clip[3:], "unidirectional")[0]
    assert cosine(cut, fresh) >= 0.99


def test_a_fade_is_the_scene_not_a_degradation(shipped, backbone):
    """Frame 2 faded to 30 %: output 2 stays as close to the per-frame output of the faded frame as output 2 of
    the clean clip is to its own (the neighbours saw the unfaded scene and must not replace it)."""
    frames = panned("astronaut", 5)
    faded = frames.clone()
    faded[2] = faded[2] * 0.3
    for clip in (frames, faded):
        feats = features(backbone, clip)
        both = upsample(shipped, feats, clip, "bidirectional")[2]
        alone = upsample(shipped, feats[2:3], clip[2:3], "perframe")[0]
        if clip is frames:
            clean = cosine(both, alone)
        else:
            assert cosine(both, alone) >= clean - 0.01, (cosine(both, alone), clean)
