"""Optimizer and learning-rate schedule.

Parameters are grouped by model part (vision tower, text tower, fusion layers, heads), each with its own learning
rate, and split again so that biases, norm weights and embedding tables get no weight decay. The schedule is a
function of the optimizer-update count (never of forward passes or processes): linear warm-up, then cosine, linear
or constant decay towards ``min_lr_ratio`` of the peak.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mmcls.config import TrainConfig

PART_LR_KEYS = {"vision": "lr_vision", "text": "lr_text", "fusion": "lr", "heads": "lr"}


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm scales and embedding tables (1-D tensors or names containing ``embedding``) skip decay."""
    return param.ndim <= 1 or "embedding" in name.lower() or name.endswith(".bias")


def param_groups(named_parts: Mapping[str, Iterable[tuple[str, nn.Parameter]]], cfg: TrainConfig) -> list[dict]:
    """AdamW groups: one per (part, decay / no decay), each tagged with ``name`` and its peak ``lr``."""
    groups = []
    for part, named in named_parts.items():
        lr = getattr(cfg, PART_LR_KEYS[part])
        decay, plain = [], []
        for name, param in named:
            if param.requires_grad:
                (plain if no_weight_decay(name, param) else decay).append(param)
        for suffix, params, wd in (("decay", decay, cfg.weight_decay), ("no_decay", plain, 0.0)):
            if params:
                groups.append({"name": f"{part}.{suffix}", "params": params, "lr": lr, "weight_decay": wd})
    return groups


def named_parts(model: nn.Module, parts: Mapping[str, Iterable[nn.Parameter]]
                ) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Attach each parameter's name (from ``model.named_parameters()``) to a ``{part: [params]}`` grouping."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {part: [(names[id(p)], p) for p in params] for part, params in parts.items()}


def build_optimizer(named_parts: Mapping[str, Iterable[tuple[str, nn.Parameter]]], cfg: TrainConfig
                    ) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups` (the fused CUDA kernel when every parameter is on a GPU)."""
    groups = param_groups(named_parts, cfg)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6, fused=on_cuda or None)


def lr_factor(update: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate after ``update`` optimizer updates (0-based) out of ``total``."""
    if warmup > 0 and update < warmup:
        return (update + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    if schedule == "linear":
        shape = 1.0 - progress
    elif schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return min_ratio + (1.0 - min_ratio) * shape


def warmup_updates(cfg: TrainConfig, total: int) -> int:
    """Warm-up length in updates: ``warmup_steps`` if set, else ``warmup_ratio`` of ``total``."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else round(cfg.warmup_ratio * total)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_updates: int) -> LambdaLR:
    """Per-update schedule; step it once per optimizer update (not per process, not per micro-batch)."""
    warmup = warmup_updates(cfg, total_updates)
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_updates, warmup, cfg.schedule, cfg.min_lr_ratio))
