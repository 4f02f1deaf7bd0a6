"""Pixel statistics of the vision towers and the on-device normalisation of uint8 frames.

Frames travel as uint8 ``[..., 3, H, W]`` (the data pipeline never normalises); the encoder (or CutMix, which mixes
normalised pixels) turns them into floats with the statistics of the tower that reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Stats = tuple[float, float, float]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "clip": (CLIP_MEAN, CLIP_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}


def normalize_frames(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> ``(x / 255 - mean) / std`` as ``dtype``, on ``frames``' device.

    Computed in float32 (one fused multiply-add) and cast once, so half-precision outputs are rounded only once.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"normalize_frames expects uint8 frames, got {frames.dtype}")
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"normalize_frames expects [..., 3, H, W], got {tuple(frames.shape)}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    scale = 1.0 / (255.0 * std_t)
    shift = -mean_t / std_t
    return torch.addcmul(shift, frames.to(torch.float32), scale).to(dtype)
