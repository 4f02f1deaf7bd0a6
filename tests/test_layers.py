"""Tower depths, layer-wise learning-rate decay and lower layers, on tiny classifiers with every kind of tower."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

from mmcls.config import Config, build_config
from mmcls.engine.optim import optimizer_for
from mmcls.models import MultimodalClassifier
from mmcls.models.layers import layer_decay_scales, lower_layers, tower_depths
from tests.helpers import build, make_cfg


def _block(pattern: str, name: str) -> int | None:
    match = re.match(pattern, name)
    return int(match.group(1)) if match else None


def _clip_vit(name: str) -> int:  # 2 resblocks, then ln_post / proj
    block = _block(r"transformer\.resblocks\.(\d+)\.", name)
    return block + 1 if block is not None else 3 if name.startswith(("ln_post", "proj")) else 0


def _clip_resnet(name: str) -> int:  # ModifiedResNet: a depth per stage, then the attention pool
    stage = _block(r"layer(\d)\.", name)
    return stage if stage is not None else 5 if name.startswith("attnpool.") else 0


def _clip_timm(name: str) -> int:  # open_clip TimmModel: vit_tiny trunk (12 blocks, norm with the last), head
    block = _block(r"trunk\.blocks\.(\d+)\.", name)
    if block is not None:
        return block + 1
    return 12 if name.startswith("trunk.norm.") else 13 if name.startswith("head.") else 0


def _timm_vit(name: str) -> int:  # timm keeps the final norm with the last block
    block = _block(r"blocks\.(\d+)\.", name)
    return block + 1 if block is not None else 2 if name.startswith("norm.") else 0


def _timm_resnet(name: str) -> int:  # resnet18: 4 stages of 2 blocks
    match = re.match(r"layer(\d)\.(\d)\.", name)
    return 2 * (int(match.group(1)) - 1) + int(match.group(2)) + 1 if match else 0


def _config(kind: str) -> Config:
    cfg = make_cfg("clip" if kind.startswith("clip") else "timm")
    vision = cfg.model.vision
    if kind == "clip_resnet":
        vision.name, vision.overrides = "RN50", {"layers": [1, 1, 1, 1], "width": 8, "embed_dim": 24, "heads": 2}
    elif kind == "clip_timm":
        vision.name = "ViT-B-16-SigLIP"
        vision.overrides = {"timm_model_name": "vit_tiny_patch16_224", "timm_pool": "avg", "timm_proj": "linear",
                            "embed_dim": 24}
    elif kind == "timm_resnet":
        vision.name, vision.overrides = "resnet18", {}
    return cfg


TOWERS: dict[str, Callable[[str], int]] = {"clip": _clip_vit, "clip_resnet": _clip_resnet, "clip_timm": _clip_timm,
                                           "timm": _timm_vit, "timm_resnet": _timm_resnet}


@pytest.fixture(scope="module")
def models(tiny_tokenizer) -> dict[str, MultimodalClassifier]:
    return {kind: build(tiny_tokenizer, _config(kind)) for kind in TOWERS}


def _vision_params(model: MultimodalClassifier) -> dict[str, torch.nn.Parameter]:
    prefix = "encoder.vision.backbone."
    return {n.removeprefix(prefix): p for n, p in model.named_parameters() if n.startswith(prefix)}


@pytest.mark.parametrize("kind", TOWERS)
def test_vision_depths_count_blocks_from_the_stem_up(models, kind):
    depths = tower_depths(models[kind])
    expected = {name: TOWERS[kind](name) for name in _vision_params(models[kind])}
    got = {name.removeprefix("encoder.vision.backbone."): d.layer for name, d in depths.items() if d.tower == "vision"}
    assert got == expected
    assert {d.top for d in depths.values() if d.tower == "vision"} == {max(expected.values())}


def test_text_depths_embeddings_then_bert_layers(models):
    depths = tower_depths(models["clip"])
    text = {name: d for name, d in depths.items() if d.tower == "text"}
    assert set(text) == {n for n, _ in models["clip"].named_parameters() if n.startswith("encoder.text.bert.")}
    for name, depth in text.items():
        block = _block(r"encoder\.text\.bert\.encoder\.layer\.(\d+)\.", name)
        assert (depth.layer, depth.top) == (block + 1 if block is not None else 0, 2), name
    assert text["encoder.text.bert.embeddings.word_embeddings.weight"].layer == 0


@pytest.mark.parametrize("kind", TOWERS)
def test_every_tower_parameter_has_a_depth_and_fusion_and_heads_none(models, kind):
    depths = tower_depths(models[kind])
    names = [n for n, _ in models[kind].named_parameters()]
    assert set(depths) == {n for n in names if n.startswith(("encoder.text.", "encoder.vision."))}
    assert any(n.startswith(("encoder.frame_embedder.", "heads.")) for n in names)


def test_layer_decay_scales_are_decay_to_the_distance_from_the_top(models):
    scales = layer_decay_scales(models["clip"], 0.5)
    assert scales["encoder.vision.backbone.proj"] == 1.0 and scales["encoder.vision.backbone.ln_post.bias"] == 1.0
    assert scales["encoder.vision.backbone.transformer.resblocks.1.attn.in_proj_weight"] == 0.5
    assert scales["encoder.vision.backbone.conv1.weight"] == 0.125
    assert scales["encoder.text.bert.encoder.layer.1.output.dense.weight"] == 1.0
    assert scales["encoder.text.bert.embeddings.word_embeddings.weight"] == 0.25
    assert not any(n.startswith(("encoder.frame_embedder.", "heads.", "video_head.")) for n in scales)
    assert set(layer_decay_scales(models["clip"], 1.0).values()) == {1.0}


@pytest.mark.parametrize("kind", ["clip", "timm", "timm_resnet"])
def test_lower_layers_are_the_stem_and_the_first_blocks(models, kind):
    model = models[kind]
    vision = _vision_params(model)
    first = {id(p) for name, p in vision.items() if TOWERS[kind](name) <= 1}
    assert {id(p) for p in lower_layers(model, "vision", 1)} == first
    assert len(lower_layers(model, "vision", 1)) == len(first)
    assert {id(p) for p in lower_layers(model, "vision", 0)} == {id(p) for p in vision.values()}
    lowest = ("encoder.text.bert.embeddings.", "encoder.text.bert.encoder.layer.0.")
    text_first = {id(p) for n, p in model.named_parameters() if n.startswith(lowest)}
    assert {id(p) for p in lower_layers(model, "text", 1)} == text_first


def test_optimizer_for_decays_bert_layers_and_covers_every_trainable_parameter_once(models):
    model = models["clip"]
    cfg = build_config({}, ["train.layer_decay=0.5", "train.lr_text=1e-4", "train.lr=1e-3"]).train
    frozen = model.encoder.vision.backbone.conv1.weight
    frozen.requires_grad_(False)
    try:
        optimizer = optimizer_for(model, cfg)
    finally:
        frozen.requires_grad_(True)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["encoder.text.bert.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(1e-4)
    assert lr_of[id(params["encoder.text.bert.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(5e-5)
    assert lr_of[id(params["encoder.text.bert.embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 * 0.5 ** 2)
    assert lr_of[id(params["heads.lv2.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params["encoder.vision.backbone.proj"])] == pytest.approx(cfg.lr_vision)
    members = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(members) == len(set(members))
    assert set(members) == {id(p) for p in model.parameters()} - {id(frozen)}
    names = [g["name"] for g in optimizer.param_groups]
    assert len(names) == len(set(names)) and "text.down2.no_decay" in names


def test_optimizer_for_without_layer_decay_has_one_rate_per_part(models):
    optimizer = optimizer_for(models["clip"], build_config({}, []).train)
    parts, kinds = ("vision", "text", "fusion", "heads"), ("decay", "no_decay")
    assert {g["name"] for g in optimizer.param_groups} == {f"{part}.{kind}" for part in parts for kind in kinds}
