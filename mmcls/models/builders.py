"""``build_model`` / ``build_pretrainer``: the one place where a config becomes a model (training, prediction,
pretraining); both build their shared encoder the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import BertConfig, BertModel

from mmcls.config import Config
from mmcls.errors import ConfigError
from mmcls.models.classifier import MultimodalClassifier, parameter_groups
from mmcls.models.pretrainer import PRETRAIN_TASKS, MultimodalPretrainer
from mmcls.models.text import build_bert
from mmcls.models.vision import VisionTower, build_vision_tower


def _token_id(tokenizer: Any, name: str) -> int:
    value = getattr(tokenizer, f"{name}_token_id", None)
    if value is None:
        raise ConfigError(f"data.tokenizer: the tokenizer has no {name} token")
    return int(value)


@dataclass
class _Encoder:
    """The parts a classifier and a pretrainer share, built from one config."""

    bert: BertModel
    vision: VisionTower | None
    frame_dim: int | None
    cls_id: int
    sep_id: int


def _build_encoder(cfg: Config, tokenizer: Any, bert_config: BertConfig | None, load_pretrained: bool,
                   feat_dim: int | None) -> _Encoder:
    """BERT and (unless text mode) the vision tower or the feature width, checked against the data settings."""
    m, d = cfg.model, cfg.data
    bert = build_bert(m.text, vocab_size=len(tokenizer), pad_id=_token_id(tokenizer, "pad"), config=bert_config,
                      load_weights=load_pretrained)
    if d.max_text_len > bert.config.max_position_embeddings:
        raise ConfigError(f"data.max_text_len: {d.max_text_len} tokens but the BERT has only "
                          f"{bert.config.max_position_embeddings} positions")
    if bert.config.type_vocab_size < 2 and m.mode != "text":
        raise ConfigError(f"model.text.pretrained: the BERT has {bert.config.type_vocab_size} token type; "
                          "frames need a second one (type_vocab_size >= 2)")
    vision, frame_dim = None, None
    if m.mode != "text":
        if d.reads_features:
            frame_dim = d.feat_dim or feat_dim
            if frame_dim is None:
                raise ConfigError("data.feat_dim: the feature width is needed to build the model for "
                                  "data.frame_source=feats (set it, or pass the width read from the files)")
        else:
            vision = build_vision_tower(m.vision, d.frame_size, load_weights=load_pretrained)
    return _Encoder(bert, vision, frame_dim, _token_id(tokenizer, "cls"), _token_id(tokenizer, "sep"))


def build_model(cfg: Config, num_lv2: int, num_lv1: int, tokenizer: Any, bert_config: BertConfig | None = None,
                load_pretrained: bool = True, feat_dim: int | None = None) -> MultimodalClassifier:
    """The classifier of ``cfg.model`` for ``num_lv2`` / ``num_lv1`` classes and ``tokenizer``'s vocabulary.

    ``load_pretrained=False`` (with ``bert_config`` from the run directory) rebuilds a trained model's architecture
    without reading any pretrained file; the caller then loads the trained weights. ``feat_dim`` is the feature
    width for ``data.frame_source: feats`` when ``data.feat_dim`` is null (read from the feature files).
    """
    m, d = cfg.model, cfg.data
    enc = _build_encoder(cfg, tokenizer, bert_config, load_pretrained, feat_dim)
    return MultimodalClassifier(
        enc.bert, enc.vision, num_lv2=num_lv2, num_lv1=num_lv1 if m.lv1_head else None, mode=m.mode,
        pooling=m.pooling, dropout=m.dropout, max_frames=d.max_frames, frame_dim=enc.frame_dim,
        video_head=m.aux_video_weight > 0, cls_id=enc.cls_id, sep_id=enc.sep_id, dropout_samples=m.dropout_samples)


def build_pretrainer(cfg: Config, tokenizer: Any, bert_config: BertConfig | None = None, load_pretrained: bool = True,
                     feat_dim: int | None = None) -> MultimodalPretrainer:
    """The pretrainer of ``cfg.model`` with the heads of the tasks that ``cfg.pretrain`` weights above 0.

    Same encoder as :func:`build_model` (same arguments), so its weights transfer to a classifier of the same
    ``model`` / ``data`` settings.
    """
    if cfg.model.mode != "fusion":
        raise ConfigError(f"model.mode: pretraining needs both text and frames (fusion), got {cfg.model.mode!r}")
    tasks = [task for task in PRETRAIN_TASKS if getattr(cfg.pretrain, f"{task}_weight") > 0]
    if not tasks:
        raise ConfigError("pretrain: every task weight is 0; switch on at least one of mlm, mfm, itm, itc")
    enc = _build_encoder(cfg, tokenizer, bert_config, load_pretrained, feat_dim)
    return MultimodalPretrainer(enc.bert, enc.vision, tasks=tasks, pooling=cfg.model.pooling,
                                max_frames=cfg.data.max_frames, frame_dim=enc.frame_dim, cls_id=enc.cls_id,
                                sep_id=enc.sep_id)


def _count(params: list[nn.Parameter]) -> tuple[int, int]:
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def model_summary(model: MultimodalClassifier) -> str:
    """Parameter counts per group (total and trainable), one line each, for the training log."""
    rows = [(name, *_count(params)) for name, params in parameter_groups(model).items()]
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    vision = model.vision.extra_repr() if model.vision is not None else "none"
    lines = [f"mode={model.mode} pooling={model.pooling} vision: {vision}"]
    lines += [f"{name:>7}: {total / 1e6:9.3f}M params ({trainable / 1e6:.3f}M trainable)"
              for name, total, trainable in rows]
    return "\n".join(lines)
