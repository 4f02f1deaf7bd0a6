"""Models: tiny open_clip / timm towers, a tiny BERT, the fusion classifier, builders and parameter groups.

Everything is built from configs with random weights; "pretrained" files are written to tmp_path first.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from mmcls.config import build_config
from mmcls.errors import ConfigError
from mmcls.models import (
    build_bert,
    build_vision_tower,
    model_summary,
    parameter_groups,
)
from mmcls.models.pixels import NORMALIZATIONS
from tests.helpers import FRAMES, NUM_LV1, NUM_LV2, SIZE, TINY_CLIP, TINY_TIMM, build, make_batch, make_cfg

# ----------------------------------------------------------------------------------------------------------------
# vision towers


def test_clip_tower_follows_frame_size_and_overrides():
    cfg = make_cfg("clip").model.vision
    tower = build_vision_tower(cfg, SIZE)
    assert tower.out_dim == 24 and (tower.mean, tower.std) == NORMALIZATIONS["clip"]
    assert tuple(tower.backbone.image_size) == (SIZE, SIZE)
    assert len(tower.backbone.transformer.resblocks) == 2
    assert tower(torch.randn(5, 3, SIZE, SIZE)).shape == (5, 24)
    assert build_vision_tower(cfg, 48).backbone.grid_size == (6, 6)  # the image size follows data.frame_size


def test_clip_quick_gelu_follows_the_model_name_or_override():
    from open_clip.transformer import QuickGELU

    def has_quick_gelu(tower):
        return any(isinstance(m, QuickGELU) for m in tower.modules())

    cfg = make_cfg("clip").model.vision
    assert not has_quick_gelu(build_vision_tower(cfg, SIZE))
    cfg.name = "ViT-B-16-quickgelu"  # the activation OpenAI's weights were trained with
    assert has_quick_gelu(build_vision_tower(cfg, SIZE))
    cfg.name, cfg.overrides = "ViT-B-16", {**TINY_CLIP, "quick_gelu": True}
    assert has_quick_gelu(build_vision_tower(cfg, SIZE))


def test_timm_tower_takes_img_size_and_its_own_stats():
    cfg = make_cfg("timm").model.vision
    tower = build_vision_tower(cfg, SIZE)
    assert tower.out_dim == 32 and tower.mean == (0.5, 0.5, 0.5)  # vit_tiny's pretrained_cfg
    assert tower(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 32)
    cfg.normalization = "imagenet"
    assert (build_vision_tower(cfg, SIZE).mean, build_vision_tower(cfg, SIZE).std) == NORMALIZATIONS["imagenet"]


def test_timm_convnet_without_img_size():
    cfg = make_cfg("timm").model.vision
    cfg.name, cfg.overrides = "resnet10t", {}
    tower = build_vision_tower(cfg, SIZE)
    assert tower(torch.randn(2, 3, SIZE, SIZE)).shape == (2, tower.out_dim)


@pytest.mark.parametrize(("kind", "overrides", "match"), [
    ("clip", {"depth": 2}, "model.vision.overrides.depth"),
    ("clip", {"image_size": 64}, "model.vision.overrides.image_size"),
    ("clip", {"width": 30, "heads": 4}, "model.vision.overrides.heads"),
    ("timm", {"img_size": 64}, "model.vision.overrides.img_size"),
    ("timm", {"layers": 2}, "model.vision.overrides"),
])
def test_bad_vision_overrides(kind, overrides, match):
    cfg = make_cfg(kind).model.vision
    cfg.overrides = {**cfg.overrides, **overrides}
    with pytest.raises(ConfigError, match=match):
        build_vision_tower(cfg, SIZE)


@pytest.mark.parametrize("kind", ["clip", "timm"])
def test_unknown_vision_model_name(kind):
    cfg = make_cfg(kind).model.vision
    cfg.name = "no-such-model"
    with pytest.raises(ConfigError, match=r"model.vision.name"):
        build_vision_tower(cfg, SIZE)


def _tiny_open_clip(image_size: int):
    """A whole tiny open_clip CLIP (vision + text) with the TINY_CLIP vision tower."""
    import open_clip

    vision_cfg = {"width": 32, "layers": 2, "head_width": 16, "patch_size": 8, "image_size": image_size}
    text_cfg = {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}
    torch.manual_seed(1)
    return open_clip.CLIP(embed_dim=24, vision_cfg=vision_cfg, text_cfg=text_cfg)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["open_clip", "torchscript"])
def test_clip_checkpoint_of_whole_model_loads_visual_weights(tmp_path, fmt):
    clip = _tiny_open_clip(SIZE).eval()
    path = tmp_path / "clip.pt"
    if fmt == "open_clip":  # open_clip training checkpoint: {"state_dict": ...} of a DDP model
        torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    else:  # OpenAI's released CLIP files are TorchScript archives
        torch.jit.script(clip).save(str(path))
    cfg = make_cfg("clip").model.vision
    cfg.pretrained = str(path)
    cfg.trust_torchscript = fmt == "torchscript"  # a TorchScript archive runs code when loaded: opted in
    tower = build_vision_tower(cfg, SIZE)
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(tower.backbone.state_dict()[key], value), key
    resized = build_vision_tower(cfg, 48)  # trained at 32 px, used at 48 px: position grid 4x4 -> 6x6
    assert resized.backbone.positional_embedding.shape == (37, 32)
    assert torch.equal(resized.backbone.proj, clip.visual.proj)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_weights_need_the_opt_in(tmp_path, monkeypatch):
    """torch.jit.load runs the archive's code: without model.vision.trust_torchscript=true a TorchScript file is a
    one-line ConfigError (nothing loaded) saying how to opt in or convert it; the conversion it shows works, and no
    other key (model.init_from ...) offers the opt-in."""
    import shlex
    import subprocess
    import sys

    from mmcls.models.weights import read_state_dict

    clip = _tiny_open_clip(SIZE).eval()
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.script(clip).save(str(path))
    loads = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    cfg = make_cfg("clip").model.vision
    cfg.pretrained = str(path)
    with pytest.raises(ConfigError) as refused:
        build_vision_tower(cfg, SIZE)
    message = str(refused.value)
    assert loads == [] and "\n" not in message
    assert message.startswith(f"model.vision.pretrained: {path} is a TorchScript archive")
    assert "set model.vision.trust_torchscript=true if you trust it" in message
    with pytest.raises(ConfigError, match=r"^model.init_from: .* TorchScript") as other:
        read_state_dict(path, "model.init_from", trust_torchscript=False)
    assert "trust_torchscript" not in str(other.value) and loads == []

    command = shlex.split(message.split("convert it once to safetensors: ", 1)[1])
    assert command[0] == "python"
    subprocess.run([sys.executable, *command[1:]], check=True, timeout=120)
    cfg.pretrained = str(path.with_suffix(".safetensors"))
    tower = build_vision_tower(cfg, SIZE)  # the converted file needs no opt-in
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(tower.backbone.state_dict()[key], value), key


def test_clip_vision_only_safetensors_and_no_load(tmp_path):
    clip = _tiny_open_clip(SIZE)
    path = tmp_path / "visual.safetensors"
    save_file(clip.visual.state_dict(), str(path))
    cfg = make_cfg("clip").model.vision
    cfg.pretrained = str(path)
    assert torch.equal(build_vision_tower(cfg, SIZE).backbone.conv1.weight, clip.visual.conv1.weight)
    cfg.pretrained = str(tmp_path / "missing.pt")
    tower = build_vision_tower(cfg, SIZE, load_weights=False)  # rebuilding a trained model needs no file
    assert tower.out_dim == 24


def test_clip_checkpoint_mismatch_and_bad_files(tmp_path):
    cfg = make_cfg("clip").model.vision
    cfg.overrides = {**TINY_CLIP, "width": 64}
    clip = _tiny_open_clip(SIZE)
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    cfg.pretrained = str(path)
    with pytest.raises(ConfigError, match=r"model.vision.pretrained: .*clip.pt.*wrong shape"):
        build_vision_tower(cfg, SIZE)
    cfg.pretrained = str(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"model.vision.pretrained: .*not found.*missing.pt"):
        build_vision_tower(cfg, SIZE)
    garbage = tmp_path / "garbage.pt"
    for text in (b"not a checkpoint", b'{"a": 1}\n'):  # the second makes torch advise weights_only=False
        garbage.write_bytes(text)
        cfg.pretrained = str(garbage)
        with pytest.raises(ConfigError, match=r"garbage.pt is not a weights file that loads without running code") \
                as error:
            build_vision_tower(cfg, SIZE)
        assert "weights_only" not in str(error.value)
    cfg.pretrained = str(tmp_path)  # a folder that exists, but no open_clip folder
    with pytest.raises(ConfigError, match=r"model.vision.pretrained: .* is a folder without open_clip_config.json; "
                                          r"give an open_clip folder or a weights file"):
        build_vision_tower(cfg, SIZE)
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(other))
    cfg.overrides, cfg.pretrained = dict(TINY_CLIP), str(other)
    with pytest.raises(ConfigError, match=r"missing"):
        build_vision_tower(cfg, SIZE)


def test_timm_weights_file_loads_backbone_and_drops_classifier(tmp_path):
    import timm

    torch.manual_seed(2)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=SIZE, **TINY_TIMM)
    path = tmp_path / "model.safetensors"
    save_file(source.state_dict(), str(path))
    cfg = make_cfg("timm").model.vision
    cfg.pretrained = str(path)
    tower = build_vision_tower(cfg, SIZE)
    loaded = tower.backbone.state_dict()
    assert "head.weight" not in loaded
    for key, value in loaded.items():
        assert torch.equal(value, source.state_dict()[key]), key
    cfg.overrides = {**TINY_TIMM, "depth": 3}
    with pytest.raises(ConfigError, match=r"model.vision.pretrained: .*model.safetensors.*missing"):
        build_vision_tower(cfg, SIZE)
    cfg.overrides, cfg.pretrained = dict(TINY_TIMM), str(tmp_path / "nope.safetensors")
    with pytest.raises(ConfigError, match=r"model.vision.pretrained"):
        build_vision_tower(cfg, SIZE)


def _open_clip_folder(folder, clip, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), weights="safetensors"):
    """An open_clip folder as distributed: open_clip_config.json (model_cfg + preprocess_cfg) + weights."""
    import json

    folder.mkdir()
    model_cfg = {"embed_dim": 24, "vision_cfg": {"width": 32, "layers": 2, "head_width": 16, "patch_size": 8,
                                                 "image_size": SIZE},
                 "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}}
    spec = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": list(mean), "std": list(std)}}
    (folder / "open_clip_config.json").write_text(json.dumps(spec))
    if weights == "safetensors":
        save_file(clip.state_dict(), str(folder / "open_clip_model.safetensors"))
    else:
        torch.save(clip.state_dict(), folder / "open_clip_pytorch_model.bin")


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_an_open_clip_folder_gives_architecture_statistics_and_weights(tmp_path, weights):
    """The folder's open_clip_config.json rules the architecture (model.vision.name and overrides of another size
    do not matter) and pixel statistics; the rebuilt tower needs only what it stored."""
    import shutil

    clip = _tiny_open_clip(SIZE).eval()
    _open_clip_folder(tmp_path / "clip", clip, weights=weights)
    cfg = make_cfg("clip").model.vision
    cfg.name, cfg.overrides, cfg.pretrained = "ViT-L-14", {}, str(tmp_path / "clip")
    tower = build_vision_tower(cfg, SIZE)
    assert (tower.mean, tower.std, tower.out_dim) == ((0.5,) * 3, (0.25,) * 3, 24)
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(tower.backbone.state_dict()[key], value), key
    pixels = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(tower.eval()(pixels), clip.encode_image(pixels), atol=1e-6)
    shutil.rmtree(tmp_path / "clip")  # best/ rebuilds from the stored config, the folder gone
    rebuilt = build_vision_tower(cfg, SIZE, load_weights=False, config=tower.config)
    rebuilt.load_state_dict(tower.state_dict())
    assert (rebuilt.mean, rebuilt.std) == (tower.mean, tower.std)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(pixels), tower(pixels))


def test_a_folder_of_another_kind_is_named(tmp_path):
    cfg = make_cfg("clip").model.vision
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    cfg.pretrained = str(tmp_path)
    with pytest.raises(ConfigError, match=r"a transformers model folder: use model.vision.kind=hf"):
        build_vision_tower(cfg, SIZE)
    cfg = make_cfg("timm").model.vision
    cfg.pretrained = str(tmp_path)
    with pytest.raises(ConfigError, match=r"holds a transformers 'clip' model; use model.vision.kind=hf"):
        build_vision_tower(cfg, SIZE)
    (tmp_path / "config.json").write_text('{"architecture": "resnet50"}')
    with pytest.raises(ConfigError, match=r"timm weights of 'resnet50', not of model.vision.name="
                                          r"'vit_tiny_patch16_224'; set model.vision.name=resnet50"):
        build_vision_tower(cfg, SIZE)
    (tmp_path / "config.json").write_text('{"architecture": "vit_tiny_patch16_224"}')
    with pytest.raises(ConfigError, match=r"has no weights file \(looked for model.safetensors, pytorch_model.bin"):
        build_vision_tower(cfg, SIZE)


@pytest.mark.parametrize("layout", ["folder_bin", "sharded"])
def test_timm_folder_with_pytorch_model_bin_or_shards(tmp_path, layout):
    """A timm folder as distributed: config.json (architecture, pixel statistics) + pytorch_model.bin (read with
    weights_only=True), or safetensors shards behind an index."""
    import json

    import timm

    torch.manual_seed(4)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=SIZE, **TINY_TIMM)
    folder = tmp_path / "timm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 0,
        "pretrained_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}}))
    state = source.state_dict()
    if layout == "folder_bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        names = sorted(state)
        halves = {"model-1.safetensors": names[: len(names) // 2], "model-2.safetensors": names[len(names) // 2:]}
        for shard, keys in halves.items():
            save_file({k: state[k] for k in keys}, str(folder / shard))
        weight_map = {k: shard for shard, keys in halves.items() for k in keys}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    cfg = make_cfg("timm").model.vision
    cfg.pretrained = str(folder)
    tower = build_vision_tower(cfg, SIZE)
    assert (tower.mean, tower.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    for key, value in state.items():
        assert torch.equal(tower.backbone.state_dict()[key], value), key
    rebuilt = build_vision_tower(cfg, SIZE, load_weights=False, config=tower.config)
    assert (rebuilt.mean, rebuilt.std) == (tower.mean, tower.std)


# ----------------------------------------------------------------------------------------------------------------
# text tower


def test_bert_from_pretrained_dir(tmp_path, tiny_tokenizer):
    cfg = make_cfg().model.text
    torch.manual_seed(3)
    source = build_bert(cfg, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    source.save_pretrained(tmp_path / "bert")
    tiny_tokenizer.save_pretrained(tmp_path / "bert")
    cfg.pretrained = str(tmp_path / "bert")
    cfg.attn_implementation = "eager"
    bert = build_bert(cfg, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    assert bert.config._attn_implementation == "eager" and bert.pooler is None
    for key, value in source.state_dict().items():
        assert torch.equal(bert.state_dict()[key], value), key
    rebuilt = build_bert(cfg, len(tiny_tokenizer), 0, config=bert.config)  # from a run dir: weights not read
    assert not torch.equal(rebuilt.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    assert bert.config._attn_implementation == "eager"  # the given config is not modified


def test_bert_weights_load_strictly(tmp_path, tiny_tokenizer):
    """Every tensor of the BERT comes from the folder, or one error names what is missing or left over; the pooler
    and the pretraining heads of a BertForMaskedLM folder may be left over."""
    import json

    from safetensors.torch import load_file, save_file
    from transformers import BertForMaskedLM

    cfg = make_cfg().model.text
    source = build_bert(cfg, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    masked_lm = BertForMaskedLM(source.config)  # a folder as distributed: bert.* + cls.* (and no pooler)
    masked_lm.save_pretrained(tmp_path / "mlm")
    cfg.pretrained = str(tmp_path / "mlm")
    bert = build_bert(cfg, len(tiny_tokenizer), 0)
    for key, value in masked_lm.bert.state_dict().items():
        assert torch.equal(bert.state_dict()[key], value), key

    deeper = tmp_path / "deeper"  # config.json edited to one more layer than the weights have
    masked_lm.save_pretrained(deeper)
    config = json.loads((deeper / "config.json").read_text())
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))
    cfg.pretrained = str(deeper)
    with pytest.raises(ConfigError, match=r"model.text.pretrained: weights in .*deeper do not match the model: "
                                          r"\d+ missing \(encoder.layer.2"):
        build_bert(cfg, len(tiny_tokenizer), 0)

    holed = tmp_path / "holed"  # one tensor removed from the file
    masked_lm.save_pretrained(holed)
    state = load_file(holed / "model.safetensors")
    removed = next(k for k in state if "layer.1.output.dense.weight" in k)
    save_file({k: v for k, v in state.items() if k != removed}, holed / "model.safetensors", metadata={"format": "pt"})
    cfg.pretrained = str(holed)
    with pytest.raises(ConfigError, match=r"1 missing \(encoder.layer.1.output.dense.weight\)"):
        build_bert(cfg, len(tiny_tokenizer), 0)


def test_text_dropout_reaches_every_way_a_bert_is_built(tmp_path, tiny_tokenizer):
    cfg = make_cfg().model.text
    built = build_bert(cfg, len(tiny_tokenizer), 0)
    assert built.config.hidden_dropout_prob == 0.1  # null keeps BERT's own
    built.save_pretrained(tmp_path / "bert")
    cfg.dropout = 0.0
    from_dir = build_bert(dataclasses.replace(cfg, pretrained=str(tmp_path / "bert")), len(tiny_tokenizer), 0)
    for bert in (build_bert(cfg, len(tiny_tokenizer), 0), from_dir,
                 build_bert(cfg, len(tiny_tokenizer), 0, config=built.config)):
        assert bert.config.hidden_dropout_prob == bert.config.attention_probs_dropout_prob == 0.0
        bert.train()
        ids = torch.randint(5, len(tiny_tokenizer), (2, 8))
        assert torch.equal(bert(input_ids=ids).last_hidden_state, bert(input_ids=ids).last_hidden_state)
    assert built.config.hidden_dropout_prob == 0.1  # the given config is not modified
    with pytest.raises(ConfigError, match=r"model.text.dropout: must be in \[0, 1\)"):
        build_config(overrides=["model.text.dropout=1.5"])


def test_bert_bad_pretrained_dirs(tmp_path, tiny_tokenizer):
    cfg = make_cfg().model.text
    cases = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "gpt2": tmp_path / "gpt2"}
    cases["empty"].mkdir()
    cases["gpt2"].mkdir()
    (cases["gpt2"] / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 10}')
    for path in cases.values():
        cfg.pretrained = str(path)
        with pytest.raises(ConfigError, match=r"model.text.pretrained"):
            build_bert(cfg, len(tiny_tokenizer), 0)
    cfg.pretrained = str(cases["gpt2"])  # a decoder family: the error names the supported ones
    with pytest.raises(ConfigError, match=r"'gpt2' model cannot be the text tower.*bert, roberta, xlm-roberta"):
        build_bert(cfg, len(tiny_tokenizer), 0)
    nobert = tmp_path / "config_only"
    build_bert(make_cfg().model.text, len(tiny_tokenizer), 0).config.save_pretrained(nobert)
    cfg.pretrained = str(nobert)
    with pytest.raises(ConfigError, match=r"cannot load bert weights"):
        build_bert(cfg, len(tiny_tokenizer), 0)
    cfg.pretrained = None
    small = build_bert(cfg, 10, 0).config  # a 10-token vocabulary: smaller than the tokenizer's
    with pytest.raises(ConfigError, match=r"model.text: the tokenizer has"):
        build_bert(cfg, len(tiny_tokenizer), 0, config=small)


# ----------------------------------------------------------------------------------------------------------------
# classifier


@pytest.mark.parametrize("kind", ["clip", "timm"])
def test_outputs_shapes_and_broken_video(tiny_tokenizer, kind):
    model = build(tiny_tokenizer, make_cfg(kind))
    batch = make_batch(tiny_tokenizer)
    out = model(**batch)
    assert out["logits"].shape == (3, NUM_LV2) and out["logits_lv1"].shape == (3, NUM_LV1)
    assert out["logits_video"].shape == (3, NUM_LV2) and out["pooled"].shape == (3, 32)
    assert all(torch.isfinite(v).all() for v in out.values() if v is not None)
    # the video-less sample's video head sees the mean of zero frames = zeros, i.e. its bias
    assert torch.allclose(out["logits_video"][-1], model.video_head.fc.bias)
    batch["frame_mask"][:] = False  # a whole batch without frames
    out = model(**batch)
    assert all(torch.isfinite(v).all() for v in out.values() if v is not None)
    assert model(batch["input_ids"], batch["attention_mask"])["logits_video"] is None


def test_padded_frames_do_not_change_the_output(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg("clip"))
    batch = make_batch(tiny_tokenizer)
    ref = model(**batch)
    garbage = dict(batch, frames=batch["frames"].clone())
    noise = torch.randint(0, 256, garbage["frames"].shape, dtype=torch.uint8)
    garbage["frames"][~batch["frame_mask"]] = noise[~batch["frame_mask"]]
    out = model(**garbage)
    for key in ("logits", "logits_lv1", "logits_video", "pooled"):
        torch.testing.assert_close(out[key], ref[key])
    # the short video alone, with only its 2 real frames (no padding slots at all), gives the same logits
    alone = model(batch["input_ids"][:1], batch["attention_mask"][:1], batch["frames"][:1, :2],
                  batch["frame_mask"][:1, :2])
    torch.testing.assert_close(alone["logits"], ref["logits"][:1], atol=1e-5, rtol=1e-4)


def test_vision_tower_sees_only_valid_frames(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg("clip"))
    batch = make_batch(tiny_tokenizer)
    seen = []
    model.encoder.vision.register_forward_hook(lambda module, args, output: seen.append(args[0].shape))
    model(**batch)
    assert seen == [(int(batch["frame_mask"].sum()), 3, SIZE, SIZE)]  # one flat batch of the real frames


def test_eager_and_sdpa_agree(tiny_tokenizer):
    sdpa = build(tiny_tokenizer, make_cfg("clip"))
    eager_cfg = make_cfg("clip")
    eager_cfg.model.text.attn_implementation = "eager"
    eager = build(tiny_tokenizer, eager_cfg)
    eager.load_state_dict(sdpa.state_dict())
    batch = make_batch(tiny_tokenizer)
    torch.testing.assert_close(eager(**batch)["logits"], sdpa(**batch)["logits"], atol=1e-5, rtol=1e-4)


def test_gradients_reach_both_towers_and_the_projection(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg("clip")).train()
    out = model(**make_batch(tiny_tokenizer))
    (out["logits"].sum() + out["logits_lv1"].sum() + out["logits_video"].sum()).backward()
    parts = {"vision": model.encoder.vision.backbone.conv1.weight,
             "word embeddings": model.encoder.text.word_embeddings,
             "encoder": model.encoder.text.bert.encoder.layer[0].attention.self.query.weight,
             "projection": model.encoder.frame_embedder.proj.weight,
             "frame positions": model.encoder.frame_embedder.position.weight,
             "frame token type": model.encoder.text.bert.embeddings.token_type_embeddings.weight}
    for name, param in parts.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_text_mode_has_no_vision_and_ignores_frames(tiny_tokenizer):
    cfg = make_cfg("clip", mode="text")
    cfg.model.vision.pretrained = "/nonexistent/clip.pt"  # never read: no tower is built
    model = build(tiny_tokenizer, cfg)
    assert model.encoder.vision is None and model.encoder.frame_embedder is None and model.video_head is None
    batch = make_batch(tiny_tokenizer)
    out = model(**batch)
    assert out["logits_video"] is None
    other = dict(batch, frames=torch.randint(0, 256, batch["frames"].shape, dtype=torch.uint8))
    torch.testing.assert_close(model(**other)["logits"], out["logits"])
    torch.testing.assert_close(model(batch["input_ids"], batch["attention_mask"])["logits"], out["logits"])
    assert not parameter_groups(model)["vision"] and not parameter_groups(model)["fusion"]


def test_video_mode_ignores_the_text(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg("clip", mode="video"))
    batch = make_batch(tiny_tokenizer)
    ref = model(**batch)["logits"]
    other = make_batch(tiny_tokenizer, seed=5)
    text_changed = dict(batch, input_ids=other["input_ids"], attention_mask=torch.ones_like(batch["attention_mask"]))
    torch.testing.assert_close(model(**text_changed)["logits"], ref)
    frames_changed = dict(batch, frames=other["frames"])
    assert not torch.allclose(model(**frames_changed)["logits"][:2], ref[:2])


def test_feature_input(tiny_tokenizer):
    cfg = make_cfg("clip")
    cfg.data.frame_source = "feats"
    with pytest.raises(ConfigError, match=r"data.feat_dim"):
        build(tiny_tokenizer, cfg)
    model = build(tiny_tokenizer, cfg, feat_dim=20)
    assert model.encoder.vision is None and model.encoder.frame_embedder.proj.in_features == 20
    cfg.data.feat_dim = 20
    model = build(tiny_tokenizer, cfg).train()
    batch = make_batch(tiny_tokenizer)
    feats = torch.randn(3, FRAMES, 20).half()
    feats[~batch["frame_mask"]] = float("nan")  # garbage in the padding must not leak
    out = model(batch["input_ids"], batch["attention_mask"], feats, batch["frame_mask"])
    assert all(torch.isfinite(v).all() for v in out.values() if v is not None)
    out["logits"].sum().backward()
    assert model.encoder.frame_embedder.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling(tiny_tokenizer, pooling):
    model = build(tiny_tokenizer, make_cfg("clip", pooling=pooling))
    batch = make_batch(tiny_tokenizer)
    fused = model.encoder.encode(**batch)
    assert fused.hidden.shape == (3, 10 + FRAMES, 32) and fused.num_text == 10
    pooled = model(**batch)["pooled"]
    if pooling == "cls":
        torch.testing.assert_close(pooled, fused.hidden[:, 0])
    else:
        n = fused.mask.sum(1, keepdim=True)
        torch.testing.assert_close(pooled, (fused.hidden * fused.mask[..., None]).sum(1) / n)


def test_optional_heads(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg("clip", lv1_head=False, aux_video_weight=0.0))
    out = model(**make_batch(tiny_tokenizer))
    assert out["logits_lv1"] is None and out["logits_video"] is None


@pytest.mark.parametrize(("kind", "mode", "source"), [
    ("clip", "fusion", "zip"), ("timm", "video", "zip"), ("clip", "text", "zip"), ("clip", "fusion", "feats")])
def test_parameter_groups_partition_all_parameters(tiny_tokenizer, kind, mode, source):
    cfg = make_cfg(kind, mode=mode)
    cfg.data.frame_source, cfg.data.feat_dim = source, 16
    model = build(tiny_tokenizer, cfg)
    groups = parameter_groups(model)
    assert set(groups) == {"vision", "text", "fusion", "heads"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert all(groups[name] for name in ("text", "heads"))
    assert bool(groups["vision"]) == (mode != "text" and source != "feats")
    assert model.param_groups().keys() == groups.keys()
    summary = model_summary(model)
    assert "vision" in summary and "total" in summary


def test_rebuild_from_run_dir_without_pretrained_files(tiny_tokenizer, tmp_path):
    model = build(tiny_tokenizer, make_cfg("clip"))
    cfg = make_cfg("clip")
    cfg.model.vision.pretrained = str(tmp_path / "gone.pt")
    cfg.model.text.pretrained = str(tmp_path / "gone_bert")
    rebuilt = build(tiny_tokenizer, cfg, text_config=model.encoder.text.bert.config, load_pretrained=False)
    rebuilt.load_state_dict(model.state_dict())
    batch = make_batch(tiny_tokenizer)
    torch.testing.assert_close(rebuilt(**batch)["logits"], model(**batch)["logits"])


def test_grad_checkpointing_gives_the_same_gradients(tiny_tokenizer):
    batch = make_batch(tiny_tokenizer)
    grads = []
    for enable in (False, True):
        model = build(tiny_tokenizer, make_cfg("clip", dropout=0.0))
        model.set_grad_checkpointing(enable)
        assert model.encoder.text.bert.encoder.layer[0].gradient_checkpointing is enable
        assert model.encoder.vision.backbone.transformer.grad_checkpointing is enable
        model.train()
        for module in model.modules():  # no dropout: both passes compute the same function
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model(**batch)["logits"].sum().backward()
        grads.append(model.encoder.vision.backbone.conv1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_max_text_len_beyond_positions(tiny_tokenizer):
    cfg = make_cfg("clip")
    cfg.data.max_text_len = 64
    with pytest.raises(ConfigError, match=r"data.max_text_len"):
        build(tiny_tokenizer, cfg)


# ----------------------------------------------------------------------------------------------------------------
# multi-sample dropout, repeats (R-Drop), returned frame features


def test_multi_sample_dropout_gives_one_loss_per_mask(tiny_tokenizer):
    from mmcls.engine.losses import Criterion

    model = build(tiny_tokenizer, make_cfg(dropout=0.5, dropout_samples=4)).train()
    batch = make_batch(tiny_tokenizer)
    out = model(**batch)
    samples = out["logits_samples"]
    assert samples.shape == (4, 3, NUM_LV2) and out["logits_lv1_samples"].shape == (4, 3, NUM_LV1)
    assert not torch.allclose(samples[0], samples[1])  # independent dropout masks
    torch.testing.assert_close(out["logits"], samples.mean(0))
    # the loss is the mean of the K per-mask losses, not the loss of the mean logits (a plain, weaker dropout)
    cfg = make_cfg(dropout=0.5, dropout_samples=4)
    criterion = Criterion(NUM_LV2, NUM_LV1, cfg.train.loss, cfg.model)
    labels = {"labels": torch.tensor([0, 1, 2]), "labels_lv1": torch.tensor([0, 1, 2]),
              "frame_mask": batch["frame_mask"]}
    loss = criterion(out, labels)["loss_lv2"]
    per_mask = [torch.nn.functional.cross_entropy(sample, labels["labels"]) for sample in samples]
    torch.testing.assert_close(loss, torch.stack(per_mask).mean())
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(out["logits"], labels["labels"]))
    model.eval()
    evaluated = model(**batch)
    assert evaluated["logits_samples"] is None  # evaluation: dropout is the identity, one pass


def test_repeats_encode_the_batch_twice_with_one_vision_pass(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    batch = make_batch(tiny_tokenizer)
    calls = []
    model.encoder.vision.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    single = model(**batch)
    doubled = model(**batch, repeats=2)
    assert len(calls) == 2 and calls[0] == calls[1]  # the vision tower ran once per forward, on the same frames
    assert doubled["logits"].shape == (6, NUM_LV2)
    # in eval mode (no dropout) both copies equal the single pass
    assert torch.allclose(doubled["logits"][:3], single["logits"], atol=1e-5)
    assert torch.allclose(doubled["logits"][3:], single["logits"], atol=1e-5)
    model.train()
    torch.manual_seed(0)
    train_doubled = model(**batch, repeats=2)["logits"]
    assert not torch.allclose(train_doubled[:3], train_doubled[3:])  # independent dropout in the two copies


def test_frame_features_fed_back_skip_the_vision_tower(tiny_tokenizer):
    model = build(tiny_tokenizer, make_cfg())
    batch = make_batch(tiny_tokenizer)
    out = model(**batch)
    features = out["frame_features"]
    assert features.shape == (3, FRAMES, model.encoder.vision.out_dim)
    calls = []
    model.encoder.vision.register_forward_hook(lambda *args: calls.append(1))
    again = model(**batch, features=features)
    assert not calls
    assert torch.allclose(again["logits"], out["logits"], atol=1e-5)
