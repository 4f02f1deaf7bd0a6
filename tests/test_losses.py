"""Losses: class weights, soft-target (smoothed, focal, mixed) cross-entropy, the run Criterion, R-Drop, logit
adjustment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcls.config import Config, LossConfig, ModelConfig
from mmcls.data.categories import CategorySpace
from mmcls.engine.losses import (
    Criterion,
    Mixing,
    class_weights,
    logit_adjustment,
    mix_targets,
    rdrop_loss,
    smooth_targets,
    soft_cross_entropy,
    validation_loss,
)

C2, C1 = 5, 3


def _outputs(b: int = 4, seed: int = 0, video: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(b, C2, generator=g, requires_grad=True),
            "logits_lv1": torch.randn(b, C1, generator=g, requires_grad=True),
            "logits_video": torch.randn(b, C2, generator=g, requires_grad=True) if video else None}


def _batch(labels: list[int], frames: list[bool] | None = None) -> dict[str, torch.Tensor]:
    labels_t = torch.tensor(labels)
    has = frames if frames is not None else [True] * len(labels)
    mask = torch.zeros(len(labels), 3, dtype=torch.bool)
    mask[:, 0] = torch.tensor(has)
    return {"labels": labels_t, "labels_lv1": torch.where(labels_t >= 0, labels_t % C1, -100), "frame_mask": mask}


# --- class weights ------------------------------------------------------------------------------------------------

def _sample_average(weights: torch.Tensor, counts: list[int]) -> float:
    n = torch.tensor(counts, dtype=torch.float32)
    return float((weights * n).sum() / n.sum())


def test_class_weights_none_is_none():
    assert class_weights([3, 1], "none") is None


def test_inverse_weights_follow_power_and_average_one():
    counts = [100, 25, 4]
    w = class_weights(counts, "inverse", power=0.5)
    assert torch.allclose(w / w[0], torch.tensor([1.0, 2.0, 5.0]))  # sqrt(100 / n)
    assert _sample_average(w, counts) == pytest.approx(1.0)


def test_effective_weights_follow_cui_and_average_one():
    counts, beta = [1000, 10, 1], 0.99
    w = class_weights(counts, "effective", beta=beta).double()
    raw = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts], dtype=torch.float64)
    assert torch.allclose(w / w[0], raw / raw[0])
    assert _sample_average(w.float(), counts) == pytest.approx(1.0)


def test_unseen_class_gets_largest_seen_weight():
    counts = [50, 0, 5]
    w = class_weights(counts, "inverse", power=1.0)
    assert w[1] == w[2] > w[0]
    assert _sample_average(w, counts) == pytest.approx(1.0)


@pytest.mark.parametrize(("counts", "mode"), [([], "inverse"), ([3, -1], "inverse"), ([0, 0], "effective"),
                                              ([3, 1], "sqrt")])
def test_class_weights_reject_bad_input(counts, mode):
    with pytest.raises(ValueError):
        class_weights(counts, mode)


# --- soft-target cross-entropy ------------------------------------------------------------------------------------

def test_smooth_targets_values_and_ignored_rows():
    t = smooth_targets(torch.tensor([2, -100, 0]), 4, eps=0.2)
    assert torch.allclose(t[0], torch.tensor([0.05, 0.05, 0.85, 0.05]))
    assert torch.all(t[1] == 0)
    assert t[2].argmax() == 0 and t[2].sum() == pytest.approx(1.0)


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits, labels = torch.randn(6, C2), torch.tensor([0, 1, 4, 2, 3, 1])
    got = soft_cross_entropy(logits, smooth_targets(labels, C2))
    assert torch.allclose(got, F.cross_entropy(logits, labels, reduction="none"))


def test_soft_cross_entropy_equals_label_smoothing():
    logits, labels = torch.randn(6, C2), torch.tensor([0, 1, 4, 2, 3, 1])
    got = soft_cross_entropy(logits, smooth_targets(labels, C2, eps=0.1))
    assert torch.allclose(got, F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1))


def test_focal_matches_formula_and_downweights_easy_samples():
    logits, labels = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]]), torch.tensor([0, 1])
    p = logits.softmax(-1)[torch.arange(2), labels]
    got = soft_cross_entropy(logits, smooth_targets(labels, 3), focal_gamma=2.0)
    assert torch.allclose(got, -(1 - p) ** 2 * p.log())
    plain = soft_cross_entropy(logits, smooth_targets(labels, 3))
    assert (got / plain)[0] < (got / plain)[1]  # the confident sample loses more of its loss


def test_focal_is_finite_for_saturated_logits():
    logits = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    loss = soft_cross_entropy(logits, torch.tensor([[0.5, 0.5, 0.0]]), focal_gamma=0.5)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def test_mix_targets_formula():
    targets = torch.eye(3)
    got = mix_targets(targets, Mixing(perm=torch.tensor([2, 0, 1]), lam=0.7))
    assert torch.allclose(got[0], torch.tensor([0.7, 0.0, 0.3]))
    assert torch.allclose(got[1], torch.tensor([0.3, 0.7, 0.0]))


# --- Criterion ----------------------------------------------------------------------------------------------------

def _criterion(weights: torch.Tensor | None = None, **loss_kwargs) -> Criterion:
    return Criterion(C2, C1, LossConfig(**loss_kwargs), ModelConfig(), weights)


def test_defaults_equal_plain_cross_entropy_sum():
    out, batch = _outputs(), _batch([0, 4, -100, 2], frames=[True, False, True, True])
    got = _criterion()(out, batch)
    lv2 = F.cross_entropy(out["logits"], batch["labels"])
    lv1 = F.cross_entropy(out["logits_lv1"], batch["labels_lv1"])
    video = F.cross_entropy(out["logits_video"][[0, 3]], batch["labels"][[0, 3]])
    assert torch.allclose(got["loss_lv2"], lv2) and torch.allclose(got["loss_lv1"], lv1)
    assert torch.allclose(got["loss_video"], video)
    assert torch.allclose(got["loss"], lv2 + 0.3 * lv1 + 0.3 * video)


def test_heads_off_leave_only_level_two():
    out = _outputs()
    out["logits_lv1"] = None
    cfg = ModelConfig(aux_video_weight=0.0)
    got = Criterion(C2, C1, LossConfig(), cfg)(out, _batch([0, 1, 2, 3]))
    assert set(got) == {"loss", "loss_lv2"} and torch.equal(got["loss"], got["loss_lv2"])


def test_class_weights_reduce_like_weighted_cross_entropy():
    out, batch, w = _outputs(), _batch([0, 4, -100, 4]), torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5])
    got = _criterion(w)(out, batch)
    assert torch.allclose(got["loss_lv2"], F.cross_entropy(out["logits"], batch["labels"], weight=w))
    assert torch.allclose(got["loss_lv1"], F.cross_entropy(out["logits_lv1"], batch["labels_lv1"]))  # unweighted


def test_smoothing_and_focal_reach_both_levels():
    out, batch = _outputs(), _batch([0, 4, 1, 2])
    got = _criterion(label_smoothing=0.1)(out, batch)
    assert torch.allclose(got["loss_lv1"], F.cross_entropy(out["logits_lv1"], batch["labels_lv1"],
                                                           label_smoothing=0.1))
    focal = _criterion(focal_gamma=2.0)(out, batch)
    assert focal["loss_lv2"] < F.cross_entropy(out["logits"], batch["labels"])
    assert focal["loss_lv1"] < F.cross_entropy(out["logits_lv1"], batch["labels_lv1"])


def test_mixed_labels_and_class_weights():
    out, batch, w = _outputs(), _batch([0, 4, 1, 2]), torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5])
    mixing = Mixing(perm=torch.tensor([1, 0, 3, 2]), lam=0.75)
    got = _criterion(w)(out, batch, mixing=mixing)
    labels, partner = batch["labels"], batch["labels"][mixing.perm]
    targets = 0.75 * F.one_hot(labels, C2) + 0.25 * F.one_hot(partner, C2)
    per_sample = -(targets * out["logits"].log_softmax(-1)).sum(-1)
    sample_w = 0.75 * w[labels] + 0.25 * w[partner]
    assert torch.allclose(got["loss_lv2"], (sample_w * per_sample).sum() / sample_w.sum())


def test_mixing_with_unlabelled_partner_drops_the_pair():
    out, batch = _outputs(), _batch([0, -100, 1, 2])
    mixing = Mixing(perm=torch.tensor([1, 0, 3, 2]), lam=0.6)
    got = _criterion()(out, batch, mixing=mixing)
    expected = _criterion()({k: v[2:] for k, v in out.items()}, {k: v[2:] for k, v in batch.items()},
                            mixing=Mixing(perm=torch.tensor([1, 0]), lam=0.6))
    assert torch.allclose(got["loss_lv2"], expected["loss_lv2"])


def test_soft_targets_replace_labels_but_not_the_mask():
    out, batch = _outputs(), _batch([0, -100, 1, 2])
    soft = torch.softmax(torch.randn(4, C2), -1)
    got = _criterion(label_smoothing=0.3)(out, batch, soft_targets=soft)
    keep = [0, 2, 3]
    expected = -(soft[keep] * out["logits"][keep].log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(got["loss_lv2"], expected)


def test_all_unlabelled_gives_zero_with_graph():
    out = _outputs()
    got = _criterion(torch.ones(C2))(out, _batch([-100] * 4))
    assert got["loss"].item() == 0.0
    got["loss"].backward()
    assert torch.all(out["logits"].grad == 0) and torch.all(out["logits_video"].grad == 0)


def test_video_loss_without_frames_keeps_head_in_graph():
    out = _outputs()
    got = _criterion()(out, _batch([0, 1, 2, 3], frames=[False] * 4))
    assert got["loss_video"].item() == 0.0
    got["loss"].backward()
    assert out["logits_video"].grad is not None and torch.all(out["logits_video"].grad == 0)


def test_from_config_uses_training_counts():
    cats = CategorySpace.build(["0101", "0102", "0201"], counts={"0101": 9, "0102": 1, "0201": 0})
    cfg = Config()
    cfg.train.loss.class_weights = "inverse"
    crit = Criterion.from_config(cfg, cats)
    assert (crit.num_lv2, crit.num_lv1) == (3, 2)
    assert torch.equal(crit.weights, class_weights([9, 1, 0], "inverse", 0.5))
    assert Criterion.from_config(Config(), cats).weights is None


def test_criterion_rejects_wrong_class_count():
    with pytest.raises(ValueError, match="classes"):
        Criterion(C2 + 1, C1, LossConfig(), ModelConfig())(_outputs(), _batch([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        Criterion(C2, C1, LossConfig(), ModelConfig(), torch.ones(C2 + 1))


def test_validation_loss_is_unweighted_level_two():
    out, batch = _outputs(), _batch([0, -100, 1, 2])
    assert torch.allclose(validation_loss(out, batch), F.cross_entropy(out["logits"], batch["labels"]))


# --- R-Drop -------------------------------------------------------------------------------------------------------

def test_rdrop_zero_for_equal_and_symmetric():
    a, b = torch.randn(3, C2), torch.randn(3, C2)
    assert float(rdrop_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(rdrop_loss(a, b), rdrop_loss(b, a))


def test_rdrop_matches_manual_kl_and_reaches_both_inputs():
    a = torch.randn(3, C2, requires_grad=True)
    b = torch.randn(3, C2, requires_grad=True)
    pa, pb = a.softmax(-1), b.softmax(-1)
    kl_ab = (pa * (pa.log() - pb.log())).sum(-1)
    kl_ba = (pb * (pb.log() - pa.log())).sum(-1)
    loss = rdrop_loss(a, b)
    assert torch.allclose(loss, (0.5 * (kl_ab + kl_ba)).mean())
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# --- logit adjustment ---------------------------------------------------------------------------------------------

def test_logit_adjustment_tau_zero_is_noop():
    assert np.array_equal(logit_adjustment([10, 0, 3], 0.0), np.zeros(3, np.float32))


def test_logit_adjustment_flips_toward_rare_class():
    counts = [999, 9, 0]
    logits = np.array([2.0, 1.5, -5.0], np.float32)  # frequent class slightly ahead
    adjusted = logits + logit_adjustment(counts, 1.0)
    assert logits.argmax() == 0 and adjusted.argmax() == 1
    assert np.allclose(adjusted - logits, -np.log(np.array([1000, 10, 1]) / 1011))
    assert np.isfinite(adjusted).all()


def test_to_moves_class_weights_and_returns_self():
    crit = _criterion(torch.ones(C2))
    assert crit.to("meta") is crit and crit.weights.device.type == "meta"
    assert _criterion().to("meta").weights is None
