"""Video transforms on uint8 ``[T, 3, H, W]`` tensors.

A transform draws ONE set of random parameters per video and applies it to every frame (the torchvision v2
functional ops treat the leading ``T`` dimension as a batch), so the frames of a video stay consistent. Randomness
comes from the ``rng`` passed per call (a ``torch.Generator`` or a ``numpy.random.Generator``), which makes a sample
reproducible; ``None`` uses torch's global generator (seeded per DataLoader worker).

Frames stay uint8 on the host; :func:`mmcls.models.pixels.normalize_frames` turns them into floats on the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from mmcls.config import DataConfig

Rng = torch.Generator | np.random.Generator | None


# ----------------------------------------------------------------------------------------------------------------
# sizes


def default_resize_size(frame_size: int) -> int:
    """The standard 256/224 ratio: the shorter side before a ``frame_size`` centre crop."""
    return round(frame_size * 256 / 224)


def resolve_resize_size(cfg: DataConfig) -> int:
    """``cfg.resize_size``, or the 256/224 default for ``cfg.frame_size``."""
    return cfg.resize_size if cfg.resize_size is not None else default_resize_size(cfg.frame_size)


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` scaled so that the shorter side is ``size``, keeping the aspect ratio."""
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


MAX_ASPECT = 4
"""Frames resized by :func:`resize_shorter_side` are at most ``MAX_ASPECT : 1``: the longer side is capped at
``MAX_ASPECT * size`` (more elongated frames lose their ends to a centre crop), which bounds memory when a very thin
frame (e.g. 3000x10) has its shorter side scaled up."""


