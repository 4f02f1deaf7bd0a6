"""Tower contracts: a vision kind must give its layer depths (checked at build time), the text tower hands out its
word-embedding table, the encoder knows from how it was built whether it reads cached features, and the optimizer
groups carry their part."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcls.config import build_config
from mmcls.engine.optim import optimizer_for, reported_lr
from mmcls.errors import ConfigError
from mmcls.models import VISION_BUILDERS, VisionTower, build_encoder, build_model, parameter_groups
from mmcls.models.layers import layer_decay_scales, lower_layers
from mmcls.models.vision import _timm_depths
from tests.helpers import NUM_LV1, NUM_LV2, make_batch, make_cfg

WIDTH = 6


def _plain_backbone() -> nn.Module:
    """A two-stage CNN: ``0`` the stem conv, ``2`` the second conv, then pooling to ``[N, WIDTH]``."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, WIDTH, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _plain_builder(with_depths: bool):
    def build(cfg, frame_size, load_weights=True, config=None) -> VisionTower:
        backbone = _plain_backbone()
        depths = {name: 0 if name.startswith("0.") else 1 for name, _ in backbone.named_parameters()}
        return VisionTower(backbone, WIDTH, (0.5,) * 3, (0.25,) * 3, kind=cfg.kind, name=cfg.name,
                           depths=depths if with_depths else None)
    return build


def _plain_cfg():
    cfg = make_cfg("clip")
    cfg.model.vision.kind, cfg.model.vision.name, cfg.model.vision.overrides = "plain", "plain-cnn", {}
    return cfg


def test_a_vision_kind_without_layer_depths_fails_at_build_time(monkeypatch, tiny_tokenizer):
    monkeypatch.setitem(VISION_BUILDERS, "plain", _plain_builder(with_depths=False))
    with pytest.raises(ConfigError, match=r"^model\.vision\.kind=plain \(model\.vision\.name=plain-cnn\): .*no layer "
                                          r"depths"):
        build_model(_plain_cfg(), NUM_LV2, NUM_LV1, tiny_tokenizer)


def test_a_new_vision_kind_is_one_builder_with_its_depths(monkeypatch, tiny_tokenizer):
    monkeypatch.setitem(VISION_BUILDERS, "plain", _plain_builder(with_depths=True))
    model = build_model(_plain_cfg(), NUM_LV2, NUM_LV1, tiny_tokenizer)
    assert model(**make_batch(tiny_tokenizer))["frame_features"].shape[-1] == WIDTH
    scales = layer_decay_scales(model, 0.5)
    assert scales["encoder.vision.backbone.0.weight"] == 0.5 and scales["encoder.vision.backbone.2.weight"] == 1.0
    assert {id(p) for p in lower_layers(model, "vision", 0)} == {id(p) for p in model.encoder.vision.parameters()}


def test_a_depth_map_that_misses_parameters_is_refused(monkeypatch, tiny_tokenizer):
    def build(cfg, frame_size, load_weights=True, config=None) -> VisionTower:
        return VisionTower(_plain_backbone(), WIDTH, (0.5,) * 3, (0.25,) * 3, kind=cfg.kind, name=cfg.name,
                           depths={"0.weight": 0})
    monkeypatch.setitem(VISION_BUILDERS, "plain", build)
    with pytest.raises(ConfigError, match=r"model\.vision\.kind=plain .*depth map does not match"):
        build_model(_plain_cfg(), NUM_LV2, NUM_LV1, tiny_tokenizer)


def test_a_timm_model_without_group_matcher_is_refused():
    cfg = make_cfg("timm").model.vision
    with pytest.raises(ConfigError, match=r"^model\.vision\.name: .*'vit_tiny_patch16_224'.*no group_matcher"):
        _timm_depths(nn.Linear(2, 2), cfg)


def test_the_text_tower_hands_out_its_word_embedding_table(tiny_tokenizer):
    text = build_encoder(make_cfg("clip"), tiny_tokenizer).text
    assert text.word_embeddings is text.bert.embeddings.word_embeddings.weight
    assert isinstance(text.word_embeddings, nn.Parameter)
    assert text.word_embedding_layer is text.bert.embeddings.word_embeddings
    assert text.top_depth == 2 and text.layer_depths()["bert.encoder.layer.1.output.dense.weight"] == 2


def test_reads_features_comes_from_how_the_encoder_was_built(tiny_tokenizer):
    pixels = build_encoder(make_cfg("clip"), tiny_tokenizer)
    assert not pixels.reads_features and pixels.vision is not None
    cfg = make_cfg("clip")
    cfg.data.frame_source, cfg.data.feat_dim = "feats", 20
    feats = build_encoder(cfg, tiny_tokenizer)
    assert feats.reads_features and feats.vision is None and feats.frame_dim == 20
    batch = make_batch(tiny_tokenizer)
    with pytest.raises(ValueError, match=r"features must be \[B, T, D\]"):
        feats.encode(**batch)  # pixels given to a features encoder: refused, not guessed from the rank
    with pytest.raises(ValueError, match="reads pixel frames"):
        pixels.encode(**{**batch, "frames": torch.zeros(3, 4, 24)})
    with pytest.raises(ValueError, match="no vision tower"):
        feats.set_reads_features(False)
    assert not build_encoder(make_cfg("clip", mode="text"), tiny_tokenizer).reads_features


def test_parameter_groups_come_from_the_parts(tiny_tokenizer):
    model = build_model(make_cfg("clip"), NUM_LV2, NUM_LV1, tiny_tokenizer)
    groups = {group: {id(p) for p in params} for group, params in parameter_groups(model).items()}
    encoder = model.encoder
    assert groups["text"] == {id(p) for p in encoder.text.parameters()}
    assert groups["vision"] == {id(p) for p in encoder.vision.parameters()}
    assert groups["fusion"] == {id(p) for p in encoder.frame_embedder.parameters()}
    assert groups["heads"] == {id(p) for name, m in model.named_children() if name != "encoder" for p in m.parameters()}


def test_every_optimizer_group_carries_its_part_and_reported_lr_reads_it(tiny_tokenizer):
    model = build_model(make_cfg("clip"), NUM_LV2, NUM_LV1, tiny_tokenizer)
    cfg = build_config({}, ["train.lr=1e-3", "train.lr_text=1e-4", "train.lr_vision=1e-5", "train.layer_decay=0.5"])
    optimizer = optimizer_for(model, cfg.train)
    assert {g["part"] for g in optimizer.param_groups} == {"vision", "text", "fusion", "heads"}
    for group in optimizer.param_groups:
        assert group["name"].split(".")[0] == group["part"]
        group["name"] = "renamed"  # the reported rate never depends on the names
    assert reported_lr(optimizer) == pytest.approx(1e-3)
    for group in optimizer.param_groups:
        if group["part"] in ("fusion", "heads"):
            group["lr"] = 0.5
    assert reported_lr(optimizer) == 0.5
