"""Parameter groups and the per-update learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmcls.config import build_config
from mmcls.engine.optim import build_optimizer, build_scheduler, lr_factor, no_weight_decay, param_groups


def test_lr_factor_warmup_then_cosine_linear_constant():
    assert [lr_factor(u, 10, 4, "cosine", 0.0) for u in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(7, 10, 4, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(10, 10, 4, "cosine", 0.0) == pytest.approx(0.0)
    assert lr_factor(7, 10, 4, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(10, 10, 4, "linear", 0.2) == pytest.approx(0.2)
    assert lr_factor(9, 10, 0, "constant", 0.0) == 1.0


def test_scheduler_steps_per_update_and_groups_keep_their_peak():
    cfg = build_config({}, ["train.lr=1e-3", "train.lr_text=1e-4", "train.lr_vision=1e-5", "train.warmup_steps=2",
                            "train.schedule=linear"]).train
    parts = {"vision": [("v.weight", nn.Parameter(torch.ones(2, 2)))],
             "text": [("t.weight", nn.Parameter(torch.ones(2, 2))), ("t.bias", nn.Parameter(torch.ones(2)))],
             "heads": [("h.weight", nn.Parameter(torch.ones(2, 2)))]}
    optimizer = build_optimizer(parts, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_updates=6)
    peaks = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}
    assert peaks == {"vision.decay": 1e-5, "text.decay": 1e-4, "text.no_decay": 1e-4, "heads.decay": 1e-3}
    seen = []
    for _ in range(6):
        seen.append([g["lr"] / peaks[g["name"]] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    expected = [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    for row, factor in zip(seen, expected, strict=True):
        assert row == pytest.approx([factor] * 4)


def test_no_weight_decay_on_biases_norms_and_embedding_tables():
    model = nn.ModuleDict({"linear": nn.Linear(3, 3), "norm": nn.LayerNorm(3), "word_embeddings": nn.Embedding(5, 3)})
    cfg = build_config({}, ["train.weight_decay=0.1"]).train
    groups = param_groups({"text": list(model.named_parameters())}, cfg)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model["linear"].weight)}
    assert no_weight_decay("x.position_embeddings.weight", nn.Parameter(torch.ones(4, 4)))
