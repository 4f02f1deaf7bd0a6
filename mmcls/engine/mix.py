"""Mixup / CutMix on the frames of a training batch, one mix per video (the same for all its frames).

:func:`mix_frames` mixes the inputs and returns the :class:`~mmcls.engine.losses.Mixing` that
:class:`~mmcls.engine.losses.Criterion` applies to the labels. Randomness comes only from the ``torch.Generator``
passed in: the partner permutation is ``torch.randperm`` on it, and the scalar draws (whether to mix, mixup or
CutMix, the Beta coefficient, the box) come from a ``numpy`` generator seeded with one integer drawn from it. So a
fixed generator state gives the same mix, on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmcls.config import MixConfig
from mmcls.engine.losses import Mixing
from mmcls.models.pixels import normalize_frames


def mix_frames(frames: torch.Tensor, frame_mask: torch.Tensor, cfg: MixConfig, generator: torch.Generator,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, Mixing] | None:
    """Mixed ``(frames, frame_mask, mixing)``, or None when this batch is not mixed (probability ``1 - cfg.prob``).

    ``frames``: uint8 pixels ``[B, T, 3, H, W]`` (normalised with ``mean``/``std`` first, returned as float32, which
    the model takes as normalised), float pixels (taken as normalised) or float features ``[B, T, D]`` (mixup only).
    Each video is paired with a random partner. Mixup blends whole frames with ``lam ~ Beta(mixup_alpha)``; CutMix
    pastes one box of the partner, the same box for every frame of every video, and ``lam`` is the exact kept area.
    With both on, CutMix is chosen with probability ``cfg.switch_prob``. Where only one video of a pair has frame
    ``t`` it is used unmixed; the returned mask is ``frame_mask | frame_mask[perm]``. ``generator`` is a CPU one.
    """
    if frames.ndim not in (3, 5):
        raise ValueError(f"frames must be [B, T, 3, H, W] pixels or [B, T, D] features, got {tuple(frames.shape)}")
    if frames.ndim == 3 and cfg.cutmix_alpha > 0:
        raise ValueError("CutMix needs pixel frames; with frame features use mixup only (train.mix.cutmix_alpha=0)")
    if not cfg.enabled:
        return None
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    if rng.random() >= cfg.prob:
        return None
    perm = torch.randperm(frames.shape[0], generator=generator).to(frames.device)
    x = _as_float(frames, mean, std)
    partner = x[perm]
    if _use_cutmix(cfg, rng):
        mixed, lam = _cutmix(x, partner, rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha), rng)
    else:
        lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
        mixed = lam * x + (1.0 - lam) * partner
    mask_partner = frame_mask[perm]
    mixed = _keep_single_frames(mixed, x, partner, frame_mask, mask_partner).to(x.dtype)
    return mixed, frame_mask | mask_partner, Mixing(perm=perm, lam=lam)


def _as_float(frames: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """uint8 pixels -> normalised float32; float frames or features as they are."""
    if frames.dtype != torch.uint8:
        return frames
    if mean is None or std is None:
        raise ValueError("mixing uint8 pixels needs the vision tower's mean and std")
    return normalize_frames(frames, mean, std)


def _use_cutmix(cfg: MixConfig, rng: np.random.Generator) -> bool:
    """CutMix when it is the only one on, or with probability ``switch_prob`` when both are."""
    if cfg.cutmix_alpha > 0 and cfg.mixup_alpha > 0:
        return bool(rng.random() < cfg.switch_prob)
    return cfg.cutmix_alpha > 0


def _cutmix(x: torch.Tensor, partner: torch.Tensor, lam: float,
            rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """Paste one box of ``partner`` into ``x`` (all videos and frames); returns the result and the kept area."""
    h, w = x.shape[-2:]
    y0, y1, x0, x1 = _box(h, w, lam, rng)
    mixed = x.clone()
    mixed[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
    return mixed, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def _box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of about ``1 - lam`` of the area around a uniform random centre, clipped to the image (as timm does)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    return y0, y1, x0, x1


def _keep_single_frames(mixed: torch.Tensor, own: torch.Tensor, partner: torch.Tensor, mask: torch.Tensor,
                        mask_partner: torch.Tensor) -> torch.Tensor:
    """``mixed`` where both videos have frame ``t``, else whichever of the two has it."""
    extra = (1,) * (own.ndim - 2)
    both = (mask & mask_partner).view(*mask.shape, *extra)  # [B, T, 1, ...]
    only_own = mask.view(*mask.shape, *extra)
    return torch.where(both, mixed, torch.where(only_own, own, partner))
