"""The text tower: the BERT-family encoder that embeds the text and (VisualBERT-style) fuses text and frames.

:class:`BertTower` keeps the :class:`~mmcls.models.towers.TextTower` contract (width, word-embedding table, layer
depths, gradient checkpointing) around a ``transformers`` encoder of the BERT family (weights under ``bert.``
whatever the family): :data:`TEXT_FAMILIES` maps a folder's ``config.json`` ``model_type`` to its class. MacBERT,
MiniLM and RoBERTa-wwm-ext checkpoints are ``bert``; RoBERTa and XLM-R have one token type, and get a second one
for the frames (a copy of the text type, :func:`_add_frame_token_type`).

Loaded strictly from a local directory saved with ``save_pretrained`` (e.g. chinese-macbert-base), built as a BERT
from the ``model.text`` sizes for tests and the demo, or rebuilt from a stored config when a trained model is
reloaded. Nothing is ever fetched from a hub, and no code from a folder runs (``trust_remote_code=False``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, BertConfig, PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from mmcls.config import TextConfig
from mmcls.errors import ConfigError
from mmcls.models.fusion import FRAME_TOKEN_TYPE
from mmcls.models.towers import TextTower, set_transformers_checkpointing
from mmcls.models.weights import quiet_transformers_load, raise_on_mismatch

_KEY = "model.text.pretrained"
_BERT_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.")

#: config.json ``model_type`` -> the transformers encoder class: the families whose embeddings (word, position, token
#: type) and encoder layers the fusion uses as BERT's
TEXT_FAMILIES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
                 "ernie": "ErnieModel"}


class BertTower(TextTower):
    """A BERT-family encoder without pooler as the text tower and fusion transformer."""

    def __init__(self, bert: PreTrainedModel) -> None:
        super().__init__()
        self.bert = bert

    @property
    def config(self) -> PretrainedConfig:
        return self.bert.config

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def max_positions(self) -> int:
        """RoBERTa-style embeddings number positions after the padding id, so fewer than the table's rows."""
        padding_idx = getattr(self.bert.embeddings, "padding_idx", None)
        offset = 0 if padding_idx is None else padding_idx + 1
        return int(self.bert.config.max_position_embeddings) - offset

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
        set_transformers_checkpointing(self.bert, enable)


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


def _family(model_type: str, where: str) -> type[PreTrainedModel]:
    """The transformers encoder class of a BERT-family ``model_type``; ConfigError naming the supported ones."""
    if model_type not in TEXT_FAMILIES:
        raise ConfigError(f"{where}: a {model_type!r} model cannot be the text tower and fusion encoder; supported "
                          f"families (config.json model_type): {', '.join(TEXT_FAMILIES)} (BERT, MacBERT, MiniLM and "
                          "RoBERTa-wwm-ext folders are model_type bert)")
    import transformers

    return getattr(transformers, TEXT_FAMILIES[model_type])


def _pretrained_config(path: Path) -> PretrainedConfig:
    """The config of a local BERT-family directory; ConfigError when it is missing or of another family."""
    if not path.is_dir():
        raise ConfigError(f"{_KEY}: not a directory: {path}")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{_KEY}: {path} has no config.json (save the model with save_pretrained)")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{_KEY}: cannot read {path / 'config.json'}: {str(exc).splitlines()[0]}") from None
    _family(config.model_type, f"{_KEY} ({path})")
    return config


