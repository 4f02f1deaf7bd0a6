"""Optimizer and learning-rate schedule.

Parameters are grouped by model part (vision tower, text tower, fusion layers, heads), each with its own learning
rate, optionally scaled per parameter (layer-wise decay inside the towers), and split again so that biases, norm
weights and embedding tables get no weight decay. The optimizer is AdamW, Nesterov SGD, RAdam or Ranger (RAdam +
Lookahead). The schedule is a function of the optimizer-update count (never of forward passes or processes):
linear warm-up, then cosine, linear or constant decay towards ``min_lr_ratio`` of the peak, or SGDR (cosine with
warm restarts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mmcls.config import TrainConfig

PART_LR_KEYS = {"vision": "lr_vision", "text": "lr_text", "fusion": "lr", "heads": "lr"}
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-6
LOOKAHEAD_ALPHA, LOOKAHEAD_K = 0.5, 6

NamedParts = Mapping[str, Iterable[tuple[str, nn.Parameter]]]


# embedding and position tables, learned tokens: BERT's *_embeddings, CLIP's positional_embedding / class_embedding,
# timm's pos_embed / cls_token / reg_token, Swin's relative_position_bias_table, the frame position table
_NO_DECAY_NAME = re.compile(r"embedding|pos_embed|position|(^|[._])(cls|reg|dist|mask)_token$")


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm scales (1-D tensors), embedding and position tables and learned tokens skip weight decay."""
    return param.ndim <= 1 or name.endswith(".bias") or bool(_NO_DECAY_NAME.search(name.lower()))


def _scale_tags(named: list[tuple[str, nn.Parameter]], lr_scales: Mapping[str, float]) -> dict[float, str]:
    """Name tag per distinct scale of a part: ``""`` for 1, else ``down{k}`` for its k-th largest scale.

    With layer-wise decay ``k`` is the number of layers below the top of the tower. Ranks are taken over all of the
    part's parameters (frozen ones too), so the names do not depend on what is frozen.
    """
    scales = sorted({lr_scales.get(name, 1.0) for name, _ in named}, reverse=True)
    return {scale: "" if scale == 1.0 else f"down{rank}" for rank, scale in enumerate(scales)}


def param_groups(named_parts: NamedParts, cfg: TrainConfig, lr_scales: Mapping[str, float] | None = None
                 ) -> list[dict]:
    """Optimizer groups: one per (part, learning-rate scale, decay / no decay) with trainable parameters.

    A parameter's peak ``lr`` is its part's rate (``PART_LR_KEYS``) times ``lr_scales[name]`` (1 when absent).
    Each group is tagged with a unique ``name``, its ``part`` (``vision``, ``text``, ``fusion``, ``heads``) and keeps
    its ``lr_scale``: ``text.decay`` at scale 1, ``text.down2.no_decay`` at the part's third-largest scale (two
    layers below the top under layer-wise decay). Read the part from ``part``, never from the name.
    """
    scales = lr_scales or {}
    groups = []
    for part, params in named_parts.items():
        named = list(params)
        part_lr = getattr(cfg, PART_LR_KEYS[part])
        tags = _scale_tags(named, scales)
        buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, param in named:
            if param.requires_grad:
                key = (scales.get(name, 1.0), not no_weight_decay(name, param))
                buckets.setdefault(key, []).append(param)
        for (scale, decay), members in sorted(buckets.items(), key=lambda item: (-item[0][0], not item[0][1])):
            prefix = ".".join(filter(None, (part, tags[scale])))
            groups.append({"name": f"{prefix}.{'decay' if decay else 'no_decay'}", "part": part, "params": members,
                           "lr": part_lr * scale, "lr_scale": scale,
                           "weight_decay": cfg.weight_decay if decay else 0.0})
    return groups


def named_parts(model: nn.Module, parts: Mapping[str, Iterable[nn.Parameter]]
                ) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Attach each parameter's name (from ``model.named_parameters()``) to a ``{part: [params]}`` grouping."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {part: [(names[id(p)], p) for p in params] for part, params in parts.items()}


