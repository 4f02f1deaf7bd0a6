"""WordPiece tokenizer: Chinese per character, English per word; saved and reloaded through the user path."""

from __future__ import annotations

from pathlib import Path

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
    with pytest.raises(DataError, match="no tokenizer in this directory"):
        load_tokenizer(tmp_path / "empty")


def test_a_model_folder_must_carry_its_own_tokenizer(tmp_path, tiny_tokenizer, synthetic_root, capsys):
    """A BERT folder without tokenizer files (transformers would build an empty tokenizer that maps every word to
    [UNK]) or with another model's tokenizer is one clear error; with its own it loads."""
    from mmcls.cli import run_main
    from mmcls.commands.finetune import main
    from mmcls.data.tokenizer import train_wordpiece
    from mmcls.models import build_bert
    from tests.helpers import make_cfg, tiny_overrides

    folder = tmp_path / "bert"
    build_bert(make_cfg().model.text, len(tiny_tokenizer), tiny_tokenizer.pad_token_id).save_pretrained(folder)
    with pytest.raises(DataError, match="no tokenizer in this directory"):
        load_tokenizer(folder)
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    args = ["--config", str(demo), *tiny_overrides(synthetic_root, tmp_path / "run", "train.max_steps=1"),
            f"model.text.pretrained={folder}"]
    assert run_main(main, args) == 2  # the reproduction: no run on a 5-token tokenizer
    assert "no tokenizer in this directory" in capsys.readouterr().err
    assert not (tmp_path / "run" / "best").exists()

    train_wordpiece(["another corpus altogether"] * 4, vocab_size=40, min_frequency=1).save_pretrained(folder)
    with pytest.raises(DataError, match=r"the tokenizer has \d+ tokens but the model's config.json \d+: it is not "
                                        r"the model's own tokenizer"):
        load_tokenizer(folder)
    tiny_tokenizer.save_pretrained(folder)  # its own
    assert len(load_tokenizer(folder)) == len(tiny_tokenizer)
