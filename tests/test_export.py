"""tools/export.py: a model folder as one ONNX graph, run by ONNX Runtime through the prediction path.

Parity for every tower kind (open_clip, timm ViT and CNN, transformers CLIP and SigLIP, the temporal switches, text
and video modes, cached features), identical submissions, a mixed ensemble, and the errors a user can cause."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as hf

from mmcls.cli import run_main
from mmcls.config import Config, build_config
from mmcls.data.categories import CategorySpace
from mmcls.deploy.onnx_export import FP16_TOLERANCE, FP32_TOLERANCE, INT8_TOLERANCE, ExportError, export_onnx
from mmcls.deploy.onnx_runtime import OnnxClassifier
from mmcls.deploy.spec import EXPORT_FILE, ExportSpec
from mmcls.errors import UserError
from mmcls.logits import softmax
from mmcls.model_folder import load_for_inference, save_portable
from tests.helpers import FRAMES, NUM_LV2, SIZE, build, make_batch, make_cfg, tiny_overrides

CATEGORIES = ["0101", "0102", "0103", "0201", "0202", "0301", "0302"]
HF_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "image_size": SIZE, "patch_size": 8}
HF_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
           "vocab_size": 64, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _hf_folder(root: Path, family: str) -> Path:
    """A tiny transformers CLIP or SigLIP model saved with its image processor."""
    folder = root / family
    if not folder.is_dir():
        torch.manual_seed(0)
        if family == "clip":
            model = hf.CLIPModel(hf.CLIPConfig(vision_config=HF_VISION, text_config=HF_TEXT, projection_dim=24))
            processor = hf.CLIPImageProcessor(size={"shortest_edge": SIZE},
                                              crop_size={"height": SIZE, "width": SIZE})
        else:
            model = hf.SiglipModel(hf.SiglipConfig(vision_config=HF_VISION, text_config=HF_TEXT))
            processor = hf.SiglipImageProcessor(size={"height": SIZE, "width": SIZE})
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return folder


# case -> (vision kind, model overrides): every tower kind, the temporal switches, every mode
CASES = {
    "open_clip ViT, frame differences and shift": ("clip", {"temporal": {"frame_diff": "rgb", "shift": 0.25}}),
    "timm ViT": ("timm", {}),
    "timm CNN, grey differences and shift": ("timm_cnn", {"temporal": {"frame_diff": "grey", "shift": 0.25}}),
    "transformers CLIP": ("hf_clip", {}),
    "transformers SigLIP": ("hf_siglip", {}),
    "text mode": ("clip", {"mode": "text"}),
    "video mode": ("clip", {"mode": "video"}),
}


def _case_cfg(kind: str, model: dict, hf_root: Path) -> Config:
    cfg = make_cfg("timm" if kind.startswith("timm") else "clip", model.get("mode", "fusion"))
    if kind == "timm_cnn":
        cfg.model.vision.name, cfg.model.vision.overrides = "resnet10t", {}
    if kind.startswith("hf_"):
        family = kind.removeprefix("hf_")
        cfg.model.vision = dataclasses.replace(cfg.model.vision, kind="hf", pretrained=str(_hf_folder(hf_root, family)),
                                               overrides={"pooling": "mean"} if family == "siglip" else {})
    if "temporal" in model:
        cfg.model.temporal = dataclasses.replace(cfg.model.temporal, **model["temporal"])
    return cfg


@pytest.fixture(scope="module")
def hf_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf_towers")


def _probabilities(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return softmax(model(**batch)["logits"].float().numpy())


@pytest.mark.parametrize("case", list(CASES))
def test_the_graph_computes_the_model_for_every_tower_kind(case, tmp_path, hf_root, tiny_tokenizer):
    kind, model_keys = CASES[case]
    cfg = _case_cfg(kind, model_keys, hf_root)
    model = build(tiny_tokenizer, cfg)
    save_portable(tmp_path / "best", model, cfg, CategorySpace.build(CATEGORIES), tiny_tokenizer)
    result = export_onnx(tmp_path / "best", tmp_path / "onnx")
    assert result.spec.parity is not None and result.spec.parity <= FP32_TOLERANCE
    assert result.spec.frames == ("none" if cfg.model.mode == "text" else "pixels")
    loaded = load_for_inference(tmp_path / "onnx")
    assert loaded.exported and isinstance(loaded.model, OnnxClassifier)
    for seed, frames in ((0, FRAMES), (1, FRAMES - 1)):  # a short video, a video without frames; fewer frames
        batch = make_batch(tiny_tokenizer, batch=4, frames=frames, seed=seed)
        batch["attention_mask"][1, 2:] = 0  # empty text: [CLS] [SEP]
        expected = _probabilities(model, batch)
        got = _probabilities(loaded.model, batch)
        assert np.abs(got - expected).max() <= FP32_TOLERANCE
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_a_batch_without_any_valid_frame(tmp_path, tiny_tokenizer):
    cfg = make_cfg("clip")
    cfg.model.temporal = dataclasses.replace(cfg.model.temporal, frame_diff="rgb")
    model = build(tiny_tokenizer, cfg)
    save_portable(tmp_path / "best", model, cfg, CategorySpace.build(CATEGORIES), tiny_tokenizer)
    export_onnx(tmp_path / "best", tmp_path / "onnx")
    batch = make_batch(tiny_tokenizer, batch=2)
    batch["frame_mask"][:] = False
    loaded = load_for_inference(tmp_path / "onnx")
    assert np.abs(_probabilities(loaded.model, batch) - _probabilities(model, batch)).max() <= FP32_TOLERANCE


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    from mmcls.engine.finetune import finetune

    run = tmp_path_factory.mktemp("export") / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=3", "model.temporal.frame_diff=rgb",
                                             "data.flip_label_map=flip_label_map.json")))
    return run / "best"


def _blank_text_test_split(root: Path, dest: Path) -> Path:
    """The synthetic test annotations with the text of every fourth video removed."""
    records = json.loads((root / "annotations" / "test.json").read_text(encoding="utf-8"))
    for record in records[::4]:
        record.update(title="", asr="", ocr=[])
    dest.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return dest


def test_the_submission_is_identical_through_the_commands(trained, synthetic_root, tmp_path, capsys):
    from mmcls.commands import export, predict

    data = [f"data.root={synthetic_root}", f"data.test={_blank_text_test_split(synthetic_root, tmp_path / 't.json')}"]
    assert run_main(export.main, ["--model", str(trained), "--out", str(tmp_path / "onnx")]) == 0
    assert "ONNX Runtime vs torch: max class-probability difference" in capsys.readouterr().out
    for name, model in (("torch", trained), ("onnx", tmp_path / "onnx")):
        argv = ["--model", str(model), "--output", str(tmp_path / f"{name}.csv"), "--logits",
                str(tmp_path / f"{name}.npy"), "--precision", "no", *data]
        assert run_main(predict.main, argv) == 0
    assert "videos unreadable" in capsys.readouterr().out  # the synthetic test split has broken videos
    assert (tmp_path / "onnx.csv").read_text() == (tmp_path / "torch.csv").read_text()
    difference = np.abs(softmax(np.load(tmp_path / "onnx.npy")) - softmax(np.load(tmp_path / "torch.npy")))
    assert difference.max() <= FP32_TOLERANCE
    # test-time flips (with the flip map the export carries) and an ensemble mixing both kinds
    for name, models in (("tta_torch", [trained]), ("tta_mixed", [trained, tmp_path / "onnx"])):
        argv = [a for m in models for a in ("--model", str(m))]
        argv += ["--output", str(tmp_path / f"{name}.csv"), "--tta-hflip", "--precision", "no", *data]
        assert run_main(predict.main, argv) == 0
    assert (tmp_path / "tta_mixed.csv").read_text() == (tmp_path / "tta_torch.csv").read_text()
    assert (tmp_path / "onnx" / "flip_label_map.json").is_file()


def test_a_features_graph_reads_cached_features(trained, synthetic_root, tmp_path):
    from mmcls.workflow.features import extract_features, load_tower
    from mmcls.workflow.predict import predict

    tower = load_tower(model=trained)
    extract_features(tower.model, tower.cfg.data, "test", tmp_path / "feats" / "test.zip",
                     max_frames=tower.cfg.data.max_frames, batch_size=8, mixed_precision="no", progress=False)
    result = export_onnx(trained, tmp_path / "onnx", features=True)
    assert result.spec.frames == "features" and result.spec.feat_dim == tower.model.vision.out_dim
    data = [f"data.root={synthetic_root}", "data.frame_source=feats", f"data.frame_dir={tmp_path / 'feats'}"]
    torch_run = predict([trained], overrides=data, mixed_precision="no")
    onnx_run = predict([tmp_path / "onnx"], overrides=data, mixed_precision="no")
    assert onnx_run.category_ids == torch_run.category_ids
    assert np.abs(softmax(onnx_run.logits) - softmax(torch_run.logits)).max() <= FP32_TOLERANCE
    with pytest.raises(UserError, match=r"reads cached frame features .* export the model again"):
        load_for_inference(tmp_path / "onnx", [f"data.root={synthetic_root}", "data.frame_source=zip"])


def test_fp16_exports_a_half_precision_graph(tmp_path, tiny_tokenizer):
    import onnx

    cfg = make_cfg("clip")
    save_portable(tmp_path / "best", build(tiny_tokenizer, cfg), cfg, CategorySpace.build(CATEGORIES),
                  tiny_tokenizer)
    result = export_onnx(tmp_path / "best", tmp_path / "onnx", precision="fp16")
    assert result.spec.precision == "fp16"
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    types = {init.data_type for init in graph.graph.initializer if len(init.dims) == 2}  # the weight matrices
    assert types == {onnx.TensorProto.FLOAT16}
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    if result.spec.parity is None:  # no CUDA provider here: checked by onnx only, and refused on the CPU provider
        loaded = load_for_inference(tmp_path / "onnx")
        with pytest.raises(UserError, match="an fp16 graph runs on CUDA or TensorRT providers"):
            loaded.model(**make_batch(tiny_tokenizer))
    else:
        assert result.spec.parity <= FP16_TOLERANCE


def test_int8_quantizes_the_matrix_products_within_its_tolerance(tmp_path, tiny_tokenizer):
    import onnx

    cfg = make_cfg("clip")
    model = build(tiny_tokenizer, cfg)
    save_portable(tmp_path / "best", model, cfg, CategorySpace.build(CATEGORIES), tiny_tokenizer)
    result = export_onnx(tmp_path / "best", tmp_path / "onnx", precision="int8")
    assert result.spec.precision == "int8" and result.spec.parity <= INT8_TOLERANCE
    ops = {node.op_type for node in onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    batch = make_batch(tiny_tokenizer)
    got = _probabilities(load_for_inference(tmp_path / "onnx").model, batch)
    assert np.abs(got - _probabilities(model, batch)).max() <= INT8_TOLERANCE


def test_data_settings_the_graph_cannot_take(tmp_path, tiny_tokenizer):
    cfg = make_cfg("clip")
    save_portable(tmp_path / "best", build(tiny_tokenizer, cfg), cfg, CategorySpace.build(CATEGORIES),
                  tiny_tokenizer)
    export_onnx(tmp_path / "best", tmp_path / "onnx")
    cases = {f"data.max_frames={FRAMES + 1}": f"takes at most {FRAMES} frames",
             f"data.frame_size={SIZE * 2}": f"exported for {SIZE} px frames",
             "data.max_text_len=999": "text positions",
             "data.frame_source=feats": "reads pixels"}
    for override, message in cases.items():
        with pytest.raises(UserError, match=message):
            load_for_inference(tmp_path / "onnx", [override])


def test_a_damaged_export_folder_is_one_clear_error(tmp_path, tiny_tokenizer):
    cfg = make_cfg("clip", mode="text")
    save_portable(tmp_path / "best", build(tiny_tokenizer, cfg), cfg, CategorySpace.build(CATEGORIES),
                  tiny_tokenizer)
    export_onnx(tmp_path / "best", tmp_path / "onnx")
    spec = json.loads((tmp_path / "onnx" / EXPORT_FILE).read_text())
    for change, message in (({"precision": "int4"}, "precision 'int4'"), ({"num_classes": 0}, "num_classes"),
                            ({"evil": 1}, "unknown keys"), ({"num_classes": NUM_LV2 + 1}, "scores 8")):
        (tmp_path / "onnx" / EXPORT_FILE).write_text(json.dumps({**spec, **change}))
        with pytest.raises(UserError, match=message):
            load_for_inference(tmp_path / "onnx")
    (tmp_path / "onnx" / EXPORT_FILE).write_text(json.dumps(spec))
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"not a graph")
    loaded = load_for_inference(tmp_path / "onnx")
    batch = make_batch(tiny_tokenizer)
    with pytest.raises(UserError, match="ONNX Runtime cannot load it"):
        loaded.model(**batch)
    assert ExportSpec.load(tmp_path / "onnx").num_classes == NUM_LV2


def test_export_errors_name_the_flag_or_the_module(tmp_path, tiny_tokenizer, capsys, monkeypatch):
    from mmcls.commands import export

    cfg = make_cfg("clip", mode="text")
    save_portable(tmp_path / "best", build(tiny_tokenizer, cfg), cfg, CategorySpace.build(CATEGORIES),
                  tiny_tokenizer)
    assert run_main(export.main, ["--model", str(tmp_path / "best"), "--out", str(tmp_path / "best")]) == 2
    assert "error: --out: " in capsys.readouterr().err
    assert run_main(export.main, ["--model", str(tmp_path / "best"), "--out", str(tmp_path / "x"),
                                  "--features"]) == 2
    err = capsys.readouterr().err
    assert "error: --features: " in err and "text-mode" in err
    assert run_main(export.main, ["--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "not a folder" in capsys.readouterr().err
    # a module without an ONNX form is named
    from mmcls.models.heads import ClassifierHeads

    def unexportable(self, pooled):
        return torch.ops.aten._fft_r2c(pooled, [1], 0, True), None  # no ONNX symbolic at opset 17

    monkeypatch.setattr(ClassifierHeads, "forward", unexportable)
    with pytest.raises(ExportError, match=r"does not export to ONNX in heads"):
        export_onnx(tmp_path / "best", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_runtime_takes_only_installed_providers(monkeypatch):
    from mmcls.deploy.onnx_runtime import PROVIDERS_ENV, choose_providers

    assert choose_providers()[-1] == "CPUExecutionProvider"
    monkeypatch.setenv(PROVIDERS_ENV, "NoSuchExecutionProvider")
    with pytest.raises(UserError, match="NoSuchExecutionProvider not in this onnxruntime"):
        choose_providers()


def test_the_speed_check_passes_or_fails_against_the_budget(trained, synthetic_root, tmp_path, capsys):
    from mmcls.commands import speed_check

    export_onnx(trained, tmp_path / "onnx")
    for model in (trained, tmp_path / "onnx"):
        args = ["--model", str(model), "--precision", "no", f"data.root={synthetic_root}", "--budget"]
        assert run_main(speed_check.main, [*args, "0.001"]) == 0
        report, last = capsys.readouterr().out.strip().splitlines()[-2:]
        speed = float(last.split()[1])
        assert last == f"pass: {speed:.1f} videos/s >= 0.001" and speed > 0
        assert "32 videos of data.test" in report and ("ONNX Runtime" in report) == (model != trained)
        assert run_main(speed_check.main, [*args, "1e9"]) == 1
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("fail: ")
        assert run_main(speed_check.main, [*args, "0"]) == 2
        assert "error: --budget: must be a positive number" in capsys.readouterr().err
    assert run_main(speed_check.main, ["--model", str(trained), "--model", str(tmp_path / "onnx"), "--budget",
                                       "0.001", "--precision", "no", f"data.root={synthetic_root}"]) == 0
    report = capsys.readouterr().out.strip().splitlines()[-2]
    assert report.startswith("ensemble of 2 models: 32 videos") and "ONNX Runtime, torch fp32" in report
    figures = tmp_path / "speed.json"
    assert run_main(speed_check.main, ["--model", str(tmp_path / "onnx"), "--budget", "1e9", "--json", str(figures),
                                       "--precision", "no", f"data.root={synthetic_root}"]) == 1
    saved = json.loads(figures.read_text())
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert saved["engines"] == ["ONNX Runtime"] and saved["passed"] is False and saved["videos"] == 32
    assert last == f"fail: {saved['videos_per_s']:.1f} videos/s < 1e+09"