def build_optimizer(named_parts: NamedParts, cfg: TrainConfig, lr_scales: Mapping[str, float] | None = None
                    ) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over :func:`param_groups`.

    adamw: AdamW (the fused CUDA kernel when every parameter is on a GPU); sgd: SGD with Nesterov momentum
    ``cfg.momentum`` (plain SGD at momentum 0) and L2 weight decay; radam: RAdam with decoupled (AdamW-style)
    weight decay; ranger: that RAdam inside timm's Lookahead, which every 6 updates moves slow weights halfway to
    the fast ones and resets the fast ones to them (timm takes the slow weights at the first sync, update 6).
    """
    groups = param_groups(named_parts, cfg, lr_scales)
    if cfg.optimizer == "adamw":
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=on_cuda or None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer in ("radam", "ranger"):
        radam = torch.optim.RAdam(groups, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, decoupled_weight_decay=True)
        if cfg.optimizer == "radam":
            return radam
        from timm.optim import Lookahead

        return Lookahead(radam, alpha=LOOKAHEAD_ALPHA, k=LOOKAHEAD_K)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


REPORTED_PARTS = ("fusion", "heads")  # the parts at train.lr, whose rate is logged as ``lr``


def reported_lr(optimizer: torch.optim.Optimizer) -> float:
    """The current learning rate logged as ``lr``: that of the first group of the fusion layers or heads (their
    ``part``, at ``train.lr`` times the schedule); the first group's when there is none (everything else frozen)."""
    for group in optimizer.param_groups:
        if group.get("part") in REPORTED_PARTS:
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def optimizer_for(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The training optimizer of a classifier: its parameter parts, with layer-wise decay when ``layer_decay < 1``."""
    from mmcls.models import parameter_groups
    from mmcls.models.layers import layer_decay_scales

    scales = layer_decay_scales(model, cfg.layer_decay) if cfg.layer_decay < 1 else None
    return build_optimizer(named_parts(model, parameter_groups(model)), cfg, scales)


def _shape(schedule: str, progress: float) -> float:
    """Decay curve from 1 (progress 0) to 0 (progress 1)."""
    if schedule == "linear":
        return 1.0 - progress
    if schedule in ("cosine", "cosine_restarts"):
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def lr_factor(update: int, total: int, warmup: int, schedule: str, min_ratio: float, cycles: int = 1,
              cycle_decay: float = 1.0) -> float:
    """Multiplier of the peak learning rate after ``update`` optimizer updates (0-based) out of ``total``.

    ``cosine_restarts`` (SGDR) splits the updates after warm-up into ``cycles`` equal cosine cycles; cycle ``i``
    restarts at ``cycle_decay ** i`` (never below ``min_ratio``) and decays to ``min_ratio``.
    """
    if warmup > 0 and update < warmup:
        return (update + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    done, span = min(update - warmup, total - warmup), total - warmup
    peak, progress = 1.0, done / span
    if schedule == "cosine_restarts":
        position = cycles * done / span  # exact at cycle boundaries when span divides evenly
        index = min(int(position), cycles - 1)
        peak, progress = max(cycle_decay ** index, min_ratio), position - index
    return min_ratio + (peak - min_ratio) * _shape(schedule, progress)


def warmup_updates(cfg: TrainConfig, total: int) -> int:
    """Warm-up length in updates: ``warmup_steps`` if set, else ``warmup_ratio`` of ``total``."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else round(cfg.warmup_ratio * total)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_updates: int) -> LambdaLR:
    """Per-update schedule; step it once per optimizer update (not per process, not per micro-batch)."""
    warmup = warmup_updates(cfg, total_updates)
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_updates, warmup, cfg.schedule, cfg.min_lr_ratio,
                                                      cfg.cycles, cfg.cycle_decay))
