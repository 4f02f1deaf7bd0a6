"""Tokenizers: load a local transformers tokenizer, or train a BERT WordPiece one on a corpus.

Real runs load the tokenizer that ships with the text tower (e.g. chinese-macbert-base saved with
``save_pretrained``). The demo and the tests train a small WordPiece vocabulary on the dataset's own text with the
BERT normaliser, which splits Chinese into single characters and English into words (then word pieces).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mmcls.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# a folder holds a tokenizer only with one of these (without, transformers builds an empty one that maps every word
# to [UNK] and trains happily on nothing)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
# a model's own tokenizer covers at least this share of its config's vocabulary (configs may round the size up)
OWN_VOCAB_SHARE = 0.9


def load_tokenizer(path: str | Path):
    """Load a tokenizer from a local directory (never from a hub); it must define [CLS], [SEP], [PAD] and [MASK].

    In a model folder (one with a ``config.json``) the tokenizer must be the model's own: at least
    :data:`OWN_VOCAB_SHARE` of the config's vocabulary and no more than it, and the config's padding id.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DataError("tokenizer directory not found (build one with tools/build_tokenizer.py or point "
                        "data.tokenizer / model.text.pretrained at a local transformers model)", path=str(path))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"no tokenizer in this directory (none of {', '.join(TOKENIZER_FILES)}); copy the model's "
                        "tokenizer files next to its weights, or point data.tokenizer at them", path=str(path))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from this directory: {str(exc).splitlines()[0]}",
                        path=str(path)) from None
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise DataError(f"tokenizer has no {name.removesuffix('_id')}", path=str(path))
    _check_own_tokenizer(tokenizer, path)
    return tokenizer


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
    """Train a lower-cased BERT WordPiece tokenizer (Chinese per character, English per word piece)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    return BertTokenizer(vocab=backend.get_vocab(), do_lower_case=True, tokenize_chinese_chars=True)
