"""Pretraining masks: MLM token masking, MFM frame masking, ITM video shuffling and the order task's frame
permutations.

Every draw comes from a ``torch.Generator`` the caller owns (on the batch's device), so the masks are a pure
function of the batch and the generator state: a resumed run or a second process with the same state draws the
same masks. Inputs are never modified; new tensors are returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmcls.labels import IGNORE_INDEX

# The order task's classes, in label order: a clip plays forward, reversed or shuffled.
ORDER_CLASSES = ("forward", "reverse", "shuffle")


def _lowest_draw(draws: Tensor, allowed: Tensor) -> Tensor:
    """One-hot bool of the ``allowed`` entry with the lowest draw in each row (all False for rows with none)."""
    masked = draws.masked_fill(~allowed, float("inf"))
    pick = torch.zeros_like(allowed)
    pick.scatter_(1, masked.argmin(dim=1, keepdim=True), True)
    return pick & allowed


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, special_ids: Sequence[int], mask_id: int, vocab_size: int,
                prob: float, generator: torch.Generator, word_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """BERT masked language modelling: ``(masked_ids [B, L], labels [B, L])``.

    Candidates are attended tokens that are not in ``special_ids``. Each candidate token, or each whole word when
    ``word_ids`` ``[B, L]`` is given (word index per token, -1 for non-candidates), is chosen with probability
    ``prob``; the chosen tokens become ``mask_id`` (80%), a random non-special token (10%) or stay unchanged (10%).
    ``labels`` hold the original id at chosen positions and -100 elsewhere.

    When ``prob > 0``, every sample with a candidate gets at least one chosen unit (its candidate with the lowest
    draw): a sample without a target would add nothing to the loss. On short texts this lifts the masked fraction
    slightly above ``prob``. ``prob == 0`` chooses nothing.
    """
    device = input_ids.device
    batch, length = input_ids.shape
    special = torch.tensor(list(special_ids), dtype=input_ids.dtype, device=device)
    candidate = attention_mask.bool() & ~torch.isin(input_ids, special)  # [B, L]
    if word_ids is None:
        units, n_units = torch.arange(length, device=device).expand(batch, length), max(length, 1)
    else:
        units = word_ids.to(device=device, dtype=torch.long)
        candidate &= units >= 0
        n_units = max(int(units.max()) + 1, 1) if units.numel() else 1
    units = units.masked_fill(~candidate, -1)  # [B, L] unit index per token, -1 = never chosen

    draws = torch.rand(batch, n_units, generator=generator, device=device)  # [B, U]
    owned = torch.zeros(batch, n_units, dtype=torch.long, device=device)
    present = owned.scatter_add_(1, units.clamp(min=0), candidate.long()) > 0  # [B, U] units with a candidate
    chosen_units = present & (draws < prob)
    if prob > 0:
        empty = ~chosen_units.any(dim=1, keepdim=True)  # [B, 1]
        chosen_units |= empty & _lowest_draw(draws, present)
    chosen = candidate & chosen_units.gather(1, units.clamp(min=0))  # [B, L]

    action = torch.rand(batch, length, generator=generator, device=device)  # [B, L] 80/10/10 split
    not_special = torch.ones(vocab_size, dtype=torch.bool, device=device)
    not_special[special[(special >= 0) & (special < vocab_size)]] = False
    if 0 <= mask_id < vocab_size:
        not_special[mask_id] = False
    pool = not_special.nonzero().squeeze(1)  # [V'] ids a random replacement may take
    random_ids = pool[torch.randint(len(pool), (batch, length), generator=generator, device=device)]

    masked_ids = torch.where(chosen & (action < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    masked_ids = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids.to(input_ids.dtype), masked_ids)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked_ids, labels


def mask_frames(frame_mask: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """Masked frame modelling: bool ``[B, T]``, True for the valid frames whose input is masked.

    Rules, in order:
    1. only videos with >= 2 valid frames are masked (masking a one-frame video would remove all of its visual
       input); invalid frames never are;
    2. each valid frame of those videos is chosen with probability ``prob``, but every such video keeps at least one
       frame unmasked (its chosen frame with the highest draw is released);
    3. when ``prob > 0`` and nothing was chosen although some video has >= 2 valid frames, exactly one frame is
       masked: the one with the lowest draw among those videos, so every batch gives MFM a target.
    ``prob == 0`` masks nothing.
    """
    valid = frame_mask.bool()  # [B, T]
    maskable = valid & (valid.sum(dim=1, keepdim=True) >= 2)
    draws = torch.rand(valid.shape, generator=generator, device=frame_mask.device)  # [B, T]
    chosen = maskable & (draws < prob)
    full = (chosen == maskable).all(dim=1, keepdim=True) & maskable.any(dim=1, keepdim=True)  # [B, 1]
    chosen &= ~(full & _lowest_draw(-draws, maskable))
    if prob > 0 and not chosen.any() and maskable.any():
        flat = _lowest_draw(draws.reshape(1, -1), maskable.reshape(1, -1))
        chosen = flat.reshape(valid.shape)
    return chosen


def shuffle_videos(batch_size: int, prob: float, generator: torch.Generator, device: torch.device | str,
                   eligible: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Video-text matching negatives: ``(perm [B], matched [B])``; sample ``i`` is paired with video ``perm[i]``.

    Each ``eligible`` sample (default all; pass ``frame_mask.any(1)``: a sample without frames has no video to swap,
    and swapping one empty video for another would make identical inputs with opposite labels) is chosen with
    probability ``prob``; the chosen ones swap videos along a random cycle (no one keeps its own). A single chosen
    sample takes the video of a random other eligible sample (which keeps its own too), so ``perm`` is an index
    map, not always a permutation. ``matched = perm == arange(B)``.
    """
    perm = torch.arange(batch_size, device=device)
    draws = torch.rand(batch_size, generator=generator, device=device)
    pool = torch.ones(batch_size, dtype=torch.bool, device=device) if eligible is None else eligible.to(device)
    candidates = pool.nonzero().squeeze(1)
    if len(candidates) >= 2:
        chosen = ((draws < prob) & pool).nonzero().squeeze(1)
        if len(chosen) == 1:
            others = candidates[candidates != chosen]
            pick = torch.randint(len(others), (1,), generator=generator, device=device)
            perm[chosen] = others[pick]
        elif len(chosen) > 1:
            cycle = chosen[torch.randperm(len(chosen), generator=generator, device=device)]
            perm[cycle] = cycle.roll(-1)
    return perm, perm == torch.arange(batch_size, device=device)


