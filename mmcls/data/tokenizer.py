"""Tokenizers: load a local transformers tokenizer, or train one on a corpus (BERT WordPiece or SentencePiece unigram).

Real runs load the tokenizer that ships with the text tower (e.g. chinese-macbert-base saved with
``save_pretrained``; an XLM-R style folder may hold only its ``sentencepiece.bpe.model``, which transformers converts
with the ``sentencepiece`` package). The demo and the tests train a small vocabulary on the dataset's own text:
:func:`train_wordpiece` with the BERT normaliser, which splits Chinese into single characters and English into words
(rare ones into character pieces), or :func:`train_unigram`, a SentencePiece unigram model saved as an XLM-RoBERTa
tokenizer (``<s>`` / ``</s>`` / ``<pad>`` / ``<unk>`` / ``<mask>``; words start with ``▁``, Chinese runs become
multi-character pieces).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from mmcls.errors import ArgumentError, DataError, UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# a folder holds a tokenizer only with one of these (without, transformers builds an empty one that maps every word
# to [UNK] and trains happily on nothing)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
# the SentencePiece model file of an XLM-RoBERTa tokenizer folder (transformers' name for it)
SENTENCEPIECE_FILE = "sentencepiece.bpe.model"
# tokens the XLM-RoBERTa tokenizer adds to a SentencePiece model's pieces (<pad> and <mask>)
UNIGRAM_ADDED_TOKENS = 2
# SentencePiece skips sentences over 4192 bytes; texts are fed in chunks of at most this many characters (<= 4 bytes
# each in UTF-8), so a long transcript still counts
UNIGRAM_CHUNK_CHARS = 1000
# defaults of train_unigram: the character coverage SentencePiece advises for Chinese / Japanese, and the largest
# sample of chunks trained on (SentencePiece holds its sample in memory)
UNIGRAM_CHARACTER_COVERAGE = 0.9995
UNIGRAM_MAX_SENTENCES = 2_000_000
# a model's own tokenizer covers at least this share of its config's vocabulary (configs may round the size up)
OWN_VOCAB_SHARE = 0.9


def load_tokenizer(path: str | Path):
    """Load a tokenizer from a local directory (never from a hub); it must define cls, sep, pad and mask tokens
    (``[CLS]`` ... for BERT WordPiece, ``<s>`` ... for XLM-RoBERTa SentencePiece).

    A folder whose only tokenizer file is an XLM-R ``sentencepiece.bpe.model`` (no ``tokenizer.json``, no
    ``tokenizer_config.json`` naming the class) loads as an XLM-RoBERTa tokenizer; transformers converts the model
    with the ``sentencepiece`` package, which must then be installed. In a model folder (one with a
    ``config.json``) the tokenizer must be the model's own: at least :data:`OWN_VOCAB_SHARE` of the config's
    vocabulary and no more than it, and the config's padding id.
    """
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DataError("tokenizer directory not found (build one with tools/build_tokenizer.py or point "
                        "data.tokenizer / model.text.pretrained at a local transformers model)", path=str(path))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"no tokenizer in this directory (none of {', '.join(TOKENIZER_FILES)}); copy the model's "
                        "tokenizer files next to its weights, or point data.tokenizer at them", path=str(path))
    model_files = [name for name in TOKENIZER_FILES if name.endswith(".model") and (path / name).is_file()]
    if model_files and not (path / "tokenizer.json").is_file() and not _have_sentencepiece():
        raise DataError(f"the tokenizer is a SentencePiece model ({model_files[0]}, no tokenizer.json) and reading "
                        "it needs the sentencepiece and protobuf packages: pip install sentencepiece protobuf",
                        path=str(path))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bare = _bare_sentencepiece_folder(path)
    if bare:
        _check_xlmr_sentencepiece(path / SENTENCEPIECE_FILE)
    loader = XLMRobertaTokenizer if bare else AutoTokenizer
    try:
        tokenizer = loader.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from this directory: {str(exc).splitlines()[0]}",
                        path=str(path)) from None
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise DataError(f"tokenizer has no {name.removesuffix('_id')}", path=str(path))
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):  # transformers read no vocabulary file it knows
        raise DataError(f"the tokenizer has only its {len(tokenizer)} special tokens: transformers found no "
                        "vocabulary here that its tokenizer class reads", path=str(path))
    _check_own_tokenizer(tokenizer, path)
    return tokenizer


def _have_sentencepiece() -> bool:
    """Whether transformers can convert a SentencePiece model: it reads the model with sentencepiece and protobuf."""
    try:
        import google.protobuf  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError:
        return False
    return True


def _bare_sentencepiece_folder(path: Path) -> bool:
    """Whether ``path`` holds an XLM-R ``sentencepiece.bpe.model`` and nothing telling transformers what it is (no
    ``tokenizer.json``, no tokenizer class in ``tokenizer_config.json``, no config.json of another family than BERT,
    e.g. a BERT built from sizes next to the SentencePiece model it was trained with)."""
    if (path / "tokenizer.json").is_file() or not (path / SENTENCEPIECE_FILE).is_file():
        return False
    for name, key in (("tokenizer_config.json", "tokenizer_class"), ("config.json", "model_type")):
        try:
            value = json.loads((path / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value and value != "bert":
            return False
    return True


def _check_xlmr_sentencepiece(file: Path) -> None:
    """DataError unless ``file`` is a SentencePiece model laid out as XLM-R's (pieces 0-2: unknown, then two control
    pieces, the bos and eos), which is what transformers' conversion assumes."""
    import sentencepiece as spm

    try:
        model = spm.SentencePieceProcessor(model_file=str(file))
    except (OSError, RuntimeError) as exc:
        raise DataError(f"not a SentencePiece model: {str(exc).strip().splitlines()[0]}", path=str(file)) from None
    if model.get_piece_size() < 4 or not (model.is_unknown(0) and model.is_control(1) and model.is_control(2)):
        raise DataError("the SentencePiece model does not start with <unk>, <s>, </s> (ids 0, 1, 2) as XLM-R's does; "
                        "add a tokenizer.json or a tokenizer_config.json naming its tokenizer class", path=str(file))


