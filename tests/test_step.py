"""One training micro-batch with the tricks (engine/step.py): SAM, FGM and R-Drop + mixup on a tiny classifier."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from mmcls.config import build_config
from mmcls.engine.losses import Criterion
from mmcls.engine.mix import mix_frames
from mmcls.engine.step import classification_step
from tests.helpers import NUM_LV1, NUM_LV2, build, make_batch, make_cfg


def setup(tokenizer, *overrides: str):
    """A dropout-free tiny classifier (every pass computes the same function), its TrainStep and a labelled batch."""
    base = make_cfg(dropout=0.0)
    cfg = build_config({"data": {"frame_size": base.data.frame_size, "max_frames": base.data.max_frames,
                                 "max_text_len": base.data.max_text_len},
                        "model": {"vision": {"overrides": base.model.vision.overrides},
                                  "text": {"hidden_size": 32, "num_layers": 2, "num_heads": 2,
                                           "intermediate_size": 64, "max_positions": 32},
                                  "dropout": 0.0}}, list(overrides))
    model = build(tokenizer, cfg).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    accelerator = Accelerator(cpu=True)
    criterion = Criterion(NUM_LV2, NUM_LV1, cfg.train.loss, cfg.model)
    batch = make_batch(tokenizer)
    batch.update(labels=torch.tensor([0, 1, 2]), labels_lv1=torch.tensor([0, 1, 2]), video_errors=[None] * 3)
    return cfg, model, classification_step(cfg, model, model, criterion, accelerator, seed=0), batch


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_sam_restores_the_weights_and_changes_the_gradient(tiny_tokenizer):
    _, model, plain, batch = setup(tiny_tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plain(batch)
    g_plain = grads(model)
    model.zero_grad(set_to_none=True)
    _, sam_model, sam, _ = setup(tiny_tokenizer, "train.sam_rho=0.5")
    sam(batch)
    for name, param in sam_model.named_parameters():
        assert torch.equal(param, before[name]), name  # back at w exactly
    g_sam = grads(sam_model)
    assert set(g_sam) == set(g_plain)
    assert any(not torch.allclose(g_sam[n], g_plain[n]) for n in g_plain)  # the gradient of the sharp point


def test_sam_keeps_the_adversarial_gradient(tiny_tokenizer):
    _, sam_model, sam, batch = setup(tiny_tokenizer, "train.sam_rho=0.5")
    sam(batch)
    g_sam = grads(sam_model)
    _, both_model, both, _ = setup(tiny_tokenizer, "train.sam_rho=0.5", "train.adversarial.method=fgm",
                                   "train.adversarial.epsilon=1.0")
    losses = both(batch)
    assert "loss_adv" in losses
    g_both = grads(both_model)
    # the FGM pass adds its gradient on top of SAM's: the update is not SAM's alone
    diff = (g_both["heads.lv2.weight"] - g_sam["heads.lv2.weight"]).abs().max()
    assert diff > 1e-4


def test_fgm_direction_ignores_gradient_accumulated_before(tiny_tokenizer):
    """The attack follows this micro-batch's gradient, whatever ``.grad`` already holds (earlier micro-batches, or
    under DDP the average over processes), so epsilon means the same with any accumulation or process count."""
    _, model, step, batch = setup(tiny_tokenizer, "train.adversarial.method=fgm", "train.adversarial.epsilon=1.0")
    fresh = float(step(batch)["loss_adv"])
    embedding = model.encoder.text.word_embeddings
    model.zero_grad(set_to_none=True)
    embedding.grad = torch.randn_like(embedding) * 100.0  # an unrelated gradient accumulated earlier
    stale = float(step(batch)["loss_adv"])
    assert stale == pytest.approx(fresh, rel=1e-5)


def test_rdrop_with_mixup_equals_the_criterion_on_the_mixed_batch(tiny_tokenizer):
    cfg, model, step, batch = setup(tiny_tokenizer, "train.loss.rdrop_alpha=1.0", "train.mix.mixup_alpha=0.4")
    losses = step(batch)
    # without dropout both R-Drop copies agree: no KL, and the loss is the criterion of one pass on the same mix
    assert float(losses["loss_rdrop"]) == pytest.approx(0.0, abs=1e-6)
    generator = torch.Generator().manual_seed(0)  # TrainStep's generator on process 0
    frames, frame_mask, mixing = mix_frames(batch["frames"], batch["frame_mask"], cfg.train.mix, generator,
                                            model.encoder.vision.mean, model.encoder.vision.std)
    with torch.no_grad():
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], frames=frames,
                        frame_mask=frame_mask)
    criterion = Criterion(NUM_LV2, NUM_LV1, cfg.train.loss, cfg.model)
    expected = criterion(outputs, {**batch, "frame_mask": frame_mask}, mixing=mixing)["loss"]
    assert float(losses["loss"]) == pytest.approx(float(expected), rel=1e-4)


def test_soft_targets_reach_the_loss_only_in_their_rows(tiny_tokenizer):
    """Distillation / soft pseudo-labels through TrainStep: soft rows train on their targets, the others on labels
    (also under R-Drop, which repeats the batch and its soft targets)."""
    for extra in ((), ("train.loss.rdrop_alpha=0.5",)):
        _, model, step, batch = setup(tiny_tokenizer, *extra)
        plain = step(batch)["loss_lv2"]
        soft = torch.zeros(3, NUM_LV2)
        soft[:, 0] = 1.0  # "class 0" for every row
        masked_out = step({**batch, "soft_targets": soft, "soft_mask": torch.tensor([False, False, False])})
        assert torch.allclose(masked_out["loss_lv2"], plain)  # no soft row: exactly the hard-label loss
        got = step({**batch, "soft_targets": soft, "soft_mask": torch.tensor([False, True, True])})["loss_lv2"]
        with torch.no_grad():
            logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "frames", "frame_mask")})["logits"]
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0, 0]), reduction="none")
        expected[0] = torch.nn.functional.cross_entropy(logits[:1], batch["labels"][:1])
        assert torch.allclose(got, expected.mean(), atol=1e-5), extra
