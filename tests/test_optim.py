"""Parameter groups (layer-wise decay), the optimizers, the per-update learning-rate schedule and SAM."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from mmcls.config import build_config
from mmcls.engine.optim import build_optimizer, build_scheduler, lr_factor, no_weight_decay, param_groups
from mmcls.engine.sam import SharpnessAwareMinimization


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
    table = nn.Parameter(torch.ones(4, 4))
    for name in ("frame_embedder.position.weight", "vision.backbone.pos_embed", "vision.backbone.cls_token",
                 "vision.backbone.reg_token", "vision.backbone.positional_embedding",
                 "vision.backbone.layers.0.blocks.0.attn.relative_position_bias_table"):
        assert no_weight_decay(name, table), name
    for name in ("bert.encoder.layer.0.attention.self.query.weight", "vision.backbone.proj",
                 "vision.backbone.blocks.0.mlp.fc1.weight", "heads.lv2.weight", "frame_embedder.proj.weight",
                 "vision.backbone.patch_embed.proj.weight"):
        assert not no_weight_decay(name, table), name


# ----------------------------------------------------------------------------------------------------------------
# layer-wise learning-rate scales


def test_lr_scales_split_groups_by_scale_with_unique_names():
    cfg = build_config({}, ["train.lr_text=1e-4", "train.weight_decay=0.1"]).train
    top, mid, low, bias = (nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2, 2)),
                           nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2)))
    parts = {"text": [("top.weight", top), ("mid.weight", mid), ("low.weight", low), ("low.bias", bias)],
             "heads": [("h.weight", nn.Parameter(torch.ones(2, 2)))]}
    scales = {"top.weight": 1.0, "mid.weight": 0.5, "low.weight": 0.25, "low.bias": 0.25}
    groups = {g["name"]: g for g in param_groups(parts, cfg, scales)}
    assert {name: g["lr"] for name, g in groups.items()} == pytest.approx({
        "text.decay": 1e-4, "text.down1.decay": 5e-5, "text.down2.decay": 2.5e-5, "text.down2.no_decay": 2.5e-5,
        "heads.decay": 5e-4})
    assert groups["text.down2.no_decay"]["weight_decay"] == 0.0 and groups["text.down2.decay"]["weight_decay"] == 0.1
    assert groups["text.down2.no_decay"]["params"] == [bias]
    assert groups["text.down1.decay"]["params"] == [mid]


def test_frozen_parameters_are_left_out_without_renaming_the_groups():
    cfg = build_config({}, []).train
    top, low = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2, 2), requires_grad=False)
    mid = nn.Parameter(torch.ones(2, 2))
    groups = param_groups({"text": [("t", top), ("m", mid), ("l", low)]}, cfg, {"t": 1.0, "m": 0.9, "l": 0.81})
    assert [(g["name"], g["params"]) for g in groups] == [("text.decay", [top]), ("text.down1.decay", [mid])]


# ----------------------------------------------------------------------------------------------------------------
# optimizers


OPTIMIZERS = ["adamw", "sgd", "radam", "ranger"]


def _toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def _setup(name: str, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    cfg = build_config({}, [f"train.optimizer={name}", "train.lr=1e-2", "train.warmup_steps=2",
                            "train.weight_decay=0.1"]).train
    optimizer = build_optimizer({"heads": list(model.named_parameters())}, cfg)
    return optimizer, build_scheduler(optimizer, cfg, total_updates=20)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, updates: int, start: int) -> None:
    for update in range(start, start + updates):
        g = torch.Generator().manual_seed(update)
        loss = model(torch.randn(5, 3, generator=g)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()


def test_each_optimizer_is_the_configured_torch_or_timm_one():
    from timm.optim import Lookahead

    model = _toy()
    adamw, sgd, radam, ranger = (_setup(name, model)[0] for name in OPTIMIZERS)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["eps"] == 1e-6
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert type(radam) is torch.optim.RAdam and radam.defaults["decoupled_weight_decay"]
    assert type(ranger) is Lookahead and type(ranger._base_optimizer) is torch.optim.RAdam
    assert ranger._base_optimizer.defaults["decoupled_weight_decay"]
    assert {(g["lookahead_alpha"], g["lookahead_k"]) for g in ranger.param_groups} == {(0.5, 6)}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_follows_the_schedule_and_resumes_identically(name):
    model = _toy()
    optimizer, scheduler = _setup(name, model)
    _train(model, optimizer, scheduler, 4, start=0)
    factor = lr_factor(4, 20, 2, "cosine", 0.0)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2 * factor] * 2)
    buffer = io.BytesIO()  # a checkpoint on disk, not references to live state
    torch.save((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = _toy(seed=1)
    resumed.load_state_dict(saved[0])
    optimizer2, scheduler2 = _setup(name, resumed)
    optimizer2.load_state_dict(saved[1])
    scheduler2.load_state_dict(saved[2])
    _train(model, optimizer, scheduler, 9, start=4)  # crosses Ranger's Lookahead syncs at updates 6 and 12
    _train(resumed, optimizer2, scheduler2, 9, start=4)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [g["lr"] for g in optimizer2.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_ranger_is_radam_pulled_back_by_lookahead():
    """timm's Lookahead takes its slow weights at the first sync (update 6), so the first pull-back is at 12."""
    model, radam_model = _toy(), _toy()
    ranger, scheduler = _setup("ranger", model)
    radam, radam_scheduler = _setup("radam", radam_model)
    _train(model, ranger, scheduler, 11, start=0)
    _train(radam_model, radam, radam_scheduler, 11, start=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), radam_model.parameters(), strict=True))
    _train(model, ranger, scheduler, 1, start=11)
    _train(radam_model, radam, radam_scheduler, 1, start=11)
    assert not any(torch.equal(a, b) for a, b in zip(model.parameters(), radam_model.parameters(), strict=True))


