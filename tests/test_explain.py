"""Explanations: Grad-CAM picks the right activations in open_clip and timm towers, and tools/explain.py writes a
heatmap figure and token attributions for a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcls.cli import run_main
from mmcls.explain import SpatialCapture, _grid_tokens, token_label, top_tokens
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_grid_tokens_finds_the_class_and_register_prefix():
    assert _grid_tokens(17) == (1, 4) and _grid_tokens(16) == (0, 4) and _grid_tokens(50) == (1, 7)
    assert _grid_tokens(3) is None and _grid_tokens(1) is None


@pytest.mark.parametrize("name", ["vit", "convnet"])
def test_grad_cam_reads_the_last_activations_that_reach_the_output(name):
    """A pooled-class-token ViT: the last block's patch outputs get no gradient, so the map comes from the tokens
    entering the last attention. A convnet: the last feature map. Either way one map per frame, with signal."""
    import timm

    torch.manual_seed(0)
    if name == "vit":
        backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32,
                                     patch_size=8, embed_dim=32, depth=2, num_heads=2, global_pool="token")
        side = 4
    else:
        backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
        side = 2  # 64 px / stride 32
    frames = 3
    pixels = torch.randn(frames, 3, 32 if name == "vit" else 64, 32 if name == "vit" else 64)
    expected: list[torch.Tensor] = []  # what Grad-CAM should read: the last block's norm1 output / the last stage
    layer = backbone.blocks[-1].norm1 if name == "vit" else backbone.layer4
    layer.register_forward_hook(lambda module, inputs, output: expected.append(output))
    capture = SpatialCapture(backbone, frames)
    backbone(pixels).sum().backward()
    capture.close()
    maps = capture.maps()
    assert maps.shape == (frames, side, side) and (maps >= 0).all() and maps.sum() > 0
    assert capture.chosen is expected[-1]
    if name == "vit":  # the tokens leaving the last block reached nothing: the map is not taken from them
        last_block = [t for t in capture.outputs if t.ndim == 3][-1]
        assert last_block.grad is None or last_block.grad[:, 1:].abs().max() == 0


def test_open_clip_tower_reads_the_tokens_entering_the_last_attention(tiny_model):
    from mmcls.model_folder import load_portable

    backbone = load_portable(tiny_model).model.encoder.vision.backbone
    expected: list[torch.Tensor] = []
    backbone.transformer.resblocks[-1].ln_1.register_forward_hook(lambda m, i, output: expected.append(output))
    capture = SpatialCapture(backbone, 2)
    backbone(torch.randn(2, 3, 24, 24)).sum().backward()
    capture.close()
    maps = capture.maps()
    assert maps.shape == (2, 3, 3) and capture.chosen is expected[-1] and maps.sum() > 0  # 24 px / patch 8


def test_token_helpers():
    tokens = [("[CLS]", 5.0), ("饭", 0.3), ("new", -0.5), ("a", 0.1), ("[SEP]", -9.0)]
    assert top_tokens(tokens, 2) == [("new", -0.5), ("饭", 0.3)]  # by magnitude, special tokens left out
    assert token_label("饭", readable=False) == "U+996D" and token_label("饭", readable=True) == "饭"


@pytest.fixture(scope="module")
def tiny_model(synthetic_root, tmp_path_factory):
    from mmcls.config import build_config
    from mmcls.engine.finetune import finetune

    run = tmp_path_factory.mktemp("explain") / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2")))
    return run / "best"


def test_explain_tool_writes_heatmaps_and_token_attributions(tiny_model, synthetic_root, tmp_path, capsys):
    from mmcls.commands import explain

    records = json.loads((synthetic_root / "annotations" / "test.json").read_text(encoding="utf-8"))
    faults = json.loads((synthetic_root / "faults.json").read_text(encoding="utf-8"))["test"]
    readable = next(r["id"] for r in records if r["id"] not in faults)
    broken = next(vid for vid, kind in faults.items() if kind == "missing_video")
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--id", readable, "--id", broken, "--out", str(out),
            f"data.root={synthetic_root}"]
    assert run_main(explain.main, argv) == 0
    report = json.loads((out / f"explain_{readable}.json").read_text(encoding="utf-8"))
    categories = json.loads((tiny_model / "categories.json").read_text())["lv2_ids"]
    assert report["category"] == report["predicted"] in categories and 0 < report["probability"] <= 1
    assert report["frames"] == 4 and report["video_error"] is None  # data.max_frames=4 in the tiny config
    peaks = report["heatmap_peak_per_frame"]  # normalised over the video: the hottest frame peaks at 1
    assert len(peaks) == 4 and max(peaks) == 1.0 and min(peaks) >= 0
    assert report["tokens"][0]["token"] == "[CLS]" and all(np.isfinite(t["attribution"]) for t in report["tokens"])
    assert any(t["attribution"] != 0 for t in report["tokens"])
    from PIL import Image

    with Image.open(out / f"explain_{readable}.png") as image:
        assert image.format == "PNG" and image.width > 400
    no_video = json.loads((out / f"explain_{broken}.json").read_text(encoding="utf-8"))
    assert no_video["frames"] == 0 and no_video["video_error"]  # explained from its text alone
    assert f"{readable}: class" in capsys.readouterr().out

    other = next(c for c in categories if c != report["predicted"])
    assert run_main(explain.main, [*argv[:4], "--category", other, "--out", str(out), argv[-1]]) == 0
    asked = json.loads((out / f"explain_{readable}.json").read_text(encoding="utf-8"))
    assert asked["category"] == other and asked["probability"] <= report["probability"]


def test_explain_errors_are_one_line(tiny_model, synthetic_root, tmp_path, capsys):
    from mmcls.commands import explain

    base = ["--model", str(tiny_model), "--out", str(tmp_path), f"data.root={synthetic_root}"]
    assert run_main(explain.main, [*base, "--id", "nope"]) == 2
    assert "--id: nope not in data.test" in capsys.readouterr().err
    records = json.loads((synthetic_root / "annotations" / "test.json").read_text(encoding="utf-8"))
    assert run_main(explain.main, [*base, "--id", records[0]["id"], "--category", "9999"]) == 2
    assert "--category: '9999' is not a class" in capsys.readouterr().err


def test_a_video_only_model_is_explained_by_its_frames_alone(tiny_model, synthetic_root):
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import AnnotationSet, load_split
    from mmcls.explain import explain_video
    from mmcls.model_folder import load_portable

    loaded = load_portable(tiny_model, [f"data.root={synthetic_root}"])
    loaded.model.encoder.mode = "video"  # the same weights read frames only ([CLS] [SEP] replaces the text)
    split = load_split(loaded.cfg.data, "test")
    faults = json.loads((synthetic_root / "faults.json").read_text(encoding="utf-8"))["test"]
    record = next(r for r in split.records if r.id not in faults)
    dataset = build_dataset(loaded.cfg.data, AnnotationSet(split.folder, [record]), loaded.tokenizer, None, train=False)
    explanation = explain_video(loaded, next(iter(build_dataloader(dataset, loaded.cfg.data, 1))))
    assert explanation.tokens == [] and explanation.heatmaps is not None and explanation.heatmaps.max() == 1.0
