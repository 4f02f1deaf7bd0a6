"""JPEG frames: header size, decoding with the shorter side resized, and stacking into ``[T, 3, H, W]``.

Decode speed (measured on this project's 2-core CPU, one thread, 8 frames per video) chose the paths:
``torchvision.io.decode_jpeg`` + torch resize is 1.2-1.6x faster than PIL for frames smaller than twice the target
size; for larger frames PIL's ``draft`` (libjpeg downscales by 1/2, 1/4, 1/8 inside the DCT) is fastest, so both
are used. Every resize goes through :func:`~mmcls.data.transforms.resize_shorter_side`, which caps frames at 4:1
(centre crop) so a very thin frame cannot blow up in memory.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from mmcls.data.transforms import resize_shorter_side, shorter_side_size

try:  # deprecated since torchvision 0.29 (in favour of torchcodec) but still the fastest JPEG decoder here
    from torchvision.io import ImageReadMode, decode_jpeg

    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
except ImportError:  # removed in a later torchvision: PIL decodes everything
    decode_jpeg = None  # type: ignore[assignment]

JPEG_SUFFIXES = (".jpg", ".jpeg")
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's frame header without decoding; ``None`` if ``data`` is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


class NotJPEGError(ValueError):
    """Bytes that do not start like a JPEG."""


def decode_jpeg_frame(data: bytes, short_side: int | None = None) -> torch.Tensor:
    """JPEG bytes -> uint8 ``[3, H, W]`` RGB, resized so the shorter side is ``short_side`` (``None``: native).

    Frames at least twice the target size are decoded by PIL with ``draft`` (libjpeg scales by 1/2, 1/4, 1/8 in the
    DCT, much cheaper than decoding in full); the rest by ``torchvision.io.decode_jpeg`` (PIL when torchvision no
    longer has it). Both finish with an antialiased bilinear resize to the exact size.
    """
    size = jpeg_size(data)
    if size is None:
        raise NotJPEGError("not a JPEG")
    width, height = size
    downscale = short_side is not None and min(width, height) >= 2 * short_side
    if decode_jpeg is not None and not downscale:
        frame = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    else:
        image = Image.open(io.BytesIO(data))
        if downscale:
            target_h, target_w = shorter_side_size(height, width, short_side)  # type: ignore[arg-type]
            image.draft("RGB", (target_w, target_h))
        frame = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    return resize_shorter_side(frame, short_side)


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[3, H, W]`` frames; a frame whose size differs from the first is resized to it."""
    size = list(frames[0].shape[-2:])
    return torch.stack([f if list(f.shape[-2:]) == size else F.resize(f, size, antialias=True) for f in frames])
