"""model.temporal: frame differences through a zero-initialised widened stem, and the temporal shift (TSM) inside the
tower's blocks. Each switch tells a video from its reverse where the base model (frame positions zeroed) cannot;
frame differences start exactly as the tower without them; the widened stem loads 3-channel weights; model folders
rebuild both; neither crosses from one video to the next or reaches padding frames."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mmcls.config import build_config
from mmcls.data.categories import CategorySpace
from mmcls.errors import ConfigError
from mmcls.model_folder import load_portable, save_portable
from mmcls.models import VISION_BUILDERS, VisionTower, build_model
from mmcls.models.temporal import FrameLayout, WidenedConv2d, frame_differences, shift_channels
from mmcls.models.weights import load_exact
from tests.helpers import NUM_LV1, NUM_LV2, build, make_batch, make_cfg

LV2_IDS = ["0101", "0102", "0201", "0202", "0301", "0302", "0303"]
RESNET = {"kind": "timm", "name": "test_resnet", "overrides": {}}  # timm's tiny ResNet: a CNN tower


def _cfg(kind: str = "clip", frame_diff: str = "none", shift: float = 0.0, vision: dict | None = None):
    cfg = make_cfg("timm" if kind == "timm" else "clip")
    for key, value in (vision or {}).items():
        setattr(cfg.model.vision, key, value)
    cfg.model.temporal.frame_diff, cfg.model.temporal.shift = frame_diff, shift
    return cfg


def _kind_cfg(kind: str, **temporal):
    return _cfg(kind, vision=RESNET, **temporal) if kind == "resnet" else _cfg(kind, **temporal)


def _reversed(batch: dict) -> dict:
    """Each video's valid frames in reverse order."""
    frames = batch["frames"].clone()
    for i, mask in enumerate(batch["frame_mask"]):
        valid = int(mask.sum())
        frames[i, :valid] = frames[i, :valid].flip(0)
    return {**batch, "frames": frames}


@torch.no_grad()
def _logits(model, batch: dict) -> torch.Tensor:
    return model(**batch)["logits"]


def _order_blind(model):
    """No learned frame positions: without a temporal switch the model cannot see frame order at all. (And no
    residual branch zeroed at init, as timm's ResNets do, so a trained tower's blocks are mimicked.)"""
    with torch.no_grad():
        model.encoder.frame_embedder.position.weight.zero_()
        for module in model.encoder.vision.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
    return model


def _stem(model) -> WidenedConv2d:
    return next(m for m in model.encoder.vision.modules() if isinstance(m, WidenedConv2d))


def _gap(model, batch) -> float:
    return (_logits(model, batch) - _logits(model, _reversed(batch))).abs().max().item()


# ----------------------------------------------------------------------------------------------------------------
# the pieces