def _check_own_tokenizer(tokenizer, path: Path) -> None:
    """DataError when the folder's ``config.json`` describes a model this tokenizer does not belong to."""
    config_file = path / "config.json"
    if not config_file.is_file():
        return
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read config.json: {exc}", path=str(config_file)) from None
    vocab, pad = config.get("vocab_size"), config.get("pad_token_id")
    if isinstance(vocab, int) and not OWN_VOCAB_SHARE * vocab <= len(tokenizer) <= vocab:
        raise DataError(f"the tokenizer has {len(tokenizer)} tokens but the model's config.json {vocab}: it is not "
                        "the model's own tokenizer (copy the model's tokenizer files here)", path=str(path))
    if isinstance(pad, int) and tokenizer.pad_token_id != pad:
        raise DataError(f"the tokenizer pads with id {tokenizer.pad_token_id} but the model's config.json with {pad}: "
                        "it is not the model's own tokenizer", path=str(path))


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2):
    """A lower-cased BERT WordPiece vocabulary of ``texts`` (Chinese per character, English per word, else per
    character piece), the same for the same texts, ids included.

    The vocabulary is the special tokens, then every character the texts hold, as a word start and as a
    continuation ``##c`` (so no word becomes ``[UNK]``), then the words seen at least ``min_frequency`` times, most
    frequent first, up to ``vocab_size`` tokens; ties go by the token itself. The BERT tokenizer's greedy longest
    match then keeps frequent words whole and spells the rest. (The ``tokenizers`` WordPiece trainer breaks ties in
    hash order: two trainings on the same texts gave different vocabularies, and so different models.)
    """
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                            lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        pieces[word[0]] += count
        for char in word[1:]:
            pieces["##" + char] += count

    def by_count(counts: Counter[str]) -> list[str]:
        return sorted(counts, key=lambda token: (-counts[token], token))

    vocab = list(SPECIAL_TOKENS) + [piece for piece in by_count(pieces) if piece not in SPECIAL_TOKENS]
    known = set(vocab)
    frequent = [word for word in by_count(words) if words[word] >= min_frequency and word not in known]
    vocab += frequent[: max(0, vocab_size - len(vocab))]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                         tokenize_chinese_chars=True)


def _chunks(texts: Iterable[str], size: int = UNIGRAM_CHUNK_CHARS) -> Iterator[str]:
    """The non-blank texts, cut into pieces of at most ``size`` characters (newlines become spaces)."""
    for text in texts:
        text = " ".join(text.split())
        for start in range(0, len(text), size):
            yield text[start:start + size]


