"""Text assembly: OCR ordering/dedup, budget allocation and truncation properties, token layout."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mmcls.config import build_config
from mmcls.data.records import VideoRecord
from mmcls.data.text import TextEncoder, allocate_budgets, ocr_text, truncate, water_fill

lengths_st = st.lists(st.integers(0, 400), min_size=1, max_size=4)


def test_ocr_sorted_by_time_and_repeats_dropped():
    ocr = [(5, "third"), (0, "first"), (2, "second"), (3, "second"), (4, " "), (6, "first")]
    assert ocr_text(ocr) == "first second third"


@given(lengths_st, st.integers(0, 600))
def test_water_fill_properties(needs, capacity):
    alloc = water_fill(needs, capacity)
    assert all(0 <= a <= n for a, n in zip(alloc, needs, strict=True))
    assert sum(alloc) == min(max(capacity, 0), sum(needs))  # nothing wasted
    cut = [a for a, n in zip(alloc, needs, strict=True) if a < n]
    if cut:  # longest cut first: no field keeps more than one token over any field that was cut
        assert max(alloc) <= min(cut) + 1


@given(st.data())
def test_allocate_budgets_properties(data):
    lengths = data.draw(lengths_st)
    budgets = data.draw(st.lists(st.integers(0, 200), min_size=len(lengths), max_size=len(lengths)))
    capacity = data.draw(st.integers(0, 600))
    alloc = allocate_budgets(lengths, budgets, capacity)
    assert all(0 <= a <= n for a, n in zip(alloc, lengths, strict=True))
    assert sum(alloc) == min(capacity, sum(lengths))  # unused budget flows to fields that need it
    if sum(budgets) <= capacity:  # budgets that fit are honoured
        assert all(a >= min(n, b) for a, n, b in zip(alloc, lengths, budgets, strict=True))


@given(st.lists(st.integers(), max_size=50), st.integers(-2, 60), st.sampled_from(["head", "tail", "head_tail"]))
def test_truncate_properties(tokens, keep, mode):
    out = truncate(tokens, keep, mode)
    assert len(out) == max(0, min(keep, len(tokens)))
    if keep >= len(tokens):
        assert out == tokens
    elif keep > 0:
        if mode == "head":
            assert out == tokens[:keep]
        elif mode == "tail":
            assert out == tokens[-keep:]
        else:
            head = (keep + 1) // 2
            assert out[:head] == tokens[:head]
            assert out[head:] == tokens[len(tokens) - (keep - head):]


def test_encoder_layout_and_budget(tiny_tokenizer):
    cfg = build_config({}, ["data.max_text_len=16", "data.text_budgets={title: 4, asr: 4, ocr: 4}",
                            "data.text_truncation={title: head, asr: tail, ocr: head_tail}"]).data
    enc = TextEncoder(tiny_tokenizer, cfg)
    record = VideoRecord("1", title="a b c d e f", asr="", ocr=[(1, "hello world")])
    ids = enc.encode(record)
    tok = tiny_tokenizer
    assert len(ids) <= 16
    assert ids[0] == tok.cls_token_id and ids.count(tok.sep_token_id) == 3 and ids[-1] == tok.sep_token_id
    title = ids[1:ids.index(tok.sep_token_id)]
    # asr is empty, so its 4 tokens of budget flow to the title (capacity 16 - 4 = 12; ocr needs 2)
    full_title = tok("a b c d e f", add_special_tokens=False)["input_ids"]
    assert title == full_title[:6]


def test_very_long_field_keeps_both_ends(tiny_tokenizer):
    cfg = build_config({}, ["data.max_text_len=32"]).data
    enc = TextEncoder(tiny_tokenizer, cfg)
    asr = "今天 " + "hello " * 5000 + "足球"
    ids = enc.encode(VideoRecord("1", title="", asr=asr))
    tok = tiny_tokenizer
    first_sep = ids.index(tok.sep_token_id)
    asr_ids = ids[first_sep + 1: ids.index(tok.sep_token_id, first_sep + 1)]
    assert len(ids) == 32
    assert asr_ids[:2] == tok("今天", add_special_tokens=False)["input_ids"]  # head_tail keeps the start...
    assert asr_ids[-2:] == tok("足球", add_special_tokens=False)["input_ids"]  # ...and the end


def test_long_field_of_long_words_still_fills_its_budget(tiny_tokenizer):
    cfg = build_config({}, ["data.max_text_len=32"]).data
    enc = TextEncoder(tiny_tokenizer, cfg)
    word = "ж" * 20  # an unknown character: the whole 20-character word is one [UNK] token
    assert tiny_tokenizer.tokenize(word) == ["[UNK]"]
    ids = enc.encode(VideoRecord("1", title="", asr=" ".join([word] * 3000)))
    assert len(ids) == 32  # the asr is tokenised from enough characters at both ends to fill every slot


def test_encoder_with_a_sentencepiece_tokenizer(unigram_tokenizer):
    """An XLM-R style tokenizer: ``<s> title </s> asr </s> ocr </s>``, each field cut by its own mode."""
    tok = unigram_tokenizer
    cfg = build_config({}, ["data.max_text_len=16", "data.text_budgets={title: 4, asr: 4, ocr: 4}",
                            "data.text_truncation={title: head, asr: tail, ocr: head_tail}"]).data
    title, asr, ocr = "北京大学 playing football", "今天天气很好 we go running in the park", "自然语言"
    ids = TextEncoder(tok, cfg).encode(VideoRecord("1", title=title, asr=asr, ocr=[(1, ocr)]))
    tokens = tok.convert_ids_to_tokens(ids)
    assert len(ids) == 16 and tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    assert ids[0] == tok.cls_token_id and ids.count(tok.sep_token_id) == 3
    assert not {"[CLS]", "[SEP]", "<pad>", "<mask>"} & set(tokens)
    first, second = ids.index(tok.sep_token_id), ids.index(tok.sep_token_id, ids.index(tok.sep_token_id) + 1)
    parts = ids[1:first], ids[first + 1:second], ids[second + 1:-1]
    full = [tok(text, add_special_tokens=False)["input_ids"] for text in (title, asr, ocr)]
    assert all(len(f) > 4 for f in full[:2]) and 0 < len(full[2]) <= 4  # title and asr are cut, ocr fits
    assert [len(p) for p in parts] == allocate_budgets([len(f) for f in full], [4, 4, 4], 16 - 4)
    assert parts[0] == full[0][:len(parts[0])]  # head: the start, "▁北京" ...
    assert parts[1] == full[1][-len(parts[1]):]  # tail: the end
    assert parts[2] == full[2] and tok.decode(parts[2]) == ocr
    assert tokens[1].startswith("▁") and tokens[second + 1].startswith("▁")  # each field starts a word
