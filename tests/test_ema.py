"""EMA of the weights: the decay schedule, buffers, and the checkpoint round trip."""

from __future__ import annotations

import torch
from torch import nn

from mmcls.config import EmaConfig
from mmcls.engine.ema import build_ema


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def perturb(model: nn.Module, seed: int) -> None:
    """Stand-in for an optimizer update plus a training forward: new weights and new BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=g))
            else:
                tensor.add_(1)


def run_updates(cfg: EmaConfig, updates: int) -> tuple[nn.Module, nn.Module, dict[str, torch.Tensor]]:
    """Apply ``updates`` EMA updates and the same averaging by hand; returns (model, ema module, manual state)."""
    model = tiny()
    ema = build_ema(model, cfg)
    manual = {k: v.clone().double() for k, v in model.state_dict().items()}
    for t in range(1, updates + 1):
        perturb(model, seed=t)
        ema.update(model, step=t)
        decay = min(cfg.decay, 1 - (1 + t) ** (-2 / 3)) if cfg.warmup else cfg.decay
        for key, value in model.state_dict().items():
            manual[key] = decay * manual[key] + (1 - decay) * value.double() if value.is_floating_point() \
                else value.clone().double()
    return model, ema.module, manual


def assert_matches(module: nn.Module, manual: dict[str, torch.Tensor]) -> None:
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value.double(), manual[key], rtol=1e-5, atol=1e-6, msg=key)


def test_decay_zero_means_no_ema():
    assert build_ema(tiny(), EmaConfig(decay=0.0)) is None


def test_warmup_uses_the_warmed_up_decay():
    cfg = EmaConfig(decay=0.6, warmup=True)  # 1 - (1 + t)^(-2/3): 0.37, 0.52, 0.60, 0.66 -> capped at 0.6 from t=3
    model, module, manual = run_updates(cfg, updates=4)
    assert_matches(module, manual)
    assert not torch.equal(module[0].weight, model[0].weight)


def test_without_warmup_the_first_update_uses_the_decay():
    cfg = EmaConfig(decay=0.9, warmup=False)
    model = tiny()
    start = model[0].weight.detach().clone()
    ema = build_ema(model, cfg)
    perturb(model, seed=1)
    ema.update(model, step=1)
    torch.testing.assert_close(ema.module[0].weight, 0.9 * start + 0.1 * model[0].weight)
    _, module, manual = run_updates(cfg, updates=3)
    assert_matches(module, manual)


def test_buffers_follow():
    model, module, manual = run_updates(EmaConfig(decay=0.5, warmup=False), updates=2)
    bn_ema, bn_model = module[1], model[1]
    assert torch.equal(bn_ema.num_batches_tracked, bn_model.num_batches_tracked)  # integers are copied
    torch.testing.assert_close(bn_ema.running_mean.double(), manual["1.running_mean"])  # floats are averaged
    assert not torch.equal(bn_ema.running_mean, bn_model.running_mean)


def test_ema_is_float32_and_not_trained():
    model = tiny().to(torch.bfloat16)
    ema = build_ema(model, EmaConfig(decay=0.9))
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in ema.module.parameters())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_state_dict_round_trip_restores_the_average():
    cfg = EmaConfig(decay=0.8, warmup=True)
    model = tiny()
    ema = build_ema(model, cfg)
    for t in range(1, 4):
        perturb(model, seed=t)
        ema.update(model, step=t)
    saved = {k: v.clone() for k, v in ema.state_dict().items()}
    fresh = build_ema(tiny(), cfg)
    assert not torch.equal(fresh.module[0].weight, ema.module[0].weight)
    fresh.load_state_dict(saved)
    for key, value in ema.module.state_dict().items():
        assert torch.equal(fresh.module.state_dict()[key], value), key
