"""model.vision.kind=hf: the vision part of a transformers model folder (CLIP, Chinese-CLIP, SigLIP, SigLIP2 NaFlex,
DINOv2, ViT), built from tiny random models saved with save_pretrained: the frame embedding is the model's own,
statistics come from the processor config, loading is strict, the architecture travels with a trained model."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers as hf
from safetensors.torch import load_file, save_file
from transformers.modeling_layers import GradientCheckpointingLayer

from mmcls.config import VisionConfig, build_config
from mmcls.data.categories import CategorySpace
from mmcls.errors import ConfigError
from mmcls.model_folder import VISION_CONFIG_FILE, load_portable, save_portable
from mmcls.models import build_model
from mmcls.models.hf_vision import naflex_inputs
from mmcls.models.pixels import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from mmcls.models.vision import build_vision_tower
from tests.helpers import NUM_LV1, NUM_LV2, make_batch

SIZE, LAYERS = 32, 2
MEAN, STD = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)  # not any family's default: seen only if read from the folder
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
          "image_size": SIZE, "patch_size": 8}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 64, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
CROP = {"size": {"shortest_edge": SIZE}, "crop_size": {"height": SIZE, "width": SIZE}}
SQUARE = {"size": {"height": SIZE, "width": SIZE}}
NAFLEX = {k: v for k, v in VISION.items() if k != "image_size"} | {"num_patches": 16}


def _siglip2_features(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """SigLIP2's own embedding of square frames, patchified by the image processor's own function."""
    from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

    patches = torch.stack([convert_image_to_patches(image, 8) for image in pixels])
    n, side = len(pixels), SIZE // 8
    return model.get_image_features(pixel_values=patches, pixel_attention_mask=torch.ones(n, side * side),
                                    spatial_shapes=torch.tensor([[side, side]] * n)).pooler_output


# family -> (model factory, its own frame embedding, processor (class, size kwargs) or None, out_dim)
FAMILIES: dict[str, tuple[Callable, Callable, tuple | None, int]] = {
    "clip": (lambda: hf.CLIPModel(hf.CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=24)),
             lambda m, x: m.get_image_features(pixel_values=x).pooler_output, (hf.CLIPImageProcessor, CROP), 24),
    "clip_vision_projection": (
        lambda: hf.CLIPVisionModelWithProjection(hf.CLIPVisionConfig(**VISION, projection_dim=20)),
        lambda m, x: m(pixel_values=x).image_embeds, None, 20),  # its processor: a processor_config.json
    "chinese_clip": (
        lambda: hf.ChineseCLIPModel(hf.ChineseCLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=24)),
        lambda m, x: m.get_image_features(pixel_values=x).pooler_output, (hf.ChineseCLIPImageProcessor, CROP), 24),
    "siglip": (lambda: hf.SiglipModel(hf.SiglipConfig(vision_config=VISION, text_config=TEXT)),
               lambda m, x: m.get_image_features(pixel_values=x).pooler_output, (hf.SiglipImageProcessor, SQUARE), 32),
    "siglip2": (lambda: hf.Siglip2Model(hf.Siglip2Config(vision_config=NAFLEX, text_config=TEXT)), _siglip2_features,
                (hf.Siglip2ImageProcessor, {"patch_size": 8, "max_num_patches": 16}), 32),
    "dinov2": (lambda: hf.Dinov2Model(hf.Dinov2Config(**{k: v for k, v in VISION.items() if k != "intermediate_size"},
                                                      mlp_ratio=2)),
               lambda m, x: m(pixel_values=x).pooler_output, (hf.BitImageProcessor, CROP), 32),
    "vit": (lambda: hf.ViTModel(hf.ViTConfig(**VISION)), lambda m, x: m(pixel_values=x).last_hidden_state[:, 0],
            (hf.ViTImageProcessor, SQUARE), 32),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Every family saved once: ``{family: (folder, the model in eval mode)}`` (tests copy a folder to change it)."""
    root = tmp_path_factory.mktemp("hf_vision")
    out = {}
    for family, (make, _, processor, _) in FAMILIES.items():
        torch.manual_seed(0)
        model = make().eval()
        folder = root / family
        model.save_pretrained(folder)
        if processor is None:
            image = {"image_mean": list(MEAN), "image_std": list(STD), **SQUARE}
            (folder / "processor_config.json").write_text(json.dumps({"image_processor": image}))
        else:
            cls, sizes = processor
            cls(image_mean=list(MEAN), image_std=list(STD), **sizes).save_pretrained(folder)
        out[family] = folder, model
    return out


