"""Tokenizers: load a local transformers tokenizer, or train a BERT WordPiece one on a corpus.

Real runs load the tokenizer that ships with the text tower (e.g. chinese-macbert-base saved with
``save_pretrained``). The demo and the tests train a small WordPiece vocabulary on the dataset's own text with the
BERT normaliser, which splits Chinese into single characters and English into words (then word pieces).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mmcls.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_tokenizer(path: str | Path):
    """Load a tokenizer from a local directory (never from a hub); it must define [CLS], [SEP], [PAD] and [MASK]."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DataError("tokenizer directory not found (build one with tools/build_tokenizer.py or point "
                        "data.tokenizer / model.text.pretrained at a local transformers model)", path=str(path))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from this directory: {str(exc).splitlines()[0]}",
                        path=str(path)) from None
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise DataError(f"tokenizer has no {name.removesuffix('_id')}", path=str(path))
    return tokenizer


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