def test_the_layout_joins_only_neighbouring_frames_of_one_video():
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    layout = FrameLayout.of_mask(mask)  # rows: video 0 frames 0, 1; video 2 frames 0, 1, 2
    assert layout.has_prev.tolist() == [False, True, False, True, True]
    assert layout.has_next.tolist() == [True, False, True, True, False]
    x = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    diff = frame_differences(x, layout, "rgb")
    assert diff[:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert frame_differences(x, layout, "grey").shape == (5, 1, 2, 2)
    tokens = torch.arange(5.0).view(5, 1, 1).expand(5, 2, 8)  # [n, L, C]: channel c of frame i holds i
    shifted = shift_channels(tokens, 2, layout, channel_dim=-1)
    assert shifted[:, 0, 0].tolist() == [0.0, 0.0, 0.0, 2.0, 3.0]  # from the previous frame of the video
    assert shifted[:, 0, 2].tolist() == [1.0, 0.0, 3.0, 4.0, 0.0]  # from the next one
    assert torch.equal(shifted[..., 4:], tokens[..., 4:])
    sequence_first = shift_channels(tokens.transpose(0, 1), 2, layout, channel_dim=-1, batch_dim=1)
    assert torch.equal(sequence_first.transpose(0, 1), shifted)


# ----------------------------------------------------------------------------------------------------------------
# frame differences


@pytest.mark.parametrize("kind", ["clip", "timm", "resnet"])
def test_frame_differences_start_unchanged_and_then_tell_a_video_from_its_reverse(tiny_tokenizer, kind):
    batch = make_batch(tiny_tokenizer)
    base = _order_blind(build(tiny_tokenizer, _kind_cfg(kind)))
    assert _gap(base, batch) < 1e-5  # the base model cannot see order
    model = _order_blind(build(tiny_tokenizer, _kind_cfg(kind, frame_diff="rgb")))
    stem = _stem(model)
    assert stem.weight.shape[1] == 6 and not stem.weight[:, 3:].any()
    assert torch.equal(_logits(model, batch), _logits(base, batch))  # zero-initialised: exactly the base model
    with torch.no_grad():
        stem.weight[:, 3:].normal_(std=float(stem.weight[:, :3].std()), generator=torch.Generator().manual_seed(0))
    assert _gap(model, batch) > 1e-3


def test_grey_differences_add_one_channel_and_tell_the_order(tiny_tokenizer):
    model = _order_blind(build(tiny_tokenizer, _cfg(frame_diff="grey")))
    stem = _stem(model)
    assert stem.weight.shape[1] == 4
    with torch.no_grad():
        stem.weight[:, 3:].normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    assert _gap(model, make_batch(tiny_tokenizer)) > 1e-3


def test_the_widened_stem_learns_and_stays_at_depth_zero(tiny_tokenizer):
    model = build(tiny_tokenizer, _cfg(frame_diff="rgb")).train()
    model(**make_batch(tiny_tokenizer))["logits"].sum().backward()
    stem = _stem(model)
    assert stem.weight.grad[:, 3:].abs().sum() > 0  # the zero weights get a gradient: they can learn
    assert model.encoder.vision.layer_depths()["backbone.conv1.weight"] == 0


def test_the_widened_stem_loads_a_three_channel_pretrained_file(tiny_tokenizer, tmp_path):
    plain = build(tiny_tokenizer, _cfg())
    with torch.no_grad():
        for p in plain.encoder.vision.parameters():
            p.add_(0.01)  # weights no seed reproduces
    file = tmp_path / "visual.safetensors"
    save_file({k: v.contiguous() for k, v in plain.encoder.vision.backbone.state_dict().items()}, str(file))
    base = build(tiny_tokenizer, _cfg(vision={"pretrained": str(file)}))
    widened = build(tiny_tokenizer, _cfg(frame_diff="rgb", vision={"pretrained": str(file)}))
    stem = _stem(widened)
    assert torch.equal(stem.weight[:, :3], plain.encoder.vision.backbone.conv1.weight)
    assert not stem.weight[:, 3:].any()
    batch = make_batch(tiny_tokenizer)
    assert torch.equal(_logits(widened, batch), _logits(base, batch))
    # a 3-channel state (a pretraining folder made without the switch, model.init_from) loads padded with zeros
    fresh = build(tiny_tokenizer, _cfg(frame_diff="rgb")).encoder.vision
    load_exact(fresh, plain.encoder.vision.state_dict(), "model.init_from", "folder")
    assert torch.equal(_stem(widened).weight, next(m for m in fresh.modules() if isinstance(m, WidenedConv2d)).weight)


@pytest.mark.parametrize("temporal", [{"frame_diff": "rgb"}, {"shift": 0.125}, {"frame_diff": "grey", "shift": 0.25}])
def test_model_folders_rebuild_the_switches(tiny_tokenizer, tmp_path, temporal):
    cfg = _cfg(**temporal)
    model = build(tiny_tokenizer, cfg)
    if temporal.get("frame_diff"):
        with torch.no_grad():
            _stem(model).weight[:, 3:].normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    save_portable(tmp_path / "best", model, cfg, CategorySpace.build(LV2_IDS), tiny_tokenizer)
    loaded = load_portable(tmp_path / "best")
    assert loaded.cfg.model.temporal == cfg.model.temporal
    batch = make_batch(tiny_tokenizer)
    assert torch.equal(_logits(loaded.model, batch), _logits(model, batch))
    assert loaded.model.encoder.vision.fingerprint() != build(tiny_tokenizer, _cfg()).encoder.vision.fingerprint()


# ----------------------------------------------------------------------------------------------------------------
# the temporal shift


@pytest.mark.parametrize("kind", ["clip", "timm", "resnet"])
def test_the_shift_tells_a_video_from_its_reverse(tiny_tokenizer, kind):
    batch = make_batch(tiny_tokenizer)
    model = _order_blind(build(tiny_tokenizer, _kind_cfg(kind, shift=0.125)))
    assert model.encoder.vision.shift.targets  # hooked into the blocks
    assert _gap(model, batch) > 1e-3
    assert _gap(_order_blind(build(tiny_tokenizer, _kind_cfg(kind))), batch) < 1e-5


@pytest.mark.parametrize("temporal", [{"shift": 0.25}, {"frame_diff": "rgb"}])
def test_no_switch_crosses_videos_or_reaches_padding(tiny_tokenizer, temporal):
    model = build(tiny_tokenizer, _cfg(**temporal))
    if temporal.get("frame_diff"):
        with torch.no_grad():
            _stem(model).weight[:, 3:].normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    encoder = model.encoder
    batch = make_batch(tiny_tokenizer)  # video 0: 2 frames then padding, video 1: 4 frames
    frames, mask = batch["frames"], batch["frame_mask"]
    with torch.no_grad():
        together = encoder.frame_features(frames, mask)
        alone = [encoder.frame_features(frames[i:i + 1], mask[i:i + 1]) for i in range(2)]
        noisy = frames.clone()
        noisy[~mask] = 255  # whatever the padding holds
        padded = encoder.frame_features(noisy, mask)
    for i in range(2):
        torch.testing.assert_close(together[i], alone[i][0], rtol=1e-5, atol=1e-5)
    assert torch.equal(padded, together)
    assert together[0, 2:].abs().sum() == 0


def test_the_shift_survives_gradient_checkpointing_and_copies(tiny_tokenizer):
    cfg = _cfg(shift=0.125)
    batch = make_batch(tiny_tokenizer)
    grads = []
    for checkpointing in (False, True):
        model = build(tiny_tokenizer, cfg).train()
        model.encoder.set_grad_checkpointing(checkpointing)
        torch.manual_seed(1)
        model(**batch)["logits"].sum().backward()
        grads.append(model.encoder.vision.backbone.conv1.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
    model = build(tiny_tokenizer, cfg)
    twin = copy.deepcopy(model)  # as EMA and SWA copy a model: the copy's hooks read the copy's layout
    _logits(twin, batch)
    assert twin.encoder.vision.shift.layout is not None and model.encoder.vision.shift.layout is None
    assert torch.equal(_logits(twin, batch), _logits(model, batch))


def test_pretraining_uses_the_same_temporal_encoder(tiny_tokenizer):
    from mmcls.models import build_pretrainer

    cfg = _cfg(frame_diff="rgb", shift=0.125)
    for task in ("mfm", "itm", "itc", "order"):
        if hasattr(cfg.pretrain, f"{task}_weight"):
            setattr(cfg.pretrain, f"{task}_weight", 0.0)
    torch.manual_seed(0)
    model = build_pretrainer(cfg, tiny_tokenizer).train()
    model.encoder.set_grad_checkpointing(True)
    batch = make_batch(tiny_tokenizer)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2] = batch["input_ids"][:, 2]
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][:, 2] = tiny_tokenizer.mask_token_id
    model(**batch, mlm_labels=labels)["loss_mlm"].backward()
    assert model.encoder.vision.shift is not None and _stem(model).weight.grad[:, 3:].abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------
