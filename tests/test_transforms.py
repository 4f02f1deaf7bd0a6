"""Video transforms: one set of parameters per video, geometry, reproducibility, and device normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcls.config import DataConfig
from mmcls.data.transforms import (
    MAX_ASPECT,
    EvalVideoTransform,
    IdentityTransform,
    TrainVideoTransform,
    aspect_crop_box,
    build_video_transform,
    default_resize_size,
    random_resized_crop_box,
    resize_shorter_side,
    shorter_side_size,
)
from mmcls.models.pixels import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, normalize_frames


def random_video(t: int = 4, height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, height, width), dtype=torch.uint8, generator=gen)


def column_video(t: int, height: int, width: int) -> torch.Tensor:
    """Pixel value = column index (left dark, right bright): shows crops and flips."""
    cols = torch.arange(width, dtype=torch.uint8).expand(height, width)
    return cols.expand(t, 3, height, width).clone()


def test_train_transform_applies_the_same_parameters_to_every_frame():
    frame = random_video(1, 48, 64)
    video = frame.expand(6, -1, -1, -1).clone()
    transform = TrainVideoTransform(32, scale=(0.3, 1.0), hflip=0.5, color_jitter=0.4)
    for seed in range(10):
        out = transform(video, torch.Generator().manual_seed(seed))
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[i]) for i in range(1, 6))


def test_train_transform_matches_per_frame_application_of_the_same_params():
    video = random_video(3, 40, 56)
    transform = TrainVideoTransform(24, scale=(0.5, 1.0), color_jitter=0.3)
    params = transform.sample_params(40, 56, torch.Generator().manual_seed(3))
    batched = transform.apply(video, params)
    single = torch.cat([transform.apply(video[i:i + 1], params) for i in range(3)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("rng_kind", ["torch", "numpy"])
def test_train_transform_is_reproducible_per_sample(rng_kind):
    video = random_video()
    transform = TrainVideoTransform(24, scale=(0.2, 1.0), color_jitter=0.2)

    def make(seed):
        return torch.Generator().manual_seed(seed) if rng_kind == "torch" else np.random.default_rng(seed)

    assert torch.equal(transform(video, make(1)), transform(video, make(1)))
    outs = {transform(video, make(s)).float().sum().item() for s in range(8)}
    assert len(outs) > 1


def test_flip_always_with_probability_one_and_never_with_zero():
    video = column_video(2, 32, 32)
    full = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "color_jitter": 0.0}
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        flipped = TrainVideoTransform(32, hflip=1.0, **full)(video, gen)
        kept = TrainVideoTransform(32, hflip=0.0, **full)(video, gen)
        assert torch.equal(kept, video)
        assert torch.equal(flipped, video.flip(-1))


def test_flip_probability_is_respected_and_shared_across_frames():
    video = column_video(3, 16, 16)
    transform = TrainVideoTransform(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.5)
    gen = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(400):
        out = transform(video, gen)
        states = {bool(out[i, 0, 0, 0] > out[i, 0, 0, -1]) for i in range(3)}
        assert len(states) == 1
        flips += states.pop()
    assert 150 < flips < 250


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), lo=st.floats(0.05, 1.0), seed=st.integers(0, 10**6))
def test_random_resized_crop_box_stays_inside_the_frame(height, width, lo, seed):
    top, left, h, w = random_resized_crop_box(height, width, (lo, 1.0), (3 / 4, 4 / 3), np.random.default_rng(seed))
    assert 0 < h <= height and 0 < w <= width
    assert 0 <= top <= height - h and 0 <= left <= width - w


def test_eval_transform_is_a_deterministic_centre_crop():
    video = column_video(2, 32, 48)  # shorter side already at resize_size: no resize
    transform = EvalVideoTransform(frame_size=28, resize_size=32)
    out = transform(video)
    assert out.shape == (2, 3, 28, 28) and out.dtype == torch.uint8 and out.is_contiguous()
    assert torch.equal(out, video[..., 2:30, 10:38])
    assert torch.equal(out, transform(video, torch.Generator().manual_seed(5)))


def test_eval_transform_resizes_the_shorter_side_first():
    video = random_video(2, 60, 90)
    out = EvalVideoTransform(frame_size=24, resize_size=32)(video)
    assert out.shape == (2, 3, 24, 24)
    resized = resize_shorter_side(video, 32)
    assert resized.shape[-2:] == (32, 48)
    assert torch.equal(out, resized[..., 4:28, 12:36])


@pytest.mark.parametrize(("height", "width", "expected"), [
    (10, 3000, (32, 128)),   # 3000x10 would become 9600x32: centre-cropped to 4:1 first
    (3000, 10, (128, 32)),
    (16, 64, (32, 128)),     # exactly 4:1: nothing cropped
    (20, 100, (32, 128)),    # 5:1
    (60, 90, (32, 48)),      # ordinary frames: a plain shorter-side resize
])
def test_resize_shorter_side_caps_the_longer_side(height, width, expected):
    video = column_video(2, height, width) if width < 256 else random_video(2, height, width)
    out = resize_shorter_side(video, 32)
    assert out.shape == (2, 3, *expected) and out.is_contiguous()
    assert max(out.shape[-2:]) <= MAX_ASPECT * 32


def test_resize_shorter_side_keeps_the_centre_of_a_thin_frame():
    video = column_video(1, 10, 200)  # columns 0..199
    out = resize_shorter_side(video, 10)
    assert out.shape == (1, 3, 10, 40)
    assert torch.equal(out, video[..., 80:120])  # no scaling needed: exactly the centre 40 columns
    assert aspect_crop_box(10, 200) == (0, 80, 10, 40) and aspect_crop_box(200, 10) == (80, 0, 40, 10)
    assert aspect_crop_box(48, 64) == (0, 0, 48, 64)


def test_resize_shorter_side_none_keeps_the_native_size():
    video = random_video(2, 10, 300).permute(0, 1, 3, 2)  # a non-contiguous view, 300x10
    out = resize_shorter_side(video, None)
    assert torch.equal(out, video) and out.is_contiguous()


def test_sizes_and_builder():
    assert shorter_side_size(240, 320, 256) == (256, 341)
    assert shorter_side_size(320, 240, 256) == (341, 256)
    assert default_resize_size(224) == 256
    train = build_video_transform(DataConfig(frame_size=64, hflip=0.25, color_jitter=0.0), train=True)
    assert isinstance(train, TrainVideoTransform)
    assert train.frame_size == 64 and train.hflip == 0.25 and train.scale == (0.6, 1.0)
    ev = build_video_transform(DataConfig(frame_size=64), train=False)
    assert isinstance(ev, EvalVideoTransform) and ev.resize_size == 73
    ev = build_video_transform(DataConfig(frame_size=64, resize_size=80), train=False)
    assert isinstance(ev, EvalVideoTransform) and ev.resize_size == 80
    assert isinstance(build_video_transform(DataConfig(frame_source="feats"), train=True), IdentityTransform)


@pytest.mark.parametrize("train", [True, False])
def test_empty_and_non_square_videos(train):
    transform = build_video_transform(DataConfig(frame_size=20), train=train)
    assert transform(torch.zeros(0, 3, 30, 40, dtype=torch.uint8)).shape == (0, 3, 20, 20)
    out = transform(random_video(5, 23, 70), torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 20, 20) and out.dtype == torch.uint8


def test_normalize_matches_a_manual_computation():
    frames = random_video(2, 8, 8)[None]  # [B, T, 3, H, W]
    for mean, std in NORMALIZATIONS.values():
        out = normalize_frames(frames, mean, std)
        manual = (frames.double() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        assert out.dtype == torch.float32 and out.shape == frames.shape
        assert torch.allclose(out.double(), manual, atol=1e-5)
    half = normalize_frames(frames, CLIP_MEAN, CLIP_STD, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), normalize_frames(frames, CLIP_MEAN, CLIP_STD), atol=0.02)
    assert NORMALIZATIONS["imagenet"] == (IMAGENET_MEAN, IMAGENET_STD)


def test_normalize_rejects_non_uint8_and_wrong_channels():
    with pytest.raises(TypeError):
        normalize_frames(torch.zeros(1, 3, 4, 4), CLIP_MEAN, CLIP_STD)
    with pytest.raises(ValueError):
        normalize_frames(torch.zeros(1, 4, 4, 4, dtype=torch.uint8), CLIP_MEAN, CLIP_STD)


def test_fused_color_jitter_matches_torchvision_ops():
    from torchvision.transforms.v2 import functional as tvf

    from mmcls.data.transforms import color_jitter

    frames = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(color_jitter(frames, 1.0, 1.0, 1.0), frames)
    cases = [((1.3, 1.0, 1.0), tvf.adjust_brightness, 1.3), ((1.0, 0.7, 1.0), tvf.adjust_contrast, 0.7),
             ((1.0, 1.0, 1.4), tvf.adjust_saturation, 1.4)]
    for factors, op, factor in cases:  # torchvision truncates where we round: at most one level apart
        diff = color_jitter(frames, *factors).int() - op(frames, factor).int()
        assert diff.abs().max() <= 1, op.__name__
    both = color_jitter(frames, 1.2, 0.8, 1.0, order=(1, 0, 2)).int()
    expected = tvf.adjust_brightness(tvf.adjust_contrast(frames, 0.8), 1.2).int()
    assert (both - expected).abs().max() <= 2  # the order is honoured
