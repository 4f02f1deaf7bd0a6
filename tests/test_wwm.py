"""Whole-word indices: WordPiece continuations, SentencePiece pieces after a "▁" word start, and jieba-segmented
Chinese words share a word index."""

from __future__ import annotations

import jieba
import pytest
import torch

from mmcls.data.tokenizer import train_wordpiece
from mmcls.data.wwm import batch_word_ids, whole_word_ids, word_marks

SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"}
SP_SPECIAL = {"<s>", "</s>", "<pad>", "<unk>", "<mask>"}


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny WordPiece vocabulary: Chinese characters, and English words only as pieces (each is seen once)."""
    corpus = ["北京大学 我爱自然语言处理 清华大学", "playing played player plays play", "hello world 你好世界"]
    return train_wordpiece(corpus, vocab_size=60, min_frequency=2)


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


def test_sentencepiece_pieces_join_the_word_their_mark_starts():
    tokens = ["<s>", "▁play", "ing", "s", "▁hello", "</s>", "x", "▁", "the", "▁time", "!", "with", "<pad>"]
    # a piece after a special token starts a word, punctuation is a word of its own ("time!with": three)
    assert whole_word_ids(tokens, SP_SPECIAL, "sentencepiece") == [-1, 0, 0, 0, 1, -1, 2, 3, 3, 4, 5, 6, -1]
    assert whole_word_ids(tokens, SP_SPECIAL) == [-1, 0, 1, 2, 3, -1, 4, 5, 6, 7, 8, 9, -1]  # WordPiece: no grouping


def test_sentencepiece_chinese_pieces_follow_jieba():
    """Multi-character Chinese pieces: a piece goes with the jieba word of its first character, a bare "▁" with the
    run's first word, a "▁" inside a run (a space) starts a new run, a non-Chinese piece after Chinese a new word."""
    tokens = ["<s>", "▁", "北京", "大", "学", "▁我爱", "自然语言", "处理", "ok", "</s>"]
    ids = whole_word_ids(tokens, SP_SPECIAL, "sentencepiece")
    assert jieba.lcut("北京大学", HMM=False) == ["北京大学"]
    assert jieba.lcut("我爱自然语言处理", HMM=False) == ["我", "爱", "自然语言", "处理"]
    assert ids == [-1, 0, 0, 0, 0, 1, 2, 3, 4, -1]  # "我爱" is one piece, so one word with 我
    assert jieba.lcut("北京大学生", HMM=False) == ["北京", "大学生"]
    assert whole_word_ids(["▁北京大", "学生"], SP_SPECIAL, "sentencepiece") == [0, 1]  # 学生 starts in 大学生


def test_batch_word_ids_follow_a_sentencepiece_tokenizer(unigram_tokenizer, tokenizer):
    tok = unigram_tokenizer
    assert word_marks(tok) == "sentencepiece" and word_marks(tokenizer) == "wordpiece"
    batch = tok(["北京大学 playing", "我爱自然语言处理 the park"], padding=True, return_tensors="pt")
    input_ids = batch["input_ids"]
    out = batch_word_ids(input_ids, tok)
    assert out.shape == input_ids.shape and out.dtype == torch.long
    assert ((out == -1) == torch.isin(input_ids, torch.tensor(tok.all_special_ids))).all()
    expected = [[*jieba.lcut("北京大学", HMM=False), "playing"], ["我", "爱", "自然语言", "处理", "the", "park"]]
    for k, row in enumerate(out.tolist()):
        tokens = tok.convert_ids_to_tokens(input_ids[k].tolist())
        assert ["".join(tokens[i] for i in g).replace("▁", "") for g in groups(row)] == expected[k]
    assert [len(g) for g in groups(out[0].tolist())] == [2, 3]  # "▁北京 大学", "▁play in g": really several pieces