def read_text_config(path: str | Path) -> PretrainedConfig:
    """A text tower's config as a model folder stores it (``bert_config.json``: any supported family, by its
    ``model_type``; files without one are BERT's)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    model_type = data.pop("model_type", "bert")
    _family(model_type, str(path))
    return AutoConfig.for_model(model_type, **data)


# weights a BERT-family folder may hold that the text tower does not use: the pooler (the classifier pools the fused
# sequence itself) and the heads of pretraining / masked-LM checkpoints (BERT, ERNIE: cls.*; RoBERTa, XLM-R: lm_head.*)
UNUSED_BERT_WEIGHTS = ("pooler.", "cls.", "lm_head.")


def _load_bert_strictly(path: Path, config: PretrainedConfig, impl: str | None,
                        overrides: dict[str, float]) -> PreTrainedModel:
    """The encoder of a local folder with every tensor of its architecture from the weights file (else one
    ConfigError naming the missing and unexpected keys; :data:`UNUSED_BERT_WEIGHTS` may be left over)."""
    family = _family(config.model_type, _KEY)
    try:
        with quiet_transformers_load():
            model, info = family.from_pretrained(str(path), add_pooling_layer=False, local_files_only=True,
                                                 trust_remote_code=False, attn_implementation=impl,
                                                 output_loading_info=True, **overrides)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{_KEY}: cannot load {config.model_type} weights from {path}: "
                          f"{str(exc).splitlines()[0]}") from None
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(UNUSED_BERT_WEIGHTS)]
    mis_shaped = [str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ()]
    raise_on_mismatch(_KEY, path, sorted(info["missing_keys"]), sorted(unexpected), mis_shaped)
    _add_frame_token_type(model)
    return model


def _add_frame_token_type(model: PreTrainedModel) -> None:
    """Give a family with one token type (RoBERTa, XLM-R) the second one the frames use, starting as a copy of the
    text type: the one tensor row not read from the file (the saved config then says 2 types)."""
    table = model.embeddings.token_type_embeddings
    if table.num_embeddings > FRAME_TOKEN_TYPE:
        return
    grown = nn.Embedding(FRAME_TOKEN_TYPE + 1, table.embedding_dim).to(table.weight)
    with torch.no_grad():
        grown.weight.copy_(table.weight[:1].expand(FRAME_TOKEN_TYPE + 1, -1))
    model.embeddings.token_type_embeddings = grown
    model.config.type_vocab_size = FRAME_TOKEN_TYPE + 1
    logging.getLogger("mmcls").info("%s: the %s has one token type; frames get a second one, initialised as the "
                                    "text's", _KEY, model.config.model_type)


def _check_vocab(config: PretrainedConfig, vocab_size: int, where: str) -> None:
    if vocab_size > config.vocab_size:
        raise ConfigError(f"{where}: the tokenizer has {vocab_size} tokens but the model's vocabulary only "
                          f"{config.vocab_size}; use the tokenizer that ships with the model")


def build_bert(cfg: TextConfig, vocab_size: int, pad_id: int, config: PretrainedConfig | None = None,
               load_weights: bool = True) -> PreTrainedModel:
    """A BERT-family encoder without pooler (the classifier pools the fused sequence itself).

    - ``config`` given: rebuilt from it with random weights (the caller loads the trained weights);
    - ``cfg.pretrained`` set: weights from that local directory (``load_weights=False``: its config only);
    - otherwise a BERT built from the ``model.text`` sizes with ``vocab_size`` from the tokenizer.
    """
    impl = cfg.attn_implementation
    if config is None and cfg.pretrained and load_weights:
        path = Path(cfg.pretrained)
        config = _pretrained_config(path)
        _check_vocab(config, vocab_size, _KEY)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return _load_bert_strictly(path, config, impl, dropout_overrides(cfg))
    if config is None and cfg.pretrained:
        config = _pretrained_config(Path(cfg.pretrained))
        config.type_vocab_size = max(config.type_vocab_size, FRAME_TOKEN_TYPE + 1)  # as _add_frame_token_type
    elif config is None:
        config = bert_config_from_sizes(cfg, vocab_size, pad_id)
    _check_vocab(config, vocab_size, _KEY if cfg.pretrained else "model.text")
    # _from_config sets the attention kernel on the config it is given: copy so the caller's stays untouched.
    config = copy.deepcopy(config)
    for name, value in dropout_overrides(cfg).items():
        setattr(config, name, value)
    family = _family(config.model_type, "model.text")
    return family._from_config(config, attn_implementation=impl, add_pooling_layer=False)


def build_text_tower(cfg: TextConfig, vocab_size: int, pad_id: int, config: PretrainedConfig | None = None,
                     load_weights: bool = True) -> BertTower:
    """:func:`build_bert` as the text tower."""
    return BertTower(build_bert(cfg, vocab_size, pad_id, config=config, load_weights=load_weights))