def _valid_ranks(valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For bool ``valid`` ``[B, T]``: ``count [B, 1]`` valid frames per video, ``rank [B, T]`` index of each frame
    among its video's valid ones, ``valid_at [B, T]`` the valid positions in order then the invalid ones (source rank
    k -> its position ``valid_at[b, k]``), ``slots [B, T]`` the positions."""
    batch, length = valid.shape
    count = valid.sum(dim=1, keepdim=True)
    rank = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
    valid_at = torch.argsort((~valid).long(), dim=1, stable=True)
    slots = torch.arange(length, device=valid.device).expand(batch, length)
    return count, rank, valid_at, slots


def reverse_frames(frame_mask: Tensor) -> Tensor:
    """``perm [B, T]``: each video's valid frames in reverse order among the valid positions (invalid ones stay);
    apply with ``frames[arange(B)[:, None], perm]``."""
    valid = frame_mask.bool()
    count, rank, valid_at, slots = _valid_ranks(valid)
    return torch.where(valid, valid_at.gather(1, (count - 1 - rank).clamp(min=0)), slots)


def order_frames(frame_mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The order task: ``(perm [B, T] long, labels [B] long)``; position ``t`` of video ``b`` shows its frame
    ``perm[b, t]`` (apply with ``frames[arange(B)[:, None], perm]``), ``labels`` index :data:`ORDER_CLASSES`.

    Only the valid frames of a video (``frame_mask`` ``[B, T]``, need not be a prefix) move, among the valid
    positions, so the frame mask of the permuted videos is the same. Each video with >= 3 valid frames plays
    forward, reversed or shuffled with equal probability; a shuffle is never the identity nor the reversal (one that
    is gets its first two frames swapped), so every label is what the clip shows. A video with 2 valid frames plays
    forward or reversed (a shuffle of two frames is one of those); one with fewer plays forward and is labelled
    -100 (ignored: it has no order). The draws (a class per video, shuffle keys per frame) have fixed shapes, so
    the generator's state after the call depends on the batch shape only.
    """
    valid = frame_mask.bool()  # [B, T]
    batch, length = valid.shape
    device = valid.device
    count, rank, valid_at, slots = _valid_ranks(valid)

    choice = torch.rand(batch, generator=generator, device=device)  # [B] the class draw
    keys = torch.rand(batch, length, generator=generator, device=device)  # [B, T] the shuffle draw
    n = count.squeeze(1)
    labels = torch.where(n >= 3, (choice * 3).long().clamp(max=2), (choice * 2).long().clamp(max=1))
    labels = torch.where(n >= 2, labels, torch.full_like(labels, IGNORE_INDEX))  # [B]

    shuffled = torch.argsort(keys.masked_fill(slots >= count, float("inf")), dim=1)  # [B, T] first n: a permutation
    reversal = (count - 1 - slots).clamp(min=0)  # [B, T]
    same = ((shuffled == slots) | (slots >= count)).all(dim=1, keepdim=True)
    backwards = ((shuffled == reversal) | (slots >= count)).all(dim=1, keepdim=True)
    swap = (same | backwards) & (count >= 3)  # [B, 1] a shuffle that shows no disorder: swap its first two frames
    if length >= 2:
        swapped = torch.cat([shuffled[:, [1, 0]], shuffled[:, 2:]], dim=1)
        shuffled = torch.where(swap, swapped, shuffled)

    source_rank = torch.where((labels == 1).unsqueeze(1), reversal.gather(1, rank), rank)  # [B, T]
    source_rank = torch.where((labels == 2).unsqueeze(1), shuffled.gather(1, rank), source_rank)
    perm = torch.where(valid, valid_at.gather(1, source_rank), slots)  # [B, T]
    return perm, labels