def _copy(folders, family: str, dest: Path) -> Path:
    shutil.copytree(folders[family][0], dest)
    return dest


def _tower(folder: Path, frame_size: int = SIZE, **kwargs):
    overrides = kwargs.pop("overrides", {})
    return build_vision_tower(VisionConfig(kind="hf", pretrained=str(folder), overrides=overrides, **kwargs),
                              frame_size).eval()


def _pixels(size: int = SIZE, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_gives_the_models_own_embedding(folders, family):
    folder, model = folders[family]
    _, own, _, out_dim = FAMILIES[family]
    tower = _tower(folder)
    x = _pixels()
    with torch.no_grad():
        assert torch.allclose(tower(x), own(model, x), atol=1e-5)
    assert (tower.kind, tower.out_dim, tower.name) == ("hf", out_dim, family)
    assert (tower.mean, tower.std) == (MEAN, STD)  # from the folder's processor config
    depths = tower.layer_depths()
    assert set(depths) == {name for name, _ in tower.named_parameters()}
    assert tower.top_depth == LAYERS + 1 and set(depths.values()) == set(range(LAYERS + 2))
    assert all(depth == 0 for name, depth in depths.items() if ".embeddings." in name)
    assert all(depth == LAYERS + 1 for name, depth in depths.items()
               if any(part in name for part in ("post_layernorm", ".head.", "backbone.projection.", "model.layernorm")))
    assert not any("text" in key or "logit" in key for key in tower.state_dict())  # whole models: vision part only
    tower.set_channels_last(True)
    with torch.no_grad():
        assert torch.allclose(tower(x), own(model, x), atol=1e-5)


def test_defaults_without_a_processor_config_and_normalization_override(folders, tmp_path):
    stats = {"dinov2": (IMAGENET_MEAN, IMAGENET_STD), "vit": ((0.5,) * 3, (0.5,) * 3), "clip": (CLIP_MEAN, CLIP_STD)}
    for family, expected in stats.items():
        folder = _copy(folders, family, tmp_path / family)
        (folder / "preprocessor_config.json").unlink()
        tower = _tower(folder)
        assert (tower.mean, tower.std) == expected
    assert (_tower(folders["vit"][0], normalization="clip").mean) == CLIP_MEAN  # still replaces the folder's


def test_a_missing_tensor_is_named(folders, tmp_path):
    folder = _copy(folders, "clip", tmp_path / "clip")
    state = load_file(folder / "model.safetensors")
    del state["visual_projection.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained: weights in .*model\.safetensors do not match "
                                          r"the model: 1 missing \(visual_projection\.weight\)"):
        _tower(folder)
    _tower(folder, overrides={"pooling": "pooled"})  # the projection is not needed when it is not used
    del state["vision_model.encoder.layers.1.mlp.fc1.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"do not match the model: 2 missing \(encoder\.layers\.1\.mlp\.fc1\.weight, "
                                          r"visual_projection\.weight\)"):
        _tower(folder)


def test_a_vit_tensor_missing_from_the_old_layout_is_named(folders, tmp_path):
    """ViT files keep transformers' on-disk names; a hole in them is still one ConfigError."""
    folder = _copy(folders, "vit", tmp_path / "vit")
    state = load_file(folder / "model.safetensors")
    del state["encoder.layer.0.attention.attention.query.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"model\.vision\.pretrained: .*1 missing \(layers\.0\.attention\.q_proj"):
        _tower(folder)


def test_a_config_with_more_layers_than_the_weights_is_refused(folders, tmp_path):
    folder = _copy(folders, "siglip", tmp_path / "siglip")
    spec = json.loads((folder / "config.json").read_text())
    spec["vision_config"]["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=r"model\.vision\.pretrained: .*missing \(encoder\.layers\.2\."):
        _tower(folder)


def test_unknown_and_mis_shaped_tensors_are_refused(folders, tmp_path):
    folder = _copy(folders, "clip", tmp_path / "clip")
    state = load_file(folder / "model.safetensors")
    state["surprise.weight"] = torch.zeros(2)
    state["vision_model.post_layernorm.bias"] = torch.zeros(31)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"1 unexpected \(surprise\.weight\); 1 wrong shape "
                                          r"\(post_layernorm\.bias \(31,\) vs \(32,\)\)"):
        _tower(folder)


def test_a_whole_models_text_weights_are_ignored(folders, tmp_path):
    """Whatever the text tower holds (here: nonsense shapes), the vision tower loads."""
    folder = _copy(folders, "chinese_clip", tmp_path / "chinese_clip")
    state = load_file(folder / "model.safetensors")
    assert any(key.startswith("text_model.") for key in state)
    state = {k: (torch.zeros(1) if k.startswith(("text_model.", "text_projection.")) else v) for k, v in state.items()}
    save_file(state, folder / "model.safetensors")
    x = _pixels()
    with torch.no_grad():
        assert torch.equal(_tower(folder)(x), _tower(folders["chinese_clip"][0])(x))


def test_pytorch_bin_and_sharded_folders(folders, tmp_path):
    x = _pixels()
    with torch.no_grad():
        expected = _tower(folders["clip"][0])(x)
    folder = _copy(folders, "clip", tmp_path / "bin")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with torch.no_grad():
        assert torch.equal(_tower(folder)(x), expected)
    sharded = tmp_path / "sharded"
    folders["clip"][1].save_pretrained(sharded, max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    with torch.no_grad():
        assert torch.equal(_tower(sharded)(x), expected)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ConfigError, match=r"model\.vision\.pretrained: .* has no weights file"):
        _tower(folder)


def test_other_frame_sizes_interpolate_with_one_warning(folders, caplog):
    folder, model = folders["clip"]
    x = _pixels(48)
    with caplog.at_level(logging.WARNING, logger="mmcls"):
        tower = _tower(folder, 48)
    assert [r.getMessage() for r in caplog.records if r.name == "mmcls"] == [
        "data.frame_size=48: CLIP clip was trained at 32 px; its position embeddings are interpolated"]
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=x, interpolate_pos_encoding=True).pooler_output
        assert torch.allclose(tower(x), expected, atol=1e-5)
    for family in ("vit", "dinov2", "siglip"):
        with torch.no_grad():
            assert _tower(folders[family][0], 48)(x).shape == (3, FAMILIES[family][3])


def test_naflex_takes_multiples_of_its_patch_size(folders):
    folder = folders["siglip2"][0]
    with torch.no_grad():
        assert _tower(folder, 48)(_pixels(48)).shape == (3, 32)
    with pytest.raises(ConfigError, match=r"^data\.frame_size: .*multiple of 8 \(e\.g\. 40 or 48\)"):
        _tower(folder, 44)
    inputs = naflex_inputs(torch.arange(2 * 3 * 16 * 16.0).reshape(2, 3, 16, 16), 8)
    assert inputs["pixel_values"].shape == (2, 4, 192) and inputs["spatial_shapes"].tolist() == [[2, 2]] * 2
    assert inputs["pixel_values"][0, 1, :3].tolist() == [8.0, 264.0, 520.0]  # patch (0, 1), pixel (0, 8), RGB


@pytest.mark.parametrize(("family", "pooling", "own", "width"), [
    ("clip", "pooled", lambda m, x: m.vision_model(pixel_values=x).pooler_output, 32),
    ("siglip", "mean", lambda m, x: m.vision_model(pixel_values=x).last_hidden_state.mean(1), 32),
    ("dinov2", "mean", lambda m, x: m(pixel_values=x).last_hidden_state[:, 1:].mean(1), 32),
    ("vit", "mean", lambda m, x: m(pixel_values=x).last_hidden_state[:, 1:].mean(1), 32),
    ("vit", "pooled", lambda m, x: m(pixel_values=x).pooler_output, 32),
])
def test_pooling_choices(folders, family, pooling, own, width):
    folder, model = folders[family]
    tower = _tower(folder, overrides={"pooling": pooling})
    x = _pixels()
    with torch.no_grad():
        assert torch.allclose(tower(x), own(model, x), atol=1e-5)
    assert tower.out_dim == width and tower.config["pooling"] == pooling
    assert set(tower.layer_depths()) == {name for name, _ in tower.named_parameters()}


def test_bad_pooling_and_overrides(folders, tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.vision\.overrides\.pooling: DINOv2 offers cls \| mean, "
                                          r"got 'pooled'"):
        _tower(folders["dinov2"][0], overrides={"pooling": "pooled"})
    folder = tmp_path / "clip_vision"
    hf.CLIPVisionModel(hf.CLIPVisionConfig(**VISION)).save_pretrained(folder)  # no projection
    assert _tower(folder).out_dim == 32
    with pytest.raises(ConfigError, match=r"overrides\.pooling: CLIP offers pooled \(this folder has no projection\)"):
        _tower(folder, overrides={"pooling": "projected"})
    with pytest.raises(ConfigError, match=r"^model\.vision\.overrides\.layers: model\.vision\.kind=hf takes only the "
                                          r"architecture-free keys attn_implementation, pooling"):
        _tower(folder, overrides={"layers": 3})
    with pytest.raises(ConfigError, match=r"overrides\.attn_implementation: expected one of sdpa, eager"):
        _tower(folder, overrides={"attn_implementation": "flash"})
    eager = _tower(folder, overrides={"attn_implementation": "eager"})
    assert eager.backbone.model.config._attn_implementation == "eager"
    assert _tower(folder).backbone.model.config._attn_implementation == "sdpa"


def test_bad_folders(tmp_path):
    families = r".*CLIP \(clip / clip_vision_model\).*DINOv2 \(dinov2\)"
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained: model\.vision\.kind=hf needs a local"):
        build_vision_tower(VisionConfig(kind="hf"), SIZE)
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained: .*needs a local transformers model folder"):
        _tower(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained: .*empty has no config\.json" + families):
        _tower(tmp_path / "empty")
    hf.BertModel(hf.BertConfig(**{k: v for k, v in TEXT.items() if "token_id" not in k})).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained: .*bert holds a transformers 'bert' model, not "
                                          r"a supported vision model" + families):
        _tower(tmp_path / "bert")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_stored_config_rebuilds_without_the_folder(folders, tmp_path, family):
    folder = _copy(folders, family, tmp_path / family)
    rng = torch.get_rng_state()
    tower = _tower(folder)
    stored = json.loads(json.dumps(tower.config))  # as vision_config.json keeps it
    untrained = build_vision_tower(VisionConfig(kind="hf", pretrained=str(folder)), SIZE, load_weights=False)
    assert torch.equal(torch.get_rng_state(), rng)  # layers built next initialise the same either way
    assert untrained.state_dict().keys() == tower.state_dict().keys()
    shutil.rmtree(folder)
    rebuilt = build_vision_tower(VisionConfig(kind="hf", pretrained=str(folder)), SIZE, load_weights=True,
                                 config=stored).eval()
    assert rebuilt.state_dict().keys() == tower.state_dict().keys()
    assert (rebuilt.mean, rebuilt.std, rebuilt.out_dim, rebuilt.name) == (MEAN, STD, tower.out_dim, family)
    rebuilt.load_state_dict(tower.state_dict(), strict=True)
    x = _pixels()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), tower(x))


def test_gradient_checkpointing_recomputes_the_layers(folders):
    x = _pixels()
    tower = _tower(folders["clip"][0]).train()
    calls = []
    # a pre-hook: the recomputation stops as soon as the last saved activation is back (before forward hooks)
    tower.backbone.model.encoder.layers[0].mlp.register_forward_pre_hook(lambda *args: calls.append(1))

    def grads() -> list[torch.Tensor]:
        tower.zero_grad()
        tower(x).square().sum().backward()
        return [p.grad.clone() for p in tower.parameters()]

    plain = grads()
    assert len(calls) == 1
    tower.set_grad_checkpointing(True)
    layers = [m for m in tower.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(layers) == LAYERS and all(layer.gradient_checkpointing for layer in layers)
    calls.clear()
    checkpointed = grads()
    assert len(calls) == 2  # the forward, and again in the backward pass
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed, strict=True))
    tower.set_grad_checkpointing(False)
    calls.clear()
    grads()
    assert len(calls) == 1


@pytest.mark.parametrize(("family", "extra", "width"), [
    ("clip", [], 24),
    ("siglip", ["model.vision.overrides={pooling: mean}"], 32),
])
def test_a_classifier_with_an_hf_tower_is_portable(folders, tmp_path, tiny_tokenizer, family, extra, width):
    folder = _copy(folders, family, tmp_path / family)
    cfg = build_config(None, [
        f"data.frame_size={SIZE}", "data.max_frames=4", "data.max_text_len=16", "model.text.hidden_size=32",
        "model.text.num_layers=2", "model.text.num_heads=2", "model.text.intermediate_size=64",
        "model.text.max_positions=32", "model.vision.kind=hf", f"model.vision.pretrained={folder}", *extra])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_LV2, NUM_LV1, tiny_tokenizer).eval()
    assert model.encoder.vision.kind == "hf" and model.encoder.vision.out_dim == width
    batch = make_batch(tiny_tokenizer)
    with torch.no_grad():
        expected = model(**batch)["logits"]
    categories = CategorySpace.build(["0101", "0102", "0103", "0201", "0202", "0301", "0302"])
    save_portable(tmp_path / "best", model, cfg, categories, tiny_tokenizer)
    assert json.loads((tmp_path / "best" / VISION_CONFIG_FILE).read_text())["model_type"].startswith(family)
    shutil.move(folder, tmp_path / "gone")
    loaded = load_portable(tmp_path / "best")
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch)["logits"], expected)