def train_unigram(texts: Iterable[str], out: str | Path, vocab_size: int = 8000,
                  character_coverage: float = UNIGRAM_CHARACTER_COVERAGE, max_sentences: int = UNIGRAM_MAX_SENTENCES,
                  seed: int = 0, threads: int | None = None):
    """Train a SentencePiece unigram model on ``texts`` and save it in ``out`` as an XLM-RoBERTa tokenizer.

    ``out`` then holds ``tokenizer.json``, ``tokenizer_config.json`` and the SentencePiece model
    (``sentencepiece.bpe.model``); the tokenizer is returned as :func:`load_tokenizer` loads it. Its special tokens
    are XLM-R's: ``<s>`` 0 (cls/bos), ``<pad>`` 1, ``</s>`` 2 (sep/eos), ``<unk>`` 3 and ``<mask>`` last.

    ``vocab_size`` counts every token, the special ones included; a corpus too small for it gives a smaller
    vocabulary (SentencePiece's ``hard_vocab_limit=False``), a size below the characters the corpus needs at
    ``character_coverage`` (the share of the corpus' characters the model covers; the rarest others become
    ``<unk>``) is an :class:`~mmcls.errors.ArgumentError`. Text is normalised with NFKC (full-width forms become
    ASCII) and keeps its case. Texts are cut into chunks of :data:`UNIGRAM_CHUNK_CHARS` characters; at most
    ``max_sentences`` chunks, a random sample drawn with ``seed``, are trained on (0 = all).
    """
    if not _have_sentencepiece():
        raise UserError("training a unigram tokenizer needs the sentencepiece and protobuf packages: pip install "
                        "sentencepiece protobuf")
    import sentencepiece as spm

    pieces = vocab_size - UNIGRAM_ADDED_TOKENS
    if pieces < 4:
        raise ArgumentError("vocab_size", f"must be at least {4 + UNIGRAM_ADDED_TOKENS}, got {vocab_size}")
    if not 0 < character_coverage <= 1:
        raise ArgumentError("character_coverage", f"must be in (0, 1], got {character_coverage}")
    if max_sentences < 0:
        raise ArgumentError("max_sentences", f"must be >= 0 (0 = all), got {max_sentences}")
    chunks = _chunks(texts)
    first = next(chunks, None)
    if first is None:
        raise DataError("no text to train a tokenizer on (every title, asr and ocr is empty)")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.chain([first], chunks), model_writer=model, model_type="unigram",
            vocab_size=pieces, hard_vocab_limit=False, character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc", input_sentence_size=max_sentences, shuffle_input_sentence=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            byte_fallback=False, num_threads=threads or min(16, os.cpu_count() or 1), minloglevel=2)
    except RuntimeError as exc:
        needed = re.search(r"required_chars\. \d+ vs (\d+)", str(exc))
        if needed:
            raise ArgumentError("vocab_size", f"{vocab_size} is too small for this corpus: its characters at "
                                f"{{character_coverage}} {character_coverage} need at least "
                                f"{int(needed.group(1)) + UNIGRAM_ADDED_TOKENS} tokens (raise {{vocab_size}} or lower "
                                "{character_coverage})") from None
        raise UserError(f"SentencePiece could not train on this corpus: {str(exc).strip()}") from None
    return sentencepiece_tokenizer(model.getvalue(), out)


def sentencepiece_tokenizer(model: bytes, out: str | Path):
    """Save a serialised SentencePiece model (its pieces 0-2 ``<unk>``, ``<s>``, ``</s>``, as XLM-R's) in ``out`` as
    an XLM-RoBERTa tokenizer folder (``tokenizer.json``, ``tokenizer_config.json``, ``sentencepiece.bpe.model``) and
    return the tokenizer as :func:`load_tokenizer` loads it."""
    from transformers import XLMRobertaTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # transformers converts a .model file only from a folder
        (Path(scratch) / SENTENCEPIECE_FILE).write_bytes(model)
        tokenizer = XLMRobertaTokenizer.from_pretrained(scratch, local_files_only=True, trust_remote_code=False)
    tokenizer.save_pretrained(out)
    (out / SENTENCEPIECE_FILE).write_bytes(model)
    return load_tokenizer(out)
