"""Mixup / CutMix on frames: determinism, the mixing formulas, the CutMix box, missing frames, label mixing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcls.config import LossConfig, MixConfig, ModelConfig
from mmcls.engine.losses import Criterion
from mmcls.engine.mix import mix_frames
from mmcls.models.pixels import normalize_frames

MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
B, T, S = 4, 3, 8


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pixels(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (B, T, 3, S, S), generator=_gen(seed), dtype=torch.uint8)


def _flat_videos() -> torch.Tensor:
    """Each (video, frame) one distinct constant value, so every output pixel tells where it came from."""
    values = torch.arange(B * T, dtype=torch.uint8).view(B, T, 1, 1, 1) * 10 + 5
    return values.expand(B, T, 3, S, S).contiguous()


def _full_mask() -> torch.Tensor:
    return torch.ones(B, T, dtype=torch.bool)


def test_off_or_prob_zero_returns_none():
    frames, mask = _pixels(), _full_mask()
    assert mix_frames(frames, mask, MixConfig(), _gen(), MEAN, STD) is None
    assert mix_frames(frames, mask, MixConfig(mixup_alpha=1.0, prob=0.0), _gen(), MEAN, STD) is None


def test_prob_mixes_some_batches():
    cfg, g = MixConfig(mixup_alpha=1.0, prob=0.5), _gen()
    mixed = [mix_frames(_pixels(), _full_mask(), cfg, g, MEAN, STD) is not None for _ in range(20)]
    assert any(mixed) and not all(mixed)


def test_same_generator_seed_same_mix():
    cfg = MixConfig(mixup_alpha=0.4, cutmix_alpha=1.0)
    a = mix_frames(_pixels(), _full_mask(), cfg, _gen(3), MEAN, STD)
    b = mix_frames(_pixels(), _full_mask(), cfg, _gen(3), MEAN, STD)
    c = mix_frames(_pixels(), _full_mask(), cfg, _gen(4), MEAN, STD)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2].perm, b[2].perm) and a[2].lam == b[2].lam
    assert a[2].lam != c[2].lam


def test_mixup_equals_formula_on_normalised_pixels():
    frames = _pixels()
    out, mask, mixing = mix_frames(frames, _full_mask(), MixConfig(mixup_alpha=1.0), _gen(), MEAN, STD)
    x = normalize_frames(frames, MEAN, STD)
    assert out.dtype == torch.float32 and torch.equal(mask, _full_mask())
    assert 0.0 < mixing.lam < 1.0 and (mixing.perm != torch.arange(B)).any()
    assert torch.allclose(out, mixing.lam * x + (1 - mixing.lam) * x[mixing.perm])


def test_cutmix_same_box_everywhere_and_lam_is_kept_area():
    frames = _flat_videos()
    out, _, mixing = mix_frames(frames, _full_mask(), MixConfig(cutmix_alpha=1.0), _gen(), MEAN, STD)
    x = normalize_frames(frames, MEAN, STD)
    partner = x[mixing.perm]
    moved = mixing.perm != torch.arange(B)
    assert moved.any() and 0.0 < mixing.lam < 1.0
    taken = (out != x)[moved]  # [b, T, 3, S, S] pixels from the partner
    box = taken[0, 0, 0]
    assert torch.equal(taken, box.expand_as(taken))  # same box on every video, frame and channel
    rows, cols = box.any(1), box.any(0)
    assert torch.equal(box, rows[:, None] & cols[None, :])  # a rectangle
    assert mixing.lam == pytest.approx(1.0 - box.float().mean().item())
    assert torch.equal(out[moved][taken], partner[moved][taken])
    assert torch.equal(out[moved][~taken], x[moved][~taken])


@pytest.mark.parametrize(("switch_prob", "cutmix"), [(1.0, True), (0.0, False)])
def test_switch_prob_picks_cutmix_or_mixup(switch_prob, cutmix):
    frames = _flat_videos()
    cfg = MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob)
    out, _, mixing = mix_frames(frames, _full_mask(), cfg, _gen(), MEAN, STD)
    x = normalize_frames(frames, MEAN, STD)
    pure = ((out == x) | (out == x[mixing.perm])).all()
    assert bool(pure) is cutmix


def test_missing_frames_stay_unmixed_and_masks_combine():
    frames, mask = _pixels(), torch.zeros(B, T, dtype=torch.bool)
    for video, length in enumerate([3, 1, 2, 0]):
        mask[video, :length] = True
    out, out_mask, mixing = mix_frames(frames, mask, MixConfig(mixup_alpha=1.0), _gen(), MEAN, STD)
    x, perm, lam = normalize_frames(frames, MEAN, STD), mixing.perm, mixing.lam
    assert torch.equal(out_mask, mask | mask[perm])
    only_own, only_partner, both = mask & ~mask[perm], ~mask & mask[perm], mask & mask[perm]
    assert only_own.any() and only_partner.any() and both.any()
    assert torch.equal(out[only_own], x[only_own])
    assert torch.equal(out[only_partner], x[perm][only_partner])
    assert torch.allclose(out[both], lam * x[both] + (1 - lam) * x[perm][both])


def test_features_mixup_keeps_dtype_and_rejects_cutmix():
    feats, mask = torch.randn(B, T, 6, generator=_gen(2)).half(), _full_mask()
    out, _, mixing = mix_frames(feats, mask, MixConfig(mixup_alpha=1.0), _gen())
    assert out.dtype == torch.float16
    expected = mixing.lam * feats.float() + (1 - mixing.lam) * feats.float()[mixing.perm]
    assert torch.allclose(out.float(), expected, atol=1e-2)
    with pytest.raises(ValueError, match="CutMix"):
        mix_frames(feats, mask, MixConfig(cutmix_alpha=1.0), _gen())


def test_uint8_pixels_need_mean_and_std():
    with pytest.raises(ValueError, match="mean"):
        mix_frames(_pixels(), _full_mask(), MixConfig(mixup_alpha=1.0), _gen())


def test_criterion_mixes_labels_like_frames():
    labels = torch.tensor([0, 1, 2, 3])
    _, _, mixing = mix_frames(_pixels(), _full_mask(), MixConfig(mixup_alpha=1.0), _gen(), MEAN, STD)
    logits = torch.randn(B, 4, generator=_gen(5))
    crit = Criterion(4, 2, LossConfig(), ModelConfig())
    got = crit({"logits": logits}, {"labels": labels, "labels_lv1": labels // 2}, mixing=mixing)["loss_lv2"]
    lam = mixing.lam
    targets = lam * F.one_hot(labels, 4) + (1 - lam) * F.one_hot(labels[mixing.perm], 4)
    assert torch.allclose(got, -(targets * logits.log_softmax(-1)).sum(-1).mean())
    assert torch.allclose(got, lam * F.cross_entropy(logits, labels)
                          + (1 - lam) * F.cross_entropy(logits, labels[mixing.perm]))