# ----------------------------------------------------------------------------------------------------------------
# SGDR


def test_cosine_restarts_cycles_restart_at_decayed_peaks():
    def f(update: int) -> float:  # 2 warm-up updates, then 3 cycles of 4 updates
        return lr_factor(update, 14, 2, "cosine_restarts", 0.1, cycles=3, cycle_decay=0.5)

    assert [f(0), f(1)] == [0.5, 1.0]
    assert [f(2), f(6), f(10)] == pytest.approx([1.0, 0.5, 0.25])  # each cycle starts at its peak
    assert f(4) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the first cycle
    assert f(8) == pytest.approx(0.1 + 0.4 * 0.5)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))  # last update of cycle 0
    assert f(14) == pytest.approx(0.1)  # the end reaches min_lr_ratio
    assert f(10) > f(9) < f(8)  # the restart jumps up
    assert lr_factor(6, 10, 0, "cosine_restarts", 0.3, cycles=2, cycle_decay=0.1) == pytest.approx(0.3)


def test_cosine_restarts_with_one_cycle_is_cosine():
    restarts = [lr_factor(update, 12, 2, "cosine_restarts", 0.1) for update in range(12)]
    assert restarts == pytest.approx([lr_factor(update, 12, 2, "cosine", 0.1) for update in range(12)])


def test_scheduler_passes_the_cycles():
    cfg = build_config({}, ["train.schedule=cosine_restarts", "train.cycles=2", "train.cycle_decay=0.5",
                            "train.warmup_steps=0"]).train
    optimizer = build_optimizer({"heads": [("w", nn.Parameter(torch.ones(2, 2)))]}, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_updates=8)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"] / cfg.lr)
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([lr_factor(u, 8, 0, "cosine_restarts", 0.0, 2, 0.5) for u in range(8)])
    assert lrs[4] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------------------------
# SAM


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).pow(2).mean()


def test_sam_perturbs_by_rho_along_the_gradient_and_restores_weights_exactly():
    model, x = _toy(), torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    _loss(model, x).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    sam = SharpnessAwareMinimization(model.parameters(), rho=0.05)
    assert sam.ascend()
    assert all(p.grad is None for p in model.parameters())
    moves = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    assert torch.cat([m.flatten() for m in moves]).norm() == pytest.approx(0.05, rel=1e-5)
    norm = torch.cat([g.flatten() for g in grads]).norm()
    for move, grad in zip(moves, grads, strict=True):
        torch.testing.assert_close(move, 0.05 * grad / norm, atol=1e-7, rtol=1e-4)
    _loss(model, x).backward()
    sam.descend()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_sam_keeps_the_gradient_of_the_perturbed_point():
    model, x = _toy(), torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(_loss(model, x), list(params.values()))
    norm = torch.cat([g.flatten() for g in grads]).norm()
    perturbed = {n: (p + 0.1 * g / norm).detach().requires_grad_() for (n, p), g in zip(params.items(), grads,
                                                                                         strict=True)}
    expected = torch.autograd.grad(torch.func.functional_call(model, perturbed, (x,)).pow(2).mean(),
                                   list(perturbed.values()))

    sam = SharpnessAwareMinimization(model.parameters(), rho=0.1)
    _loss(model, x).backward()
    sam.ascend()
    _loss(model, x).backward()
    sam.descend()
    for param, grad in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, grad)


def test_one_sam_step_on_a_quadratic_matches_the_formula():
    """L(w) = w^T A w / 2: SAM's SGD step is w - lr * A (w + rho * A w / ||A w||)."""
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    optimizer = torch.optim.SGD([w], lr=0.1)
    sam = SharpnessAwareMinimization([w], rho=0.5)
    for move in (sam.ascend, sam.descend):
        (0.5 * w @ a @ w).backward()
        move()
    optimizer.step()
    g = a @ w0
    torch.testing.assert_close(w.detach(), w0 - 0.1 * a @ (w0 + 0.5 * g / g.norm()))


@pytest.mark.parametrize("fill", [0.0, math.inf])
def test_sam_leaves_weights_alone_on_a_zero_or_non_finite_gradient(fill):
    w, frozen = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2), requires_grad=False)
    w.grad = torch.full((3,), fill)
    sam = SharpnessAwareMinimization([w, frozen], rho=0.05)
    assert not sam.ascend()
    assert w.grad is None and torch.equal(w.detach(), torch.ones(3))
    w.grad = torch.ones(3)  # the second pass
    sam.descend()
    assert torch.equal(w.detach(), torch.ones(3)) and torch.equal(w.grad, torch.ones(3))
