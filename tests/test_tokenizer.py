"""Tokenizers saved and reloaded through the user path: WordPiece (Chinese per character, English per word) and
SentencePiece unigram (XLM-R style, from build_tokenizer --kind unigram or a folder holding only the .model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmcls.data.tokenizer import SENTENCEPIECE_FILE, load_tokenizer, train_unigram
from mmcls.errors import DataError


def test_chinese_by_character_english_by_word(tiny_tokenizer):
    assert tiny_tokenizer.tokenize("今天天气 Hello World") == ["今", "天", "天", "气", "hello", "world"]
    pieces = tiny_tokenizer.tokenize("runninggoal")  # unseen word -> word pieces, never [UNK] for known letters
    assert "[UNK]" not in pieces and pieces[0] != "runninggoal" and all(p.startswith("##") for p in pieces[1:])
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        assert getattr(tiny_tokenizer, name) is not None


def test_wordpiece_vocabulary_is_the_same_for_the_same_texts_and_ranks_words_by_count(tmp_path):
    """Two trainings give byte-identical files (the tokenizers trainer did not: ties in hash order); the vocabulary
    is the specials, every character as a start and a ##continuation, then the frequent words, most frequent first,
    cut at vocab_size; a word seen once is spelled."""
    from mmcls.data.tokenizer import SPECIAL_TOKENS, train_wordpiece

    texts = ["美食 cooking cooking recipe", "cooking 美食 recipe", "unboxing 手机 gadget", "gadget review"] * 3
    texts.append("onceonly")
    for out in ("a", "b"):
        train_wordpiece(texts, vocab_size=100).save_pretrained(tmp_path / out)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    ids = json.loads((tmp_path / "a" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    vocab = sorted(ids, key=ids.get)
    assert vocab[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    words = [token for token in vocab if len(token) > 1 and not token.startswith(("##", "["))]
    assert words == ["cooking", "gadget", "recipe", "review", "unboxing"]  # 9, 6, 6, 3, 3 times; ties by name
    tokenizer = load_tokenizer(tmp_path / "a")
    assert tokenizer.tokenize("onceonly cooking") == ["o", *[f"##{c}" for c in "nceonly"], "cooking"]
    small = train_wordpiece(texts, vocab_size=len(vocab) - 2)
    assert "unboxing" not in small.get_vocab() and "cooking" in small.get_vocab()  # the rarest words go first


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


TEXTS = ["北京大学 playing", "我爱自然语言处理 football", "今天天气很好 we go running in the park"]


def test_unigram_tokenizer_from_the_command(unigram_tokenizer_dir, unigram_tokenizer):
    """build_tokenizer --kind unigram writes an XLM-R tokenizer folder with the SentencePiece model; it encodes as
    the model itself does (ids shifted by XLM-R's <pad>), with <s> ... </s> around, and decodes back."""
    import sentencepiece as spm

    assert {"tokenizer.json", "tokenizer_config.json", SENTENCEPIECE_FILE} <= {
        p.name for p in unigram_tokenizer_dir.iterdir()}
    tok = unigram_tokenizer
    assert type(tok).__name__ == "XLMRobertaTokenizer"
    assert 50 < len(tok) <= 200  # --vocab-size 200 is an upper bound: the tiny corpus has fewer pieces
    specials = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
    assert {name: getattr(tok, f"{name}_token") for name in specials} == specials
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id, tok.mask_token_id) == (
        0, 1, 2, 3, len(tok) - 1)
    assert tok.bos_token_id == tok.cls_token_id and tok.eos_token_id == tok.sep_token_id
    model = spm.SentencePieceProcessor(model_file=str(unigram_tokenizer_dir / SENTENCEPIECE_FILE))
    assert model.get_piece_size() == len(tok) - 2  # + <pad> and <mask>
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.convert_ids_to_tokens(ids[1:-1]) == model.encode(text, out_type=str)
        assert ids[1:-1] == [i + 1 if i > 2 else 3 for i in model.encode(text)]  # fairseq's offset, unk -> 3
        assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == text
    pieces = tok.tokenize("playing 北京大学")
    assert pieces[0] == "▁play" and len(pieces) > 2  # English words in pieces...
    assert any(len(p.lstrip("▁")) > 1 and p[-1] >= "\u4e00" for p in pieces)  # ...Chinese in multi-character ones


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "unigram", "--vocab-size", "8"], "--vocab-size: 8 is too small for this corpus"),
    (["--kind", "unigram", "--min-frequency", "3"], "--min-frequency: not an option of --kind unigram"),
    (["--character-coverage", "0.99"], "--character-coverage: not an option of --kind wordpiece"),
    (["--kind", "unigram", "--character-coverage", "1.5"], "--character-coverage: must be in (0, 1]"),
])
def test_build_tokenizer_option_errors_are_one_line(tmp_path, capsys, args, message):
    from mmcls.cli import run_main
    from mmcls.commands.build_tokenizer import main

    (tmp_path / "annotations").mkdir()
    records = [{"id": "1", "title": "今天天气很好 hello world", "asr": "", "ocr": [], "category_id": "0101"}]
    (tmp_path / "annotations" / "a.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert run_main(main, ["--root", str(tmp_path), "--out", str(tmp_path / "tok"), "--no-progress", *args]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "tok").exists()


def test_unigram_on_an_empty_corpus_or_one_long_text(tmp_path):
    """No text is a clear error, not SentencePiece's internal check; a text longer than SentencePiece's 4192-byte
    sentence limit (a long Chinese transcript) is trained on in chunks, not skipped."""
    with pytest.raises(DataError, match="no text to train a tokenizer on"):
        train_unigram(["", "   "], tmp_path / "empty", vocab_size=50)
    tok = train_unigram(["今天天气很好我们去公园玩" * 600], tmp_path / "long", vocab_size=50)
    assert tok.tokenize("今天天气很好") and tok.unk_token not in tok.tokenize("今天天气很好")


def test_a_folder_holding_only_the_sentencepiece_model_loads(tmp_path, unigram_tokenizer_dir, unigram_tokenizer):
    """An XLM-R style folder without tokenizer.json (only sentencepiece.bpe.model; also next to a BERT config.json)
    loads through sentencepiece as the same tokenizer; a broken model file is a clear error."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(unigram_tokenizer_dir / SENTENCEPIECE_FILE, bare / SENTENCEPIECE_FILE)
    for extra in ({}, {"config.json": {"model_type": "bert", "vocab_size": len(unigram_tokenizer), "pad_token_id": 1}}):
        for name, content in extra.items():
            (bare / name).write_text(json.dumps(content), encoding="utf-8")
        tok = load_tokenizer(bare)
        assert len(tok) == len(unigram_tokenizer) and tok.all_special_ids == unigram_tokenizer.all_special_ids
        assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.mask_token) == ("<s>", "</s>", "<pad>", "<mask>")
        for text in TEXTS:
            assert tok(text)["input_ids"] == unigram_tokenizer(text)["input_ids"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / SENTENCEPIECE_FILE).write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a SentencePiece model"):
        load_tokenizer(tmp_path / "broken")


def test_a_unigram_tokenizer_trains_a_model_built_from_sizes(synthetic_root, tmp_path):
    """data.tokenizer=FOLDER of build_tokenizer --kind unigram: a model built from model.text's sizes trains one step
    on it, and its model folder carries that tokenizer (<s> ... </s>) and a BERT config of its size and padding."""
    from mmcls.cli import run_main
    from mmcls.commands import finetune
    from mmcls.commands.build_tokenizer import main as build
    from tests.helpers import tiny_overrides

    folder = tmp_path / "sp"
    assert run_main(build, ["--root", str(synthetic_root), "--out", str(folder), "--kind", "unigram",
                            "--vocab-size", "300", "--no-progress"]) == 0
    assert len(load_tokenizer(folder)) == 300  # the special tokens count in --vocab-size
    run = tmp_path / "run"
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert finetune.main(["--config", str(demo), *tiny_overrides(synthetic_root, run, "train.max_steps=1"),
                          f"data.tokenizer={folder}", "model.text.pretrained=null"]) == 0
    saved = load_tokenizer(run / "best")
    assert (saved.cls_token, saved.sep_token, len(saved)) == ("<s>", "</s>", len(load_tokenizer(folder)))
    bert = json.loads((run / "best" / "bert_config.json").read_text(encoding="utf-8"))
    assert bert["vocab_size"] == len(saved) and bert["pad_token_id"] == saved.pad_token_id == 1
