"""Pretraining masks: MLM token masking, MFM frame masking, ITM video shuffling, the order task's permutations."""

from __future__ import annotations

import pytest
import torch

from mmcls.engine.masking import IGNORE_INDEX, mask_frames, mask_tokens, order_frames, reverse_frames, shuffle_videos

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)
VOCAB = 50


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def text_batch(batch: int, length: int, seed: int = 0, min_length: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] tokens [SEP] [PAD]...`` with random lengths in [min_length, length], ids in [4, VOCAB)."""
    g = gen(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    lengths = torch.randint(min_length, length + 1, (batch,), generator=g)
    pos = torch.arange(length)
    attention = (pos < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(batch), lengths - 1] = SEP
    ids[attention == 0] = PAD
    return ids, attention


def candidates(ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    return attention.bool() & ~torch.isin(ids, torch.tensor(SPECIAL))


def test_mlm_statistics_on_a_large_batch():
    ids, attention = text_batch(512, 64)
    before = ids.clone(), attention.clone()
    masked, labels = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.3, gen())
    assert torch.equal(ids, before[0]) and torch.equal(attention, before[1])  # inputs untouched
    cand = candidates(ids, attention)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~cand).any()  # never specials or padding
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
    assert abs(chosen.sum().item() / cand.sum().item() - 0.3) < 0.02
    n = chosen.sum().item()
    to_mask = (masked[chosen] == MASK).sum().item() / n
    kept = (masked[chosen] == ids[chosen]).sum().item() / n
    assert abs(to_mask - 0.8) < 0.03
    assert abs(kept - 0.1 - 0.1 / (VOCAB - len(SPECIAL))) < 0.03  # 10% kept + random draws of the same id
    random = masked[chosen & (masked != MASK) & (masked != ids)]
    assert len(random) > 0 and not torch.isin(random, torch.tensor(SPECIAL)).any() and random.max() < VOCAB


def test_mlm_is_deterministic_per_generator_state():
    ids, attention = text_batch(8, 16)
    first = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.15, gen(3))
    again = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.15, gen(3))
    other = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.15, gen(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])


def test_mlm_masks_at_least_one_token_per_sample_with_candidates():
    ids = torch.tensor([[CLS, 10, 11, SEP, PAD], [CLS, SEP, PAD, PAD, PAD], [CLS, 12, SEP, PAD, PAD]])
    attention = (ids != PAD).long()
    for seed in range(20):
        _, labels = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 1e-6, gen(seed))
        chosen = labels != IGNORE_INDEX
        assert chosen.sum(dim=1).tolist() == [1, 0, 1]  # the sample without candidates gets none


def test_mlm_prob_zero_and_one():
    ids, attention = text_batch(16, 12)
    masked, labels = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.0, gen())
    assert torch.equal(masked, ids) and (labels == IGNORE_INDEX).all()
    _, labels = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 1.0, gen())
    assert torch.equal(labels != IGNORE_INDEX, candidates(ids, attention))


def test_whole_word_masking_masks_words_entirely():
    ids, attention = text_batch(256, 64, min_length=64)  # long texts: the at-least-one rule barely shows
    cand = candidates(ids, attention)
    words = (cand.long().cumsum(dim=1) - 1) // 3  # words of 3 consecutive candidate tokens
    words = words.masked_fill(~cand, -1)
    _, labels = mask_tokens(ids, attention, SPECIAL, MASK, VOCAB, 0.2, gen(), word_ids=words)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~cand).any()
    n_words = n_chosen = 0
    for row in range(len(ids)):
        for word in words[row].unique().tolist():
            if word < 0:
                continue
            in_word = chosen[row][words[row] == word]
            assert in_word.all() or not in_word.any(), (row, word)
            n_words += 1
            n_chosen += int(in_word.all())
    assert abs(n_chosen / n_words - 0.2) < 0.025  # the probability applies per word


def test_frame_masks_touch_valid_frames_only_and_leave_one_visible():
    lengths = torch.tensor([0, 1, 2, 5, 8] * 100)
    frame_mask = (torch.arange(8) < lengths[:, None]).long()
    for prob in (0.15, 0.5, 1.0):
        masked = mask_frames(frame_mask, prob, gen())
        assert masked.dtype == torch.bool and not (masked & (frame_mask == 0)).any()
        assert not masked[lengths < 2].any()  # one-frame (and empty) videos are never masked
        multi = lengths >= 2
        assert (frame_mask.sum(1) - masked.sum(1))[multi].min() >= 1  # >= 1 visible frame each
        if prob == 1.0:
            assert torch.equal(masked.sum(1)[multi], lengths[multi] - 1)
    masked = mask_frames(frame_mask, 0.15, gen())
    maskable = frame_mask.bool() & (lengths >= 2)[:, None]
    assert abs(masked.sum().item() / maskable.sum().item() - 0.15) < 0.03


def test_frame_masks_rules_for_small_batches_and_determinism():
    frame_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    for seed in range(10):
        masked = mask_frames(frame_mask, 1e-6, gen(seed))
        assert masked.sum() == 1 and masked[0].sum() == 1  # one target per batch, in the 2-frame video
    assert not mask_frames(frame_mask, 0.0, gen()).any()
    assert not mask_frames(torch.tensor([[1, 0], [0, 0]]), 1.0, gen()).any()  # no video has 2 frames
    big = (torch.rand(32, 8, generator=gen(1)) < 0.7).long()
    assert torch.equal(mask_frames(big, 0.3, gen(5)), mask_frames(big, 0.3, gen(5)))


@pytest.mark.parametrize("prob", [0.3, 0.5, 1.0])
def test_shuffled_videos_are_negatives_without_fixed_points(prob):
    perm, matched = shuffle_videos(4000, prob, gen(), "cpu")
    index = torch.arange(4000)
    assert torch.equal(matched, perm == index)
    assert ((perm >= 0) & (perm < 4000)).all()
    assert abs(matched.float().mean().item() - (1 - prob)) < 0.03
    assert torch.equal(torch.sort(perm[~matched]).values, torch.sort(index[~matched]).values)  # a cycle of negatives
    again, _ = shuffle_videos(4000, prob, gen(), "cpu")
    assert torch.equal(perm, again)


def test_shuffle_edge_cases():
    perm, matched = shuffle_videos(1, 1.0, gen(), "cpu")
    assert perm.tolist() == [0] and matched.tolist() == [True]
    perm, matched = shuffle_videos(5, 0.0, gen(), "cpu")
    assert matched.all()
    perm, matched = shuffle_videos(2, 1.0, gen(), "cpu")
    assert perm.tolist() == [1, 0] and not matched.any()
    for seed in range(30):  # whenever exactly one sample is chosen, it still gets another sample's video
        perm, matched = shuffle_videos(3, 0.3, gen(seed), "cpu")
        negatives = (~matched).nonzero().squeeze(1)
        assert (perm[negatives] != negatives).all()
        if len(negatives) == 1:
            assert 0 <= perm[negatives].item() < 3


def test_shuffle_only_among_eligible_samples():
    eligible = torch.tensor([True, False, True, True, False, True] * 50)
    for seed in range(5):
        perm, matched = shuffle_videos(300, 0.5, torch.Generator().manual_seed(seed), "cpu", eligible=eligible)
        assert matched[~eligible].all()  # samples without video keep their own
        assert eligible[perm[~matched]].all()  # and nobody is given one of them
        assert 0.35 < (~matched[eligible]).float().mean() < 0.65
    one = torch.tensor([True, False, False])
    perm, matched = shuffle_videos(3, 1.0, torch.Generator().manual_seed(0), "cpu", eligible=one)
    assert matched.all()  # a single sample with video has no partner


def _shown(perm: torch.Tensor, valid: torch.Tensor) -> list[list[int]]:
    """The frames each video shows at its valid positions, in order."""
    return [perm[b][valid[b]].tolist() for b in range(len(perm))]


def test_order_permutes_valid_frames_only_and_labels_what_it_shows():
    g = gen(3)
    valid = torch.rand(400, 6, generator=g) < 0.7  # holes anywhere, some videos with 0, 1 or 2 valid frames
    perm, labels = order_frames(valid, gen(5))
    slots = torch.arange(6).expand(400, 6)
    assert torch.equal(perm[~valid], slots[~valid])  # invalid positions keep their (empty) frame
    n = valid.sum(dim=1)
    for b, shown in enumerate(_shown(perm, valid)):
        own = slots[b][valid[b]].tolist()
        assert sorted(shown) == own  # a permutation of the video's own valid frames
        if labels[b] == 0 or labels[b] == IGNORE_INDEX:
            assert shown == own
        elif labels[b] == 1:
            assert shown == own[::-1]
        else:  # shuffled: never in order, never reversed
            assert n[b] >= 3 and shown != own and shown != own[::-1]
    assert (labels[n < 2] == IGNORE_INDEX).all() and (labels[n >= 2] >= 0).all()
    assert (labels[n == 2] != 2).all()  # two frames cannot be shuffled apart from a reversal
    counts = torch.bincount(labels[n >= 3], minlength=3).float()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.08  # the three classes equally likely


def test_order_is_deterministic_per_generator_and_a_three_frame_shuffle_is_a_real_one():
    valid = torch.ones(64, 5, dtype=torch.bool)
    first, again, other = order_frames(valid, gen(1)), order_frames(valid, gen(1)), order_frames(valid, gen(2))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])
    three = torch.zeros(3000, 4, dtype=torch.bool)
    three[:, :3] = True  # 3 frames: only 4 of the 6 orders are a shuffle
    perm, labels = order_frames(three, gen(0))
    shuffles = {tuple(row[:3].tolist()) for row in perm[labels == 2]}
    assert shuffles == {(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1)}
    assert torch.equal(reverse_frames(three)[0], torch.tensor([2, 1, 0, 3]))
