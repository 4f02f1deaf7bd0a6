"""Shared fixtures. Tests run offline on CPU."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = [
    "今天天气很好 we go running in the park",
    "猫和狗在院子里玩 the cat and the dog play",
    "美食 cooking noodles 面条 很好吃",
    "足球比赛 football match goal 进球",
    "hello world 你好世界",
] * 4


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer trained on a tiny mixed Chinese/English corpus, saved and loaded back from disk."""
    from mmcls.data.tokenizer import load_tokenizer, train_wordpiece

    out = tmp_path_factory.mktemp("tokenizer")
    train_wordpiece(CORPUS, vocab_size=300, min_frequency=1).save_pretrained(out)
    return load_tokenizer(out)
