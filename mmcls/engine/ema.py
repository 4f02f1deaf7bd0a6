"""Exponential moving average of the weights (``train.ema``): timm's ``ModelEmaV3``, built from the config.

The training loop calls ``ema.update(unwrapped_model, step=update)`` after each optimizer update, with ``update``
the number of updates done so far (1 after the first), and validates / exports ``ema.module``. With
``train.ema.warmup`` the decay used at update ``t`` is ``min(decay, 1 - (1 + t) ** (-2/3))``; without it, ``decay``
from the first update on. The EMA is a module, so its ``state_dict`` goes into the resumable checkpoints.
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn

from mmcls.config import EmaConfig

WARMUP_POWER = 2 / 3


def build_ema(model: nn.Module, cfg: EmaConfig) -> ModelEmaV3 | None:
    """A float32 EMA copy of ``model`` on the model's device, or None when ``cfg.decay`` is 0 (EMA off)."""
    if cfg.decay == 0:
        return None
    ema = ModelEmaV3(
        model,
        decay=cfg.decay,
        # timm counts warm-up steps from step - update_after_step - 1: -1 makes step t use (1 + t) ** -power
        update_after_step=-1,
        use_warmup=cfg.warmup,
        warmup_gamma=1.0,
        warmup_power=WARMUP_POWER,
        dtype=torch.float32,
    )
    ema.module.requires_grad_(False)  # evaluated only: never builds an autograd graph
    return ema