def aspect_crop_box(height: int, width: int, max_aspect: float = MAX_ASPECT) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the centred crop whose longer side is at most ``max_aspect`` x the shorter side."""
    if height <= width:
        w = min(width, max(1, math.floor(height * max_aspect)))
        return 0, (width - w) // 2, height, w
    h = min(height, max(1, math.floor(width * max_aspect)))
    return (height - h) // 2, 0, h, width


def resize_shorter_side(frames: torch.Tensor, size: int | None, max_aspect: float = MAX_ASPECT) -> torch.Tensor:
    """Antialiased bilinear resize of ``[..., H, W]`` so the shorter side is ``size``; contiguous output.

    Frames more elongated than ``max_aspect : 1`` are first centre-cropped to that ratio (see :data:`MAX_ASPECT`).
    ``size=None`` keeps the native size (no crop either).
    """
    if size is None:
        return frames.contiguous()
    height, width = frames.shape[-2:]
    top, left, h, w = aspect_crop_box(height, width, max_aspect)
    if (h, w) != (height, width):
        frames = frames[..., top:top + h, left:left + w]
    target = shorter_side_size(h, w, size)
    if target != (h, w):
        frames = F.resize(frames, list(target), antialias=True)
    return frames.contiguous()


# ----------------------------------------------------------------------------------------------------------------
# randomness


def uniform(rng: Rng, low: float = 0.0, high: float = 1.0) -> float:
    """One float in ``[low, high)`` from a torch or numpy generator (torch's global one when ``None``)."""
    u = float(rng.random()) if isinstance(rng, np.random.Generator) else float(torch.rand((), generator=rng))
    return low + (high - low) * u


def randint(rng: Rng, high: int) -> int:
    """One integer in ``[0, high)``."""
    return min(high - 1, int(uniform(rng) * high))


# ----------------------------------------------------------------------------------------------------------------
# transforms


class VideoTransform(Protocol):
    """``uint8 [T, 3, H, W] -> uint8 [T, 3, S, S]`` with one set of random parameters per call."""

    def __call__(self, frames: torch.Tensor, rng: Rng = None) -> torch.Tensor: ...


def _empty_like(frames: torch.Tensor, size: int) -> torch.Tensor:
    return frames.new_empty((0, *frames.shape[1:-2], size, size))


@dataclass(frozen=True)
class CropParams:
    """One video's training augmentation: crop box, flip and colour factors (applied in ``jitter_order``)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    jitter_order: tuple[int, ...] = (0, 1, 2)


def random_resized_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                            rng: Rng) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop covering ``scale`` of the area with aspect ``ratio`` (torchvision's rule)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * uniform(rng, scale[0], scale[1])
        aspect = math.exp(uniform(rng, log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return randint(rng, height - h + 1), randint(rng, width - w + 1), h, w
    in_ratio = width / height  # fallback: the largest centred crop with an allowed aspect ratio
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _grayscale(frames: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of float ``[..., 3, H, W]`` frames, as ``[..., 1, H, W]``."""
    r, g, b = frames.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def color_jitter(frames: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 order: Sequence[int] = (0, 1, 2)) -> torch.Tensor:
    """Brightness, contrast and saturation adjustments (torchvision's formulas) in one float pass over uint8 frames.

    Fusing them converts to float and back once instead of three times, about twice as fast as the three
    torchvision ops in a row. Contrast blends each frame with the mean of its own grayscale.
    """
    out = frames.float()
    for i in order:
        if i == 0 and brightness != 1.0:
            out.mul_(brightness).clamp_(0, 255)
        elif i == 1 and contrast != 1.0:
            mean = _grayscale(out).mean(dim=(-3, -2, -1), keepdim=True)
            out.mul_(contrast).add_((1.0 - contrast) * mean).clamp_(0, 255)
        elif i == 2 and saturation != 1.0:
            gray = _grayscale(out)  # before the in-place scaling below
            out.mul_(saturation).add_((1.0 - saturation) * gray).clamp_(0, 255)
    return out.round_().to(torch.uint8)


@dataclass
class TrainVideoTransform:
    """Random resized crop to ``frame_size``, horizontal flip, light colour jitter; same parameters for all frames."""

    frame_size: int
    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.0

    def sample_params(self, height: int, width: int, rng: Rng = None) -> CropParams:
        """Draw one video's parameters (a fixed number of draws after the crop, so streams stay aligned)."""
        top, left, h, w = random_resized_crop_box(height, width, self.scale, self.ratio, rng)
        flip = uniform(rng) < self.hflip
        lo, hi = max(0.0, 1.0 - self.color_jitter), 1.0 + self.color_jitter
        factors = [uniform(rng, lo, hi) for _ in range(3)]
        order = tuple(int(i) for i in np.argsort([uniform(rng) for _ in range(3)]))
        return CropParams(top, left, h, w, flip, *factors, jitter_order=order)

    def apply(self, frames: torch.Tensor, params: CropParams) -> torch.Tensor:
        """Apply ``params`` to every frame of ``frames`` (``[T, 3, H, W]`` uint8)."""
        size = [self.frame_size, self.frame_size]
        out = F.resized_crop(frames, params.top, params.left, params.height, params.width, size, antialias=True)
        if params.flip:
            out = F.horizontal_flip(out)
        if self.color_jitter > 0:
            out = color_jitter(out, params.brightness, params.contrast, params.saturation, params.jitter_order)
        return out.contiguous()

    def __call__(self, frames: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        return self.with_flip(frames, rng)[0]

    def with_flip(self, frames: torch.Tensor, rng: Rng = None) -> tuple[torch.Tensor, bool]:
        """``(transformed frames, whether they were flipped horizontally)``: the same draws as a call, so a
        dataset can swap the labels of exactly the videos it flipped (``data.flip_label_map``)."""
        if frames.shape[0] == 0:
            return _empty_like(frames, self.frame_size), False
        height, width = frames.shape[-2:]
        params = self.sample_params(height, width, rng)
        return self.apply(frames, params), params.flip


@dataclass
class EvalVideoTransform:
    """Resize the shorter side to ``resize_size``, then centre-crop ``frame_size`` (deterministic)."""

    frame_size: int
    resize_size: int

    def __call__(self, frames: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        if frames.shape[0] == 0:
            return _empty_like(frames, self.frame_size)
        frames = resize_shorter_side(frames, self.resize_size)
        return F.center_crop(frames, [self.frame_size, self.frame_size]).contiguous()


class IdentityTransform:
    """Pass-through (frame features need no image transform)."""

    def __call__(self, frames: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        return frames


def build_video_transform(cfg: DataConfig, train: bool) -> VideoTransform:
    """The training or evaluation transform of ``cfg`` (identity for ``frame_source: feats``)."""
    if cfg.reads_features:
        return IdentityTransform()
    if train:
        lo, hi = cfg.train_crop_scale
        return TrainVideoTransform(cfg.frame_size, scale=(lo, hi), hflip=cfg.hflip, color_jitter=cfg.color_jitter)
    return EvalVideoTransform(cfg.frame_size, resolve_resize_size(cfg))
