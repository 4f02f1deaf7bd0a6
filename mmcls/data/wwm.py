"""Whole-word masking: a word index for every token, so MLM can mask all pieces of a word together.

A BERT tokenizer splits English into WordPiece pieces (``play ##ing``) and Chinese into single characters, so
token-level masking often leaves a word's other half visible, which makes the task easy. Here WordPiece
continuations join the previous word, and runs of Chinese characters are segmented with jieba, in dictionary-only
mode (``HMM=False``): the hidden Markov model would guess new words, gluing unrelated characters together, while
an unknown span falling back to single characters is just token-level masking there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import jieba
import torch
from torch import Tensor

jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO on first use

CONTINUATION = "##"
# the CJK blocks BERT's tokenizer splits into single characters (transformers BasicTokenizer._is_chinese_char)
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk_char(token: str) -> bool:
    """Whether ``token`` is exactly one CJK ideograph."""
    return len(token) == 1 and any(lo <= ord(token) <= hi for lo, hi in CJK_RANGES)


@lru_cache(maxsize=65536)
def _segment(run: str) -> tuple[int, ...]:
    """Lengths of the jieba words of a run of Chinese characters (cached: titles and OCR lines repeat a lot)."""
    return tuple(len(word) for word in jieba.lcut(run, HMM=False))


def whole_word_ids(tokens: Sequence[str], special: set[str]) -> list[int]:
    """Word index per token (-1 for ``special`` tokens, padding included), counting words from 0 in order.

    ``##`` continuations share the previous token's word (a new word after a special token); each jieba word of a
    run of single-character Chinese tokens is one word; any other token is a word by itself.
    """
    ids = [-1] * len(tokens)
    next_word = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in special:
            i += 1
        elif token.startswith(CONTINUATION) and i > 0 and ids[i - 1] >= 0:
            ids[i] = ids[i - 1]
            i += 1
        elif is_cjk_char(token):
            end = i
            while end < len(tokens) and is_cjk_char(tokens[end]) and tokens[end] not in special:
                end += 1
            for length in _segment("".join(tokens[i:end])):
                ids[i:i + length] = [next_word] * length
                next_word += 1
                i += length
        else:
            ids[i] = next_word
            next_word += 1
            i += 1
    return ids


def batch_word_ids(input_ids: Tensor, tokenizer: Any) -> Tensor:
    """``[B, L]`` word indices of a collated batch (-1 at special and padding tokens), on ``input_ids``' device."""
    special = set(tokenizer.all_special_tokens)
    rows = [whole_word_ids(tokenizer.convert_ids_to_tokens(row), special) for row in input_ids.tolist()]
    return torch.tensor(rows, dtype=torch.long, device=input_ids.device).reshape(input_ids.shape)
