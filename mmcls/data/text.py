"""Text assembly: title / asr / ocr -> ``[CLS] title [SEP] asr [SEP] ocr [SEP]`` token ids within a budget.

The markers are the tokenizer's own cls and sep tokens: ``[CLS]`` / ``[SEP]`` for a BERT WordPiece tokenizer,
``<s>`` / ``</s>`` for an XLM-R style SentencePiece one (``<s> title </s> asr </s> ocr </s>``; each field is
tokenised alone, so it starts with a ``▁`` word start there).

Each field has a token budget; a field that needs less than its budget passes the rest to the fields that need
more, so no space is wasted while anything is cut. Over-long fields are cut by their own truncation mode: ``head``
keeps the start, ``tail`` the end, ``head_tail`` both ends (half each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmcls.config import DataConfig
from mmcls.data.records import VideoRecord

OCR_JOINER = " "
CHARS_PER_TOKEN_CAP = 64


def ocr_text(ocr: Sequence[tuple[float, str]]) -> str:
    """OCR lines in time order (stable for ties), empty and repeated lines dropped, joined by spaces."""
    seen: set[str] = set()
    lines = []
    for _, text in sorted(ocr, key=lambda item: item[0]):
        line = text.strip()
        if line and line not in seen:
            seen.add(line)
            lines.append(line)
    return OCR_JOINER.join(lines)


def field_texts(record: VideoRecord, fields: Sequence[str]) -> list[str]:
    """The text of each requested field of a record."""
    getters = {"title": lambda r: r.title.strip(), "asr": lambda r: r.asr.strip(), "ocr": lambda r: ocr_text(r.ocr)}
    return [getters[name](record) for name in fields]


def water_fill(needs: Sequence[int], capacity: int) -> list[int]:
    """Share ``capacity`` among fields needing ``needs``: the longest are cut first, nothing is wasted.

    Returns ``alloc`` with ``alloc[i] <= needs[i]``, ``sum(alloc) == min(capacity, sum(needs))`` and the
    allocations as equal as the needs allow (the largest level L with ``sum(min(n, L)) <= capacity``; the remainder
    goes one token each to the earliest fields still short).
    """
    if capacity <= 0:
        return [0] * len(needs)
    if sum(needs) <= capacity:
        return list(needs)
    lo, hi = 0, max(needs)
    while lo < hi:  # largest level whose total fits
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in needs) <= capacity:
            lo = mid
        else:
            hi = mid - 1
    alloc = [min(n, lo) for n in needs]
    remainder = capacity - sum(alloc)
    for i, n in enumerate(needs):
        if remainder == 0:
            break
        if n > alloc[i]:
            alloc[i] += 1
            remainder -= 1
    return alloc


def allocate_budgets(lengths: Sequence[int], budgets: Sequence[int], capacity: int) -> list[int]:
    """Tokens kept per field: each field gets up to its budget, unused budget flows to fields that need more.

    If the budgets themselves exceed ``capacity`` they are shared out longest-cut-first.
    """
    base = [min(n, b) for n, b in zip(lengths, budgets, strict=True)]
    if sum(base) >= capacity:
        return water_fill(base, capacity)
    extra = water_fill([n - b for n, b in zip(lengths, base, strict=True)], capacity - sum(base))
    return [b + e for b, e in zip(base, extra, strict=True)]


def truncate(tokens: Sequence[int], keep: int, mode: str) -> list[int]:
    """Keep ``keep`` tokens: ``head`` (first), ``tail`` (last) or ``head_tail`` (first half + last half)."""
    if keep >= len(tokens):
        return list(tokens)
    if keep <= 0:
        return []
    if mode == "head":
        return list(tokens[:keep])
    if mode == "tail":
        return list(tokens[len(tokens) - keep:])
    if mode == "head_tail":
        head = (keep + 1) // 2
        return list(tokens[:head]) + list(tokens[len(tokens) - (keep - head):])
    raise ValueError(f"unknown truncation mode {mode!r}")


class TextEncoder:
    """Turns a record into token ids ``[CLS] f1 [SEP] f2 [SEP] ...`` of at most ``max_text_len`` tokens (the
    tokenizer's cls and sep ids, e.g. ``<s>`` and ``</s>`` for a SentencePiece tokenizer)."""

    def __init__(self, tokenizer: Any, cfg: DataConfig) -> None:
        self.tokenizer = tokenizer
        self.fields = list(cfg.text_fields)
        self.max_len = cfg.max_text_len
        self.budgets = [cfg.text_budgets.get(name, 0) for name in self.fields]
        self.modes = [cfg.text_truncation.get(name, "head") for name in self.fields]
        self.capacity = self.max_len - 1 - len(self.fields)  # room left after [CLS] and one [SEP] per field
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id
        # Fields longer than 2 x char_cap characters are tokenised from their two ends only (a guard against
        # megabyte-long transcripts). Shorter fields, e.g. any field under 32k characters at max_text_len 256, are
        # tokenised whole, so truncation is exact; beyond that it stays exact unless tokens average > 64 characters.
        self.char_cap = CHARS_PER_TOKEN_CAP * self.max_len

    def _tokenize(self, text: str, cap: bool = True) -> list[int]:
        if cap and len(text) > 2 * self.char_cap:  # very long asr: tokenise only the ends that can survive truncation
            text = text[: self.char_cap] + " " + text[-self.char_cap:]
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, record: VideoRecord) -> list[int]:
        """Token ids of one record."""
        pieces = [self._tokenize(text) for text in field_texts(record, self.fields)]
        keep = allocate_budgets([len(p) for p in pieces], self.budgets, self.capacity)
        ids = [self.cls_id]
        for piece, n, mode in zip(pieces, keep, self.modes, strict=True):
            ids.extend(truncate(piece, n, mode))
            ids.append(self.sep_id)
        return ids

    def field_lengths(self, record: VideoRecord) -> Mapping[str, int]:
        """Untruncated token count per field (for data statistics)."""
        texts = field_texts(record, self.fields)
        return {name: len(self._tokenize(text, cap=False)) for name, text in zip(self.fields, texts, strict=True)}