def test_pretraining_and_finetuning_with_an_hf_tower_need_its_folder_only_once(folders, synthetic_root, tmp_path):
    """The commands end to end: pretrain with a Chinese-CLIP folder, move the folder away, finetune from the
    pretrained folder (its vision_config.json rebuilds the tower) and predict with best/."""
    from mmcls.commands import finetune, predict, pretrain
    from tests.helpers import read_csv_ids, tiny_overrides

    folder = _copy(folders, "chinese_clip", tmp_path / "cn_clip")
    demo = ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")]
    hf_tower = ["model.vision.kind=hf", f"model.vision.pretrained={folder}", "model.vision.overrides=~",
                f"data.frame_size={SIZE}", "data.resize_size=40", "train.max_steps=2", "train.eval_every=2"]
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    assert pretrain.main([*demo, *tiny_overrides(synthetic_root, pre, "pretrain.holdout=16", *hf_tower)]) == 0
    assert json.loads((pre / "best" / VISION_CONFIG_FILE).read_text())["model_type"] == "chinese_clip_vision_model"
    shutil.move(folder, tmp_path / "gone")
    assert finetune.main([*demo, *tiny_overrides(synthetic_root, fine, *hf_tower,
                                                 f"model.init_from={pre / 'best'}")]) == 0
    pretrained = load_file(pre / "best" / "model.safetensors")
    trained = load_file(fine / "checkpoints" / "last" / "model.safetensors")
    embedding = "encoder.vision.backbone.model.embeddings.patch_embedding.weight"
    assert embedding in pretrained and embedding in trained
    result = tmp_path / "result.csv"
    assert predict.main(["--model", str(fine / "best"), "--output", str(result)]) == 0
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text())]
    assert read_csv_ids(result) == test_ids
