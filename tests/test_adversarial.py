"""FGM / PGD: gradients against a manual computation, exact restoration, perturbation sizes, frame features."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcls.config import AdversarialConfig
from mmcls.engine.adversarial import adversarial_backward
from tests.helpers import build, make_batch, make_cfg

IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0], [8, 9, 10, 11]])
PIXELS = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(1))  # [B, T, 5]
LABELS = torch.tensor([0, 2, 1])


class Tiny(nn.Module):
    """Word embeddings + a 'vision tower' giving frame features [B, T, 4], fused by a sum, and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(12, 4)
        self.vision = nn.Linear(5, 4)
        self.head = nn.Linear(4, 3)

    def features(self) -> torch.Tensor:
        return torch.tanh(self.vision(PIXELS))

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.emb(IDS).mean(1) + feats.pow(2).mean(1))
        return F.cross_entropy(self.head(hidden), LABELS)


def clean_pass(model: Tiny) -> torch.Tensor:
    """The clean forward and backward; returns the frame features with their gradient retained."""
    feats = model.features()
    feats.retain_grad()
    model.loss(feats).backward()
    return feats


def attack(model: Tiny, feats: torch.Tensor, cfg: AdversarialConfig, frames: bool = False):
    """Run the attack; returns (adversarial loss, [embedding table at each pass], [frames given at each pass])."""
    tables, given = [], []

    def compute_loss(perturbed: torch.Tensor | None) -> torch.Tensor:
        tables.append(model.emb.weight.detach().clone())
        given.append(None if perturbed is None else perturbed.detach().clone())
        return model.loss(feats.detach() if perturbed is None else perturbed)

    loss = adversarial_backward(compute_loss, lambda loss: loss.backward(), model.emb.weight, model.parameters(),
                                cfg, frame_features=feats if frames else None)
    return loss, tables, given


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def grads_at(model: Tiny, table: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the loss alone with the embedding table set to ``table`` (on a copy of ``model``)."""
    other = copy.deepcopy(model)
    other.zero_grad(set_to_none=True)
    other.emb.weight.data.copy_(table)
    other.loss(feats.detach()).backward()
    return {name: torch.zeros_like(p) if p.grad is None else p.grad for name, p in other.named_parameters()}


def unit(g: torch.Tensor) -> torch.Tensor:
    return g / g.norm()


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    return delta * min(1.0, epsilon / delta.norm().item())


def test_fgm_gradient_is_clean_plus_weighted_gradient_at_the_perturbed_point():
    cfg = AdversarialConfig(method="fgm", epsilon=0.7, weight=0.5)
    model = Tiny()
    feats = clean_pass(model)
    clean, table = grads(model), model.emb.weight.detach().clone()
    perturbed = table + cfg.epsilon * unit(clean["emb.weight"])
    expected_at = grads_at(model, perturbed, feats)

    loss, tables, _ = attack(model, feats, cfg)

    assert len(tables) == 1
    torch.testing.assert_close(tables[0], perturbed)
    torch.testing.assert_close((tables[0] - table).norm().item(), cfg.epsilon)
    assert torch.equal(model.emb.weight, table)  # restored bit for bit
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, clean[name] + cfg.weight * expected_at[name], msg=name)
    assert torch.equal(model.vision.weight.grad, clean["vision.weight"])  # the attack never reaches the tower
    with torch.no_grad():
        model.emb.weight.copy_(perturbed)
        torch.testing.assert_close(loss, model.loss(feats.detach()))  # the loss at the perturbed point


def test_pgd_takes_projected_steps_from_fresh_gradients_and_restores_the_clean_ones():
    cfg = AdversarialConfig(method="pgd", epsilon=0.4, alpha=0.3, steps=2, weight=2.0)
    model = Tiny()
    feats = clean_pass(model)
    clean, table = grads(model), model.emb.weight.detach().clone()
    delta1 = project(cfg.alpha * unit(clean["emb.weight"]), cfg.epsilon)
    at1 = grads_at(model, table + delta1, feats)  # the gradient of the first adversarial pass alone
    delta2 = project(delta1 + cfg.alpha * unit(at1["emb.weight"]), cfg.epsilon)
    at2 = grads_at(model, table + delta2, feats)

    _, tables, _ = attack(model, feats, cfg)

    assert len(tables) == 2
    torch.testing.assert_close(tables[0], table + delta1)
    torch.testing.assert_close(tables[1], table + delta2)
    assert (tables[1] - table).norm() <= cfg.epsilon * (1 + 1e-5)
    assert torch.equal(model.emb.weight, table)
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, clean[name] + cfg.weight * at2[name], msg=name)


def test_pgd_stays_in_the_epsilon_ball():
    cfg = AdversarialConfig(method="pgd", epsilon=0.5, alpha=0.3, steps=4)
    model = Tiny()
    feats = clean_pass(model)
    table = model.emb.weight.detach().clone()
    _, tables, _ = attack(model, feats, cfg)
    norms = [(t - table).norm().item() for t in tables]
    assert len(norms) == 4 and norms[0] == pytest.approx(0.3)
    assert max(norms) <= 0.5 * (1 + 1e-5) and norms[-1] == pytest.approx(0.5)  # the ball's edge is reached
    assert torch.equal(model.emb.weight, table)


def test_pgd_with_one_long_step_is_fgm():
    results = []
    for cfg in (AdversarialConfig(method="fgm", epsilon=0.5), AdversarialConfig(method="pgd", epsilon=0.5,
                                                                                alpha=2.0, steps=1)):
        model = Tiny()
        feats = clean_pass(model)
        loss, tables, _ = attack(model, feats, cfg)
        results.append((loss, tables, grads(model)))
    (fgm_loss, fgm_tables, fgm_grads), (pgd_loss, pgd_tables, pgd_grads) = results
    torch.testing.assert_close(pgd_loss, fgm_loss)
    torch.testing.assert_close(pgd_tables, fgm_tables)
    for name, grad in fgm_grads.items():
        torch.testing.assert_close(pgd_grads[name], grad, msg=name)


@pytest.mark.parametrize("method", ["fgm", "pgd"])
@pytest.mark.parametrize("bad", [0.0, float("inf")])
def test_zero_or_non_finite_gradient_means_no_perturbation(method, bad):
    cfg = AdversarialConfig(method=method, epsilon=0.5, steps=2)
    model = Tiny()
    feats = clean_pass(model)
    model.emb.weight.grad.fill_(bad)
    table = model.emb.weight.detach().clone()
    loss, tables, _ = attack(model, feats, cfg)
    assert torch.equal(tables[0], table)  # the first pass runs at the clean point
    assert torch.isfinite(loss)
    assert all(torch.isfinite(t).all() for t in tables)
    assert torch.equal(model.emb.weight, table)


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_frame_features_are_perturbed_per_video_on_a_copy(method):
    cfg = AdversarialConfig(method=method, epsilon=0.5, alpha=0.3, steps=3, frames=True)
    model = Tiny()
    feats = clean_pass(model)
    source, source_grad = feats.detach().clone(), feats.grad.clone()
    vision_grad = model.vision.weight.grad.clone()

    loss, _, given = attack(model, feats, cfg, frames=True)

    norms = torch.stack([torch.linalg.vector_norm(f - source, dim=(1, 2)) for f in given])  # [passes, B]
    if method == "fgm":
        torch.testing.assert_close(norms[0], torch.full((3,), 0.5))  # every video moves by epsilon
        torch.testing.assert_close(given[0] - source, 0.5 * feats.grad / torch.linalg.vector_norm(
            feats.grad, dim=(1, 2), keepdim=True))
    else:
        assert (norms <= 0.5 * (1 + 1e-5)).all() and len(given) == 3
    assert torch.equal(feats, source) and torch.equal(feats.grad, source_grad)  # the source is untouched
    assert torch.equal(model.vision.weight.grad, vision_grad)  # no pass back through the tower

    words_only = Tiny()
    words_feats = clean_pass(words_only)
    words_loss, _, words_given = attack(words_only, words_feats, cfg)
    assert all(f is None for f in words_given)
    assert loss > words_loss  # the frame attack raises the loss further


def test_method_none_is_refused():
    model = Tiny()
    feats = clean_pass(model)
    with pytest.raises(ValueError, match="fgm or pgd"):
        attack(model, feats, AdversarialConfig(method="none"))


def test_classifier_fgm_on_words_and_frames(tiny_tokenizer):
    """On the real classifier: the table comes back exactly, only valid frames move, the word gradient changes."""
    model = build(tiny_tokenizer, make_cfg())
    batch = make_batch(tiny_tokenizer)
    labels = torch.tensor([0, 3, 5])
    embedding = model.encoder.text.word_embeddings
    out = model(**batch)
    feats = out["frame_features"]
    feats.retain_grad()
    F.cross_entropy(out["logits"], labels).backward()
    table, clean_grad, source = embedding.detach().clone(), embedding.grad.clone(), feats.detach().clone()
    given = []

    def compute_loss(frames: torch.Tensor | None) -> torch.Tensor:
        given.append(frames.detach().clone())
        logits = model(batch["input_ids"], batch["attention_mask"], features=frames,
                       frame_mask=batch["frame_mask"])["logits"]
        return F.cross_entropy(logits, labels)

    cfg = AdversarialConfig(method="fgm", epsilon=0.5, frames=True)
    loss = adversarial_backward(compute_loss, lambda loss: loss.backward(), embedding, model.parameters(), cfg,
                                frame_features=feats)

    assert torch.isfinite(loss)
    assert torch.equal(embedding, table)
    assert not torch.allclose(embedding.grad, clean_grad)
    moved = torch.linalg.vector_norm(given[0] - source, dim=-1)  # [B, T]
    mask = batch["frame_mask"]
    assert (moved[~mask] == 0).all()  # padded frames and the video-less sample are left alone
    torch.testing.assert_close(moved.pow(2).sum(1)[:2].sqrt(), torch.full((2,), 0.5))
