"""JPEG decoding (:mod:`mmcls.data.jpeg`): header size, both decode paths, the shorter-side resize, stacking."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mmcls.data.jpeg import decode_jpeg_frame, jpeg_size, stack_frames
from tests.media import frame_array, jpeg_bytes, level

# mmcls silences torchvision 0.29's per-call deprecation of decode_jpeg at import; pytest resets filters per test
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def test_jpeg_size_reads_the_header_and_rejects_other_formats():
    assert jpeg_size(jpeg_bytes(frame_array(0, 30, 70))) == (70, 30)
    assert jpeg_size(jpeg_bytes(frame_array(0, 30, 70), progressive=True)) == (70, 30)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert jpeg_size(png.getvalue()) is None
    assert jpeg_size(b"") is None
    assert jpeg_size(b"\xff\xd8\xff") is None


@pytest.mark.parametrize(("height", "width", "short_side", "expected"), [
    (48, 64, None, (48, 64)),     # native
    (48, 64, 32, (32, 43)),       # small image: torchvision decode + resize
    (64, 48, 80, (107, 80)),      # upscale, portrait
    (240, 320, 56, (56, 75)),     # >= 2x the target: PIL draft (DCT downscale) + resize
])
def test_decode_jpeg_frame_resizes_the_shorter_side(height, width, short_side, expected):
    frame = decode_jpeg_frame(jpeg_bytes(frame_array(5, height, width)), short_side)
    assert frame.dtype == torch.uint8 and frame.shape == (3, *expected)
    assert frame.is_contiguous()
    assert abs(frame.float().mean().item() - level(5)) <= 2


@pytest.mark.parametrize(("height", "width", "expected"), [(10, 3000, (32, 128)), (3000, 10, (128, 32))])
def test_very_thin_frames_are_capped_at_four_to_one(height, width, expected):
    """Scaling the shorter side 10 -> 32 would make a 32x9600 frame: the centre is kept, at most 4:1."""
    array = np.full((height, width, 3), 200, np.uint8)
    centre = (slice(None), slice(None)) if height > width else (slice(None), slice(width // 2 - 20, width // 2 + 20))
    array[centre] = 40  # only the centre 40 columns of the wide frame are dark
    frame = decode_jpeg_frame(jpeg_bytes(array), 32)
    assert frame.shape == (3, *expected)
    if height < width:
        assert frame.float().mean() < 50  # the centre crop, not a squashed whole frame


def test_stack_frames_resizes_odd_frames_to_the_first():
    frames = [torch.full((3, 8, 12), 50, dtype=torch.uint8), torch.full((3, 16, 24), 90, dtype=torch.uint8)]
    stacked = stack_frames(frames)
    assert stacked.shape == (2, 3, 8, 12) and stacked[1].float().mean() == 90


def test_both_jpeg_paths_agree():
    data = jpeg_bytes(np.asarray(Image.radial_gradient("L").convert("RGB").resize((160, 120))))
    small = decode_jpeg_frame(data, 60)     # 120 >= 2 * 60: PIL draft path
    large = decode_jpeg_frame(data, 61)     # torchvision path
    assert small.shape == (3, 60, 80) and large.shape == (3, 61, 81)
    resized = torch.nn.functional.interpolate(large[None].float(), size=(60, 80), mode="bilinear", antialias=True)
    assert (resized[0] - small.float()).abs().mean() < 3
