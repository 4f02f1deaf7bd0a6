"""Whole-word masking: a word index for every token, so MLM can mask all pieces of a word together.

A BERT tokenizer splits English into WordPiece pieces (``play ##ing``) and Chinese into single characters, so
token-level masking often leaves a word's other half visible, which makes the task easy. Here WordPiece
continuations join the previous word, and runs of Chinese characters are segmented with jieba, in dictionary-only
mode (``HMM=False``): the hidden Markov model would guess new words, gluing unrelated characters together, while
an unknown span falling back to single characters is just token-level masking there.

A SentencePiece tokenizer (XLM-R style, :func:`word_marks` tells) marks the other end: a piece starting with ``▁``
starts a word (there was a space before it) and a piece without joins the previous word, except around punctuation
(SentencePiece keeps ``time!with`` together, BERT splits it into three words). Its Chinese pieces may hold
several characters and a space-free Chinese run would be one "word", so runs of all-Chinese pieces are segmented by
jieba too: a piece belongs to the jieba word its first character is in (a piece spanning two jieba words masks with
the first, the second then starts at the next piece), and a bare ``▁`` piece before a run joins its first word.
Tokenizers with neither mark (e.g. byte-level BPE) are read with the WordPiece rules: every non-Chinese token is a
word by itself, i.e. token-level masking outside Chinese runs.
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

CONTINUATION = "##"  # WordPiece: the mark of a piece that continues the previous one
WORD_START = "▁"  # SentencePiece (Metaspace): the mark of a piece that starts a word
MARKS = ("wordpiece", "sentencepiece")
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


def _is_cjk_text(text: str) -> bool:
    """Whether ``text`` is non-empty and all CJK ideographs."""
    return bool(text) and all(is_cjk_char(char) for char in text)


def _is_wordish(text: str) -> bool:
    return any(char.isalnum() for char in text)


def _continues_piece(token: str, previous: str) -> bool:
    """Whether SentencePiece ``token`` continues the word of ``previous``: no ``▁`` mark, and no punctuation on either
    side (``time!with`` is one SentencePiece "word" but three for masking, as BERT's tokenizer splits it)."""
    return (not token.startswith(WORD_START) and _is_wordish(token)
            and (previous == WORD_START or _is_wordish(previous)))


def whole_word_ids(tokens: Sequence[str], special: set[str], marks: str = "wordpiece") -> list[int]:
    """Word index per token (-1 for ``special`` tokens, padding included), counting words from 0 in order.

    ``marks="wordpiece"``: ``##`` continuations share the previous token's word (a new word after a special token),
    any other non-Chinese token is a word by itself. ``marks="sentencepiece"``: a piece without a leading ``▁``
    shares the previous piece's word unless that is special, Chinese or punctuation (or the piece is punctuation).
    Either way each jieba word of a run of Chinese tokens is one word (see the module's docstring for multi-character
    pieces).
    """
    if marks not in MARKS:
        raise ValueError(f"unknown word marks {marks!r} (one of {', '.join(MARKS)})")
    pieces = marks == "sentencepiece"
    ids = [-1] * len(tokens)
    next_word = 0
    previous_cjk = False  # whether tokens[i - 1] was part of a Chinese run
    i = 0
    while i < len(tokens):
        token = tokens[i]
        body = token[len(WORD_START):] if pieces and token.startswith(WORD_START) else token
        if token in special:
            previous_cjk = False
            i += 1
        elif _is_cjk_text(body):
            end = i + 1
            while (end < len(tokens) and tokens[end] not in special and _is_cjk_text(tokens[end])
                   and not (pieces and tokens[end].startswith(WORD_START))):
                end += 1
            run = [body, *tokens[i + 1:end]]
            word_of = [w for w, length in enumerate(_segment("".join(run))) for _ in range(length)]  # per character
            # a bare "▁" before the run (a space, then Chinese) is part of the run's first word
            word = ids[i - 1] if pieces and i > 0 and tokens[i - 1] == WORD_START and ids[i - 1] >= 0 else None
            last, offset = None, 0
            for k, piece in enumerate(run):
                if word_of[offset] != last:
                    if last is not None or word is None:
                        word, next_word = next_word, next_word + 1
                    last = word_of[offset]
                ids[i + k] = word
                offset += len(piece)
            previous_cjk = True
            i = end
        elif i > 0 and ids[i - 1] >= 0 and (_continues_piece(token, tokens[i - 1]) and not previous_cjk if pieces
                                            else token.startswith(CONTINUATION)):
            ids[i] = ids[i - 1]
            previous_cjk = False
            i += 1
        else:
            ids[i] = next_word
            next_word += 1
            previous_cjk = False
            i += 1
    return ids


def word_marks(tokenizer: Any) -> str:
    """How ``tokenizer`` marks words: ``"sentencepiece"`` when its pieces carry SentencePiece's ``▁`` word starts
    (a Metaspace decoder or a unigram model; a tokenizer holding an ``sp_model``), else ``"wordpiece"`` (``##``
    continuations; with neither mark every non-Chinese token is a word by itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "sentencepiece" if hasattr(tokenizer, "sp_model") else "wordpiece"
    decoder, model = backend.decoder, backend.model
    if type(decoder).__name__ == "Metaspace" and getattr(decoder, "replacement", WORD_START) == WORD_START:
        return "sentencepiece"
    if type(model).__name__ == "WordPiece" or type(decoder).__name__ == "WordPiece":
        return "wordpiece"
    return "sentencepiece" if type(model).__name__ == "Unigram" else "wordpiece"


def batch_word_ids(input_ids: Tensor, tokenizer: Any) -> Tensor:
    """``[B, L]`` word indices of a collated batch (-1 at special and padding tokens), on ``input_ids``' device."""
    special, marks = set(tokenizer.all_special_tokens), word_marks(tokenizer)
    rows = [whole_word_ids(tokenizer.convert_ids_to_tokens(row), special, marks) for row in input_ids.tolist()]
    return torch.tensor(rows, dtype=torch.long, device=input_ids.device).reshape(input_ids.shape)
