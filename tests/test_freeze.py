"""Freezing towers: frozen parameters get no gradient and no optimizer step, unfreeze on time, lower layers only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcls.config import FreezeConfig
from mmcls.engine.freeze import TowerFreezer
from mmcls.errors import ConfigError
from tests.helpers import build, make_batch, make_cfg


def backward(model, tokenizer) -> None:
    """A loss that reaches every parameter: all three heads."""
    out = model(**make_batch(tokenizer))
    labels = torch.tensor([0, 3, 5])
    loss = F.cross_entropy(out["logits"], labels) + F.cross_entropy(out["logits_video"], labels)
    (loss + F.cross_entropy(out["logits_lv1"], torch.tensor([0, 1, 2]))).backward()


def frozen_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_frozen_tower_gets_no_gradient_and_no_weight_decay(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    backward(model, tiny_tokenizer)  # stale gradients from before the freeze must not be applied
    vision = {name for name, _ in model.named_parameters() if name.startswith("encoder.vision.")}
    freezer = TowerFreezer(model, FreezeConfig(towers=["vision"]))
    assert freezer.update(0) == f"froze {len(vision)} parameter tensors (whole vision tower) for the whole run"
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    backward(model, tiny_tokenizer)
    assert frozen_names(model) == vision
    assert all(p.grad is None for name, p in model.named_parameters() if name in vision)
    optimizer.step()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == (name in vision), name
    assert freezer.update(1) is None and freezer.update(10_000) is None  # updates=0: frozen throughout


def test_unfreezes_at_the_given_update(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    model.encoder.vision.backbone.proj.requires_grad_(False)  # frozen by someone else: stays frozen
    towers = {name for name, _ in model.named_parameters() if name.startswith(("encoder.vision.", "encoder.text."))}
    freezer = TowerFreezer(model, FreezeConfig(towers=["vision", "text"], updates=2))
    what = f"{len(towers) - 1} parameter tensors (whole vision and text tower)"
    assert freezer.update(0) == f"froze {what} until update 2"
    assert frozen_names(model) == towers
    assert freezer.update(1) is None
    assert freezer.update(2) == f"unfroze {what} at update 2"
    assert frozen_names(model) == {"encoder.vision.backbone.proj"}
    assert freezer.update(3) is None
    backward(model, tiny_tokenizer)
    assert model.encoder.vision.backbone.conv1.weight.grad is not None
    assert model.encoder.text.word_embeddings.grad is not None


def test_lower_layers_freeze_embeddings_and_the_lowest_blocks(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    freezer = TowerFreezer(model, FreezeConfig(towers=["text"], layers=1, updates=5))
    assert "embeddings + lowest 1 blocks of the text tower" in freezer.update(0)
    names = frozen_names(model)
    assert names == {name for name, _ in model.named_parameters()
                     if name.startswith(("encoder.text.bert.embeddings.", "encoder.text.bert.encoder.layer.0."))}
    assert any(name.startswith("encoder.text.bert.embeddings.") for name in names)
    backward(model, tiny_tokenizer)
    assert model.encoder.text.bert.encoder.layer[1].output.dense.weight.grad is not None
    assert model.encoder.text.bert.encoder.layer[0].output.dense.weight.grad is None


def test_no_towers_is_a_no_op(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    assert TowerFreezer(model, FreezeConfig()).update(0) is None
    assert not frozen_names(model)


def test_missing_vision_tower_is_a_config_error(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg(mode="text"))
    with pytest.raises(ConfigError, match=r"^train\.freeze\.towers: the model has no vision tower"):
        TowerFreezer(model, FreezeConfig(towers=["vision"]))
