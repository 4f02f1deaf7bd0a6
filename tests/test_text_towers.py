"""BERT-family text towers from local folders (RoBERTa, XLM-R, ERNIE next to BERT): loaded strictly through their own
classes, fused like BERT, stored portably. Tiny random models saved with ``save_pretrained`` stand in for real ones."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from helpers import NUM_LV1, NUM_LV2, build, make_batch, make_cfg
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from mmcls.data.categories import CategorySpace
from mmcls.errors import ConfigError
from mmcls.model_folder import load_portable, save_portable
from mmcls.models import build_pretrainer
from mmcls.models.text import build_text_tower

FAMILIES = ("roberta", "xlm-roberta", "ernie")
ONE_TYPE = ("roberta", "xlm-roberta")  # distributed with type_vocab_size 1


def _save_family(folder, family: str, tokenizer, seed: int = 0) -> torch.nn.Module:
    """A tiny masked-LM checkpoint of ``family`` as distributed (encoder + LM head), with ``tokenizer``; returns
    the base encoder whose tensors the tower must hold."""
    pad = tokenizer.pad_token_id
    offset = pad + 1 if family in ONE_TYPE else 0  # RoBERTa numbers positions after the padding id
    config = AutoConfig.for_model(family, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=32 + offset,
                                  pad_token_id=pad, type_vocab_size=1 if family in ONE_TYPE else 2)
    torch.manual_seed(seed)
    masked_lm = AutoModelForMaskedLM.from_config(config)
    masked_lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return masked_lm.base_model


def _cfg(folder):
    cfg = make_cfg()
    cfg.model.text = dataclasses.replace(cfg.model.text, pretrained=str(folder))
    return cfg


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bert_family_folder_is_the_text_tower_with_every_tensor_from_the_file(tmp_path, tiny_tokenizer, family):
    source = _save_family(tmp_path / family, family, tiny_tokenizer)
    model = build(tiny_tokenizer, _cfg(tmp_path / family))
    bert = model.encoder.text.bert
    assert type(bert) is type(source) and bert.config.model_type == family
    own = bert.state_dict()
    for key, value in source.state_dict().items():
        if key == "embeddings.token_type_embeddings.weight":
            continue
        assert torch.equal(own[key], value), key
    types = own["embeddings.token_type_embeddings.weight"]
    assert types.shape[0] == 2 and bert.config.type_vocab_size == 2  # frames have their own type
    assert torch.equal(types[0], source.embeddings.token_type_embeddings.weight[0])
    if family in ONE_TYPE:  # the added frame type starts as the text type
        assert torch.equal(types[1], types[0])
    assert model.encoder.text.max_positions == 32
    logits = model(**make_batch(tiny_tokenizer))["logits"]
    assert logits.shape == (3, NUM_LV2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tower_embeds_and_fuses_text_as_the_family_itself(tmp_path, tiny_tokenizer, family):
    """Text alone through embed + fuse is the family's own forward pass (RoBERTa's shifted positions included)."""
    _save_family(tmp_path / family, family, tiny_tokenizer)
    tower = build_text_tower(_cfg(tmp_path / family).model.text, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    reference = AutoModel.from_pretrained(tmp_path / family, add_pooling_layer=False).eval()
    tower.eval()
    ids = torch.randint(5, len(tiny_tokenizer), (2, 9))
    ids[1, 6:] = tiny_tokenizer.pad_token_id
    mask = ids != tiny_tokenizer.pad_token_id
    with torch.no_grad():
        ours = tower.fuse(tower.embed(ids), mask)
        theirs = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5)


def test_a_family_folder_loads_strictly(tmp_path, tiny_tokenizer):
    _save_family(tmp_path / "holed", "roberta", tiny_tokenizer)
    weights = tmp_path / "holed" / "model.safetensors"
    state = load_file(weights)
    removed = next(k for k in state if "layer.1.attention.self.query.weight" in k)
    save_file({k: v for k, v in state.items() if k != removed}, weights, metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"model.text.pretrained: weights in .*holed do not match the model: "
                                          r"1 missing \(encoder.layer.1.attention.self.query.weight\)"):
        build(tiny_tokenizer, _cfg(tmp_path / "holed"))


@pytest.mark.parametrize("family", ONE_TYPE)
def test_a_trained_family_model_is_portable(tmp_path, tiny_tokenizer, family):
    """best/ stores the family's config (bert_config.json keeps its model_type): it predicts the same with the
    original folder gone, and a pretrainer (MLM tied to the family's word embeddings) builds on it."""
    _save_family(tmp_path / family, family, tiny_tokenizer)
    cfg = _cfg(tmp_path / family)
    model = build(tiny_tokenizer, cfg)
    batch = make_batch(tiny_tokenizer)
    with torch.no_grad():
        expected = model(**batch)["logits"]
    categories = CategorySpace.build(["0101", "0102", "0103", "0201", "0202", "0301", "0302"])
    assert (categories.num_lv2, categories.num_lv1) == (NUM_LV2, NUM_LV1)
    save_portable(tmp_path / "best", model, cfg, categories, tiny_tokenizer)
    shutil.rmtree(tmp_path / family)
    loaded = load_portable(tmp_path / "best")
    assert loaded.model.encoder.text.bert.config.model_type == family
    with torch.no_grad():
        assert torch.allclose(loaded.model(**batch)["logits"], expected, atol=1e-6)

    pretrainer = build_pretrainer(loaded.cfg, tiny_tokenizer, text_config=loaded.model.encoder.text.config,
                                  load_pretrained=False)
    assert pretrainer.mlm_head is not None and pretrainer.encoder.text.bert.config.model_type == family
