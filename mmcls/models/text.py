"""The BERT that embeds the text and (VisualBERT-style) fuses text and frames in its encoder.

Loaded from a local directory saved with ``save_pretrained`` (e.g. chinese-macbert-base), built from the
``model.text`` sizes for tests and the demo, or rebuilt from a stored config when a trained model is reloaded.
Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from transformers import BertConfig, BertModel

from mmcls.config import TextConfig
from mmcls.errors import ConfigError

_KEY = "model.text.pretrained"


def bert_config_from_sizes(cfg: TextConfig, vocab_size: int, pad_id: int) -> BertConfig:
    """A BertConfig with the ``model.text`` sizes and the tokenizer's vocabulary (two token types: text, frames)."""
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"model.text.num_heads: must divide hidden_size {cfg.hidden_size}, got {cfg.num_heads}")
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                      max_position_embeddings=cfg.max_positions, type_vocab_size=2, pad_token_id=pad_id,
                      **dropout_overrides(cfg))


def dropout_overrides(cfg: TextConfig) -> dict[str, float]:
    """The BertConfig fields that ``model.text.dropout`` sets (none when it is null)."""
    if cfg.dropout is None:
        return {}
    return {"hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout}


def _pretrained_config(path: Path) -> BertConfig:
    """The config of a local BERT directory; ConfigError when it is missing or not a BERT."""
    if not path.is_dir():
        raise ConfigError(f"{_KEY}: not a directory: {path}")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{_KEY}: {path} has no config.json (save the model with save_pretrained)")
    try:
        config = BertConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_KEY}: cannot read {path / 'config.json'}: {str(exc).splitlines()[0]}") from None
    if config.model_type != "bert":
        raise ConfigError(f"{_KEY}: {path} holds a {config.model_type!r} model, expected a BERT (model_type bert)")
    return config


def _check_vocab(config: BertConfig, vocab_size: int, where: str) -> None:
    if vocab_size > config.vocab_size:
        raise ConfigError(f"{where}: the tokenizer has {vocab_size} tokens but the BERT vocabulary only "
                          f"{config.vocab_size}; use the tokenizer that ships with the model")


def build_bert(cfg: TextConfig, vocab_size: int, pad_id: int, config: BertConfig | None = None,
               load_weights: bool = True) -> BertModel:
    """A BertModel without pooler (the classifier pools the fused sequence itself).

    - ``config`` given: rebuilt from it with random weights (the caller loads the trained weights);
    - ``cfg.pretrained`` set: weights from that local directory (``load_weights=False``: its config only);
    - otherwise built from the ``model.text`` sizes with ``vocab_size`` from the tokenizer.
    """
    impl = cfg.attn_implementation
    if config is None and cfg.pretrained and load_weights:
        path = Path(cfg.pretrained)
        _check_vocab(_pretrained_config(path), vocab_size, _KEY)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            return BertModel.from_pretrained(str(path), add_pooling_layer=False, local_files_only=True,
                                             attn_implementation=impl, **dropout_overrides(cfg))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{_KEY}: cannot load BERT weights from {path}: {str(exc).splitlines()[0]}") from None
    if config is None:
        config = _pretrained_config(Path(cfg.pretrained)) if cfg.pretrained else \
            bert_config_from_sizes(cfg, vocab_size, pad_id)
    _check_vocab(config, vocab_size, _KEY if cfg.pretrained else "model.text")
    # _from_config sets the attention kernel on the config it is given: copy so the caller's stays untouched.
    config = copy.deepcopy(config)
    for name, value in dropout_overrides(cfg).items():
        setattr(config, name, value)
    return BertModel._from_config(config, attn_implementation=impl, add_pooling_layer=False)
