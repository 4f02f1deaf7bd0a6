"""Whole-word indices: WordPiece continuations and jieba-segmented Chinese words share a word index."""

from __future__ import annotations

import jieba
import pytest
import torch

from mmcls.data.tokenizer import train_wordpiece
from mmcls.data.wwm import batch_word_ids, whole_word_ids

SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"}


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny WordPiece vocabulary: Chinese characters, and English words only as pieces (``play`` + ``##ing``)."""
    corpus = ["北京大学 我爱自然语言处理 清华大学", "playing played player plays play", "hello world 你好世界"]
    return train_wordpiece(corpus, vocab_size=60, min_frequency=1)


def groups(ids: list[int]) -> list[list[int]]:
    """Positions of each word, in order."""
    return [[i for i, w in enumerate(ids) if w == word] for word in sorted(set(ids) - {-1})]


def test_wordpiece_continuations_join_their_word():
    tokens = ["[CLS]", "play", "##ing", "##s", "hello", "[SEP]", "##x", "[PAD]"]
    assert whole_word_ids(tokens, SPECIAL) == [-1, 0, 0, 0, 1, -1, 2, -1]  # "##x" after a special starts a word


@pytest.mark.parametrize("phrase", ["北京大学", "我爱自然语言处理", "清华大学你好世界"])
def test_chinese_runs_are_grouped_as_jieba_segments_them(phrase):
    tokens = ["[CLS]", *phrase, "[SEP]"]
    ids = whole_word_ids(tokens, SPECIAL)
    assert ids[0] == ids[-1] == -1
    words = ["".join(tokens[i] for i in group) for group in groups(ids)]
    assert words == jieba.lcut(phrase, HMM=False)


def test_mixed_text_and_special_tokens_split_runs():
    tokens = ["北", "京", "[SEP]", "大", "学", "hello", "你", "好"]
    ids = whole_word_ids(tokens, SPECIAL)
    assert ids[2] == -1
    assert ["".join(tokens[i] for i in g) for g in groups(ids)] == [
        *jieba.lcut("北京", HMM=False), *jieba.lcut("大学", HMM=False), "hello", *jieba.lcut("你好", HMM=False)]


def test_batch_word_ids_follow_the_tokenizer(tokenizer):
    batch = tokenizer(["北京大学 playing", "我爱自然语言处理"], padding=True, return_tensors="pt")
    input_ids = batch["input_ids"]
    out = batch_word_ids(input_ids, tokenizer)
    assert out.shape == input_ids.shape and out.dtype == torch.long
    assert ((out == -1) == torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids))).all()
    first = tokenizer.convert_ids_to_tokens(input_ids[0])
    assert "##" in "".join(first)  # the vocabulary really splits "playing" into pieces
    words = ["".join(first[i] for i in g).replace("##", "") for g in groups(out[0].tolist())]
    assert words == [*jieba.lcut("北京大学", HMM=False), "playing"]