# what cannot work is refused at build time


def _blockless_builder(cfg, frame_size, load_weights=True, config=None) -> VisionTower:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * frame_size * frame_size, 6))
    return VisionTower(backbone, 6, (0.5,) * 3, (0.25,) * 3, kind=cfg.kind, name=cfg.name,
                       depths={name: 0 for name, _ in backbone.named_parameters()})


@pytest.mark.parametrize("temporal, key", [({"shift": 0.125}, "shift"), ({"frame_diff": "rgb"}, "frame_diff")])
def test_a_tower_that_cannot_take_a_switch_is_refused(monkeypatch, tiny_tokenizer, temporal, key):
    monkeypatch.setitem(VISION_BUILDERS, "plain", _blockless_builder)
    cfg = _cfg(vision={"kind": "plain", "name": "linear", "overrides": {}}, **temporal)
    with pytest.raises(ConfigError, match=rf"^model\.temporal\.{key}: the plain vision tower linear has no "):
        build_model(cfg, NUM_LV2, NUM_LV1, tiny_tokenizer)


def test_config_checks(tiny_tokenizer):
    cfg = _cfg(shift=0.01)  # 1% of the 32 channels of the tiny ViT is no channel
    with pytest.raises(ConfigError, match=r"^model\.temporal\.shift: 0\.01 of 32 channels"):
        build_model(cfg, NUM_LV2, NUM_LV1, tiny_tokenizer)
    with pytest.raises(ConfigError, match=r"^model\.temporal\.shift: must be in \[0\.0, 0\.5\]"):
        build_config(overrides=["model.temporal.shift=0.6"])
    feats = _cfg(frame_diff="rgb")
    feats.data.frame_source, feats.data.feat_dim = "feats", 8
    with pytest.raises(ConfigError, match=r"^model\.temporal\.frame_diff: works inside the vision tower on pixel "):
        build_model(feats, NUM_LV2, NUM_LV1, tiny_tokenizer)


@pytest.mark.parametrize("family", ["vit", "clip"])
def test_transformers_towers_take_both_switches(tmp_path, family):
    import transformers as hf

    from mmcls.config import VisionConfig
    from mmcls.models.vision import build_vision_tower

    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    made = hf.ViTModel(hf.ViTConfig(**sizes)) if family == "vit" else hf.CLIPVisionModel(hf.CLIPVisionConfig(**sizes))
    made.save_pretrained(tmp_path / family)
    cfg = VisionConfig(kind="hf", pretrained=str(tmp_path / family))
    plain, tower = build_vision_tower(cfg, 32).eval(), build_vision_tower(cfg, 32).eval()
    tower.set_temporal("rgb", 0.125)
    assert len(tower.shift.targets) == 2
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    video = FrameLayout.of_mask(torch.ones(1, 4, dtype=torch.bool))
    with torch.no_grad():
        tower.shift.fraction = 0.0  # the widened stem alone: exactly the plain tower
        assert torch.equal(tower(pixels, video), plain(pixels))
        tower.shift.fraction = 0.125
        forward, backward = tower(pixels, video), tower(pixels.flip(0), video).flip(0)
    assert (forward - backward).abs().max() > 1e-4
