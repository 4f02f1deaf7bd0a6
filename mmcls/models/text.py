"""The text tower: the BERT that embeds the text and (VisualBERT-style) fuses text and frames in its encoder.

:class:`BertTower` keeps the :class:`~mmcls.models.towers.TextTower` contract (width, word-embedding table, layer
depths, gradient checkpointing) around a ``transformers`` ``BertModel`` (weights under ``bert.``).

Loaded from a local directory saved with ``save_pretrained`` (e.g. chinese-macbert-base), built from the
``model.text`` sizes for tests and the demo, or rebuilt from a stored config when a trained model is reloaded.
Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.masking_utils import create_bidirectional_mask

from mmcls.config import TextConfig
from mmcls.errors import ConfigError
from mmcls.models.towers import TextTower
from mmcls.models.weights import raise_on_mismatch

_KEY = "model.text.pretrained"
_BERT_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.")


class BertTower(TextTower):
    """A ``BertModel`` without pooler as the text tower and fusion transformer."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    @property
    def config(self) -> BertConfig:
        return self.bert.config

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(self.bert.config.max_position_embeddings)

    @property
    def num_token_types(self) -> int:
        return int(self.bert.config.type_vocab_size)

    @property
    def word_embeddings(self) -> nn.Parameter:
        return self.bert.embeddings.word_embeddings.weight

    @property
    def word_embedding_layer(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bert.embeddings(input_ids=input_ids)

    def token_type(self, index: int) -> torch.Tensor:
        return self.bert.embeddings.token_type_embeddings.weight[index]

    def fuse(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn = create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=mask)
        return self.bert.encoder(hidden, attention_mask=attn).last_hidden_state

    def layer_depths(self) -> dict[str, int]:
        """Embeddings 0, encoder layer i at i + 1."""
        depths = {}
        for name, _ in self.named_parameters():
            match = _BERT_LAYER.match(name)
            depths[name] = int(match.group(1)) + 1 if match else 0
        return depths

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        bert = self.bert
        if enable:
            kwargs = {"use_reentrant": False}
            if hasattr(bert, "activation_checkpointing_enable"):  # transformers >= 5.x name
                bert.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        elif hasattr(bert, "activation_checkpointing_disable"):
            bert.activation_checkpointing_disable()
        else:
            bert.gradient_checkpointing_disable()


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


# weights a BERT folder may hold that the text tower does not use: the pooler (the classifier pools the fused sequence
# itself) and the heads of BertForPreTraining / BertForMaskedLM checkpoints
UNUSED_BERT_WEIGHTS = ("pooler.", "cls.")


def _load_bert_strictly(path: Path, impl: str | None, overrides: dict[str, float]) -> BertModel:
    """The BERT of a local folder with every tensor of its architecture from the weights file (else one
    ConfigError naming the missing and unexpected keys; :data:`UNUSED_BERT_WEIGHTS` may be left over)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would only repeat, at length, what the error says
    try:
        model, info = BertModel.from_pretrained(str(path), add_pooling_layer=False, local_files_only=True,
                                                attn_implementation=impl, output_loading_info=True, **overrides)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{_KEY}: cannot load BERT weights from {path}: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(UNUSED_BERT_WEIGHTS)]
    mis_shaped = [str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ()]
    raise_on_mismatch(_KEY, path, sorted(info["missing_keys"]), sorted(unexpected), mis_shaped)
    return model


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
        return _load_bert_strictly(path, impl, dropout_overrides(cfg))
    if config is None:
        config = _pretrained_config(Path(cfg.pretrained)) if cfg.pretrained else \
            bert_config_from_sizes(cfg, vocab_size, pad_id)
    _check_vocab(config, vocab_size, _KEY if cfg.pretrained else "model.text")
    # _from_config sets the attention kernel on the config it is given: copy so the caller's stays untouched.
    config = copy.deepcopy(config)
    for name, value in dropout_overrides(cfg).items():
        setattr(config, name, value)
    return BertModel._from_config(config, attn_implementation=impl, add_pooling_layer=False)


def build_text_tower(cfg: TextConfig, vocab_size: int, pad_id: int, config: BertConfig | None = None,
                     load_weights: bool = True) -> BertTower:
    """:func:`build_bert` as the text tower."""
    return BertTower(build_bert(cfg, vocab_size, pad_id, config=config, load_weights=load_weights))
