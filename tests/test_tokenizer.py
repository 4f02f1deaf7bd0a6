"""WordPiece tokenizer: Chinese per character, English per word; saved and reloaded through the user path."""

from __future__ import annotations

import pytest

from mmcls.data.tokenizer import load_tokenizer
from mmcls.errors import DataError


def test_chinese_by_character_english_by_word(tiny_tokenizer):
    assert tiny_tokenizer.tokenize("今天天气 Hello World") == ["今", "天", "天", "气", "hello", "world"]
    pieces = tiny_tokenizer.tokenize("runninggoal")  # unseen word -> word pieces, never [UNK] for known letters
    assert "[UNK]" not in pieces and pieces[0] != "runninggoal" and all(p.startswith("##") for p in pieces[1:])
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        assert getattr(tiny_tokenizer, name) is not None


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="tokenizer directory not found"):
        load_tokenizer(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "empty")
