"""Pretrain -> finetune weight transfer: pretrained folders, ``model.init_from`` and its errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from mmcls.data.categories import CategorySpace
from mmcls.errors import UserError
from mmcls.model_folder import (
    init_from_pretrained,
    load_portable,
    load_pretrained_encoder,
    save_portable,
    save_pretrained_folder,
)
from mmcls.models import ENCODER_PARTS, MultimodalClassifier, build_bert, build_model, build_pretrainer
from tests.helpers import make_cfg

NUM_LV2, NUM_LV1 = 5, 2


def _keys(path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return set(f.keys())


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def pretrain_folder(tmp_path, tokenizer, cfg=None, seed: int = 0):
    """A randomly initialised pretrainer saved as a pretrained folder; returns (folder, pretrainer)."""
    cfg = cfg or make_cfg("clip")
    torch.manual_seed(seed)
    model = build_pretrainer(cfg, tokenizer)
    save_pretrained_folder(tmp_path / "pretrained", model, cfg, tokenizer)
    return tmp_path / "pretrained", model


def finetune_model(cfg, init_from) -> tuple[MultimodalClassifier, list[str]]:
    """What finetuning does with ``model.init_from``: the folder's tokenizer and BERT config, then its weights."""
    cfg.model.init_from = str(init_from)
    encoder = load_pretrained_encoder(cfg.model.init_from)
    torch.manual_seed(123)  # other random weights than the pretrainer's
    model = build_model(cfg, NUM_LV2, NUM_LV1, encoder.tokenizer, text_config=encoder.text_config,
                        load_pretrained=not encoder.supplies_vision(cfg.model.init_parts))
    return model, init_from_pretrained(model, encoder, cfg.model.init_parts)


def assert_encoder_equal(model, source) -> None:
    state, expected = _encoder_state(model), _encoder_state(source)
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def test_pretrained_folder_layout(tmp_path, tiny_tokenizer):
    folder, model = pretrain_folder(tmp_path, tiny_tokenizer)
    assert _keys(folder / "model.safetensors") == set(_encoder_state(model))
    assert all(k.split(".", 1)[0] in ("mlm_head", "mfm_head", "itm_head")
               for k in _keys(folder / "pretrain_heads.safetensors"))
    assert json.loads((folder / "pretrained.json").read_text())["kind"] == "pretrained"
    assert (folder / "bert_config.json").is_file() and (folder / "config.yaml").is_file()
    assert not (folder.parent / "pretrained.tmp").exists()
    with pytest.raises(UserError, match=r"model.init_from"):  # not a classifier: prediction explains what to do
        load_portable(folder)


