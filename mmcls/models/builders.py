"""``build_model`` / ``build_pretrainer``: the one place where a config becomes a model (training, prediction,
pretraining); both build their shared encoder the same way."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PretrainedConfig

from mmcls.config import Config
from mmcls.errors import ConfigError
from mmcls.models.classifier import MultimodalClassifier
from mmcls.models.encoder import MultimodalEncoder, parameter_groups
from mmcls.models.pretrainer import PRETRAIN_TASKS, MultimodalPretrainer
from mmcls.models.text import build_text_tower
from mmcls.models.vision import build_vision_tower


def _token_id(tokenizer: Any, name: str) -> int:
    value = getattr(tokenizer, f"{name}_token_id", None)
    if value is None:
        raise ConfigError(f"data.tokenizer: the tokenizer has no {name} token")
    return int(value)


def build_encoder(cfg: Config, tokenizer: Any, text_config: PretrainedConfig | None = None,
                  load_pretrained: bool = True, feat_dim: int | None = None,
                  vision_config: dict[str, Any] | None = None) -> MultimodalEncoder:
    """The encoder of ``cfg.model`` (what a classifier and a pretrainer share), checked against the data settings.

    The text tower, and unless text mode either the vision tower or, when ``cfg.data.reads_features``, frame layers
    for features of width ``data.feat_dim`` (or ``feat_dim``, read from the feature files). Arguments as in
    :func:`build_model`.
    """
    m, d = cfg.model, cfg.data
    text = build_text_tower(m.text, vocab_size=len(tokenizer), pad_id=_token_id(tokenizer, "pad"),
                            config=text_config, load_weights=load_pretrained)
    if d.max_text_len > text.max_positions:
        raise ConfigError(f"data.max_text_len: {d.max_text_len} tokens but the text tower has only "
                          f"{text.max_positions} positions")
    if text.num_token_types < 2 and m.mode != "text":
        raise ConfigError(f"model.text.pretrained: the text tower has {text.num_token_types} token type; "
                          "frames need a second one (type_vocab_size >= 2)")
    vision, frame_dim = None, None
    if m.mode != "text":
        if d.reads_features:
            if m.temporal.enabled:
                key = "frame_diff" if m.temporal.frame_diff != "none" else "shift"
                raise ConfigError(f"model.temporal.{key}: works inside the vision tower on pixel frames, but "
                                  "data.frame_source=feats has no tower (features extracted with a temporal "
                                  "model's own tower already hold it); switch it off or read pixels")
            frame_dim = d.feat_dim or feat_dim
            if frame_dim is None:
                raise ConfigError("data.feat_dim: the feature width is needed to build the model for "
                                  "data.frame_source=feats (set it, or pass the width read from the files)")
        else:
            vision = build_vision_tower(m.vision, d.frame_size, load_weights=load_pretrained,
                                        config=vision_config)
            vision.set_temporal(m.temporal.frame_diff, m.temporal.shift)  # after the pretrained weights
    return MultimodalEncoder(text, vision, mode=m.mode, max_frames=d.max_frames, frame_dim=frame_dim,
                             cls_id=_token_id(tokenizer, "cls"), sep_id=_token_id(tokenizer, "sep"))


def build_model(cfg: Config, num_lv2: int, num_lv1: int, tokenizer: Any,
                text_config: PretrainedConfig | None = None, load_pretrained: bool = True,
                feat_dim: int | None = None, vision_config: dict[str, Any] | None = None) -> MultimodalClassifier:
    """The classifier of ``cfg.model`` for ``num_lv2`` / ``num_lv1`` classes and ``tokenizer``'s vocabulary.

    ``load_pretrained=False`` (with ``text_config`` and ``vision_config`` from a model folder: the towers' own
    architecture configs) rebuilds a trained model's architecture without reading any pretrained file; the caller
    then loads the trained weights. ``feat_dim`` is the feature width for ``data.frame_source: feats`` when
    ``data.feat_dim`` is null (read from the feature files).
    """
    m = cfg.model
    encoder = build_encoder(cfg, tokenizer, text_config, load_pretrained, feat_dim, vision_config)
    return MultimodalClassifier(encoder, num_lv2=num_lv2, num_lv1=num_lv1 if m.lv1_head else None,
                                pooling=m.pooling, dropout=m.dropout, video_head=m.aux_video_weight > 0,
                                dropout_samples=m.dropout_samples)


def build_pretrainer(cfg: Config, tokenizer: Any, text_config: PretrainedConfig | None = None,
                     load_pretrained: bool = True, feat_dim: int | None = None,
                     vision_config: dict[str, Any] | None = None) -> MultimodalPretrainer:
    """The pretrainer of ``cfg.model`` with the heads of the tasks that ``cfg.pretrain`` weights above 0.

    Same encoder as :func:`build_model` (same arguments), so its weights transfer to a classifier of the same
    ``model`` / ``data`` settings.
    """
    if cfg.model.mode != "fusion":
        raise ConfigError(f"model.mode: pretraining needs both text and frames (fusion), got {cfg.model.mode!r}")
    tasks = [task for task in PRETRAIN_TASKS if getattr(cfg.pretrain, f"{task}_weight") > 0]
    if not tasks:
        raise ConfigError("pretrain: every task weight is 0; switch on at least one of mlm, mfm, itm, itc")
    encoder = build_encoder(cfg, tokenizer, text_config, load_pretrained, feat_dim, vision_config)
    return MultimodalPretrainer(encoder, tasks=tasks, pooling=cfg.model.pooling)


def _count(params: list[nn.Parameter]) -> tuple[int, int]:
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def model_summary(model: MultimodalClassifier | MultimodalPretrainer) -> str:
    """Parameter counts per group (total and trainable), one line each, for the training log."""
    rows = [(name, *_count(params)) for name, params in parameter_groups(model).items()]
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    vision = model.encoder.vision.extra_repr() if model.encoder.vision is not None else "none"
    lines = [f"mode={model.mode} pooling={model.pooling} vision: {vision}"]
    lines += [f"{name:>7}: {total / 1e6:9.3f}M params ({trainable / 1e6:.3f}M trainable)"
              for name, total, trainable in rows]
    return "\n".join(lines)