def test_model_folders_are_readable_by_the_group_and_others(tmp_path, tiny_tokenizer):
    """A shared model folder: every file follows the umask (0644 under 022), none is left private (0600)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder, _ = pretrain_folder(tmp_path, tiny_tokenizer)
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir() if path.is_file()}
    assert "config.yaml" in modes and "pretrained.json" in modes
    assert all(mode & 0o044 == 0o044 for mode in modes.values()), modes


def test_classifier_gets_the_exact_encoder_and_fresh_heads(tmp_path, tiny_tokenizer):
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer)
    torch.manual_seed(123)
    fresh = build_model(make_cfg("clip"), NUM_LV2, NUM_LV1, tiny_tokenizer)
    model, loaded = finetune_model(make_cfg("clip"), folder)
    assert_encoder_equal(model, pretrainer)
    assert set(loaded) == set(_encoder_state(model))
    for name in ("heads", "video_head"):  # same seed, same heads as a model built without init_from
        for key, value in getattr(fresh, name).state_dict().items():
            assert torch.equal(getattr(model, name).state_dict()[key], value), key
    assert model.heads.lv2.out_features == NUM_LV2


@pytest.mark.parametrize("parts", [["vision", "frame_embedder"], ["bert"]])
def test_init_parts_loads_only_the_chosen_parts(tmp_path, tiny_tokenizer, parts):
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer)
    cfg = make_cfg("clip")
    cfg.model.init_parts = parts
    torch.manual_seed(123)
    fresh = build_model(make_cfg("clip"), NUM_LV2, NUM_LV1, tiny_tokenizer)  # what finetune_model builds first
    model, loaded = finetune_model(cfg, folder)
    chosen = {{"bert": "text"}.get(part, part) for part in parts}  # model.init_parts names -> encoder parts
    assert {key.split(".", 2)[1] for key in loaded} == chosen
    for part in ENCODER_PARTS:
        source = pretrainer if part in chosen else fresh
        for key, value in getattr(source.encoder, part).state_dict().items():
            assert torch.equal(getattr(model.encoder, part).state_dict()[key], value), f"{part}.{key}"


def test_bert_from_a_local_directory_that_is_gone_at_finetuning(tmp_path, tiny_tokenizer):
    bert_cfg = make_cfg("clip").model.text
    bert_cfg.num_layers = 3  # the finetune config below says 2: the architecture must come from the folder
    source = build_bert(bert_cfg, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    source.save_pretrained(tmp_path / "bert")
    tiny_tokenizer.save_pretrained(tmp_path / "bert")
    cfg = make_cfg("clip")
    cfg.model.text.pretrained = str(tmp_path / "bert")
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer, cfg)
    torch.testing.assert_close(pretrainer.encoder.text.word_embeddings,
                               source.embeddings.word_embeddings.weight)
    shutil.rmtree(tmp_path / "bert")
    cfg = make_cfg("clip")
    cfg.model.text.pretrained = str(tmp_path / "bert")
    model, _ = finetune_model(cfg, folder)
    assert len(model.encoder.text.bert.encoder.layer) == 3
    assert_encoder_equal(model, pretrainer)


def test_a_finetuned_folder_works_as_init_from(tmp_path, tiny_tokenizer):
    torch.manual_seed(7)
    source = build_model(make_cfg("clip"), 7, 3, tiny_tokenizer)  # another label space: its heads are skipped
    save_portable(tmp_path / "best", source, make_cfg("clip"), CategorySpace.build([f"{i:04d}" for i in range(7)]),
                  tiny_tokenizer)
    encoder = load_pretrained_encoder(tmp_path / "best")
    assert encoder.kind == "finetuned" and encoder.heads == {}
    model, loaded = finetune_model(make_cfg("clip"), tmp_path / "best")
    assert_encoder_equal(model, source)
    assert not any(key.startswith(("heads.", "video_head.")) for key in loaded)


def test_feature_pretraining_keeps_the_models_own_tower(tmp_path, tiny_tokenizer):
    cfg = make_cfg("clip")
    cfg.data.frame_source, cfg.data.feat_dim = "feats", 24  # the tiny CLIP's embedding width
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer, cfg)
    model, loaded = finetune_model(make_cfg("clip"), folder)
    assert model.encoder.vision is not None and not any(key.startswith("encoder.vision.") for key in loaded)
    assert torch.equal(model.encoder.frame_embedder.proj.weight, pretrainer.encoder.frame_embedder.proj.weight)
    assert torch.equal(model.encoder.text.bert.encoder.layer[1].output.dense.weight,
                       pretrainer.encoder.text.bert.encoder.layer[1].output.dense.weight)
    _, loaded = finetune_model(make_cfg("clip", mode="text"), folder)  # text mode: the BERT alone
    assert loaded and all(key.startswith("encoder.text.") for key in loaded)


def test_continued_pretraining_takes_the_task_heads(tmp_path, tiny_tokenizer):
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer)
    torch.manual_seed(5)
    again = build_pretrainer(make_cfg("clip"), tiny_tokenizer)
    loaded = init_from_pretrained(again, load_pretrained_encoder(folder))
    assert any(key.startswith("mlm_head.") for key in loaded)
    assert torch.equal(again.mlm_head.bias, pretrainer.mlm_head.bias)
    assert torch.equal(again.itm_head.weight, pretrainer.itm_head.weight)


@pytest.mark.parametrize(("key", "value", "part"), [
    ("frame_size", 48, "vision"),  # CLIP position grid 4x4 -> 6x6
    ("max_frames", 6, "frame_embedder"),  # frame-position table
])
def test_mismatched_shapes_name_init_from(tmp_path, tiny_tokenizer, key, value, part):
    folder, _ = pretrain_folder(tmp_path, tiny_tokenizer)
    cfg = make_cfg("clip")
    setattr(cfg.data, key, value)
    with pytest.raises(UserError, match=rf"model.init_from: .*\[{part}\.\*\].*wrong shape"):
        finetune_model(cfg, folder)


def test_text_only_folder_cannot_start_a_fusion_model(tmp_path, tiny_tokenizer):
    source = build_model(make_cfg("clip", mode="text"), 7, 3, tiny_tokenizer)
    save_portable(tmp_path / "best", source, make_cfg("clip", mode="text"),
                  CategorySpace.build([f"{i:04d}" for i in range(7)]), tiny_tokenizer)
    with pytest.raises(UserError, match=r"model.init_from: .*no frame_embedder"):
        finetune_model(make_cfg("clip"), tmp_path / "best")


def test_folders_that_are_not_models(tmp_path, tiny_tokenizer):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"model.init_from: .*not a model folder"):
        load_pretrained_encoder(tmp_path / "empty")
    with pytest.raises(UserError, match=r"model.init_from: not a folder"):
        load_pretrained_encoder(tmp_path / "missing")
    folder, _ = pretrain_folder(tmp_path, tiny_tokenizer)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"model.init_from: .*missing model.safetensors"):
        load_pretrained_encoder(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"model.init_from: cannot read weights"):
        load_pretrained_encoder(folder)
    (folder / "pretrained.json").write_text('{"kind": "something else"}')
    with pytest.raises(UserError, match=r"model.init_from: .*not a pretrained-model marker"):
        load_pretrained_encoder(folder)


# ----------------------------------------------------------------------------------------------------------------
# folders of the weights layout before the encoder was one module (bert.*, vision.*, frame_embedder.* at the top)

_OLD_PREFIXES = (("encoder.text.bert.", "bert."), ("encoder.vision.", "vision."),
                 ("encoder.frame_embedder.", "frame_embedder."))


def _rewrite_in_old_layout(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    old = {}
    for key, value in load_file(str(path)).items():
        new, legacy = next(((n, o) for n, o in _OLD_PREFIXES if key.startswith(n)), ("", ""))
        old[legacy + key[len(new):]] = value
    save_file(old, str(path))
    assert any(k.startswith("bert.") for k in old) and not any(k.startswith("encoder.") for k in old)
    return old


def test_a_model_folder_of_the_old_layout_loads(tmp_path, tiny_tokenizer):
    cfg = make_cfg("clip")
    torch.manual_seed(0)
    model = build_model(cfg, NUM_LV2, NUM_LV1, tiny_tokenizer)
    save_portable(tmp_path / "best", model, cfg, CategorySpace.build(["0101", "0102", "0201", "0202", "0203"]),
                  tiny_tokenizer)
    old = _rewrite_in_old_layout(tmp_path / "best" / "model.safetensors")
    loaded = load_portable(tmp_path / "best").model
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "bert.embeddings.word_embeddings.weight" in old and "heads.lv2.weight" in old


def test_a_pretrained_folder_of_the_old_layout_initialises_a_model(tmp_path, tiny_tokenizer):
    folder, pretrainer = pretrain_folder(tmp_path, tiny_tokenizer)
    _rewrite_in_old_layout(folder / "model.safetensors")
    model, loaded = finetune_model(make_cfg("clip"), folder)
    assert_encoder_equal(model, pretrainer)
    assert set(loaded) == set(_encoder_state(model))
