"""The benchmark suite measures what it says: attention FLOPs on CPU, the matmul peak, FLOPs of a training update,
the report's fields, and the speed switches keep the model's outputs. No timing is asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmcls.bench.model import CPU_ATTENTION_FLOPS, TrainHarness, load_batch, time_forward
from mmcls.bench.peak import matmul_peak, supported_dtypes
from mmcls.cli import run_main
from mmcls.config import build_config, to_dict
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_attention_flops_are_counted_forward_and_backward():
    b, h, s, d = 2, 4, 16, 8
    q, k, v = (torch.randn(b, h, s, d, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as forward:
        out = F.scaled_dot_product_attention(q, k, v)
    assert forward.get_total_flops() == 4 * b * h * s * s * d  # QK^T and PV, 2 FLOPs per multiply-add
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as backward:
        out.sum().backward()
    # the scores recomputed (flash kernels keep no [S, S] matrix), then dV, dP, dQ and dK: five matmuls
    assert backward.get_total_flops() == 5 * 2 * b * h * s * s * d


def test_matmul_peak_reports_a_positive_rate_per_dtype():
    device = torch.device("cpu")
    assert supported_dtypes(device)[0] == torch.float32
    peak = matmul_peak(device, torch.float32, size=128, seconds=0.01, repeats=1)
    assert peak.dtype == "float32" and peak.size == 128 and peak.tflops > 0


@pytest.fixture(scope="module")
def tiny_cfg(synthetic_root, tmp_path_factory):
    return build_config({}, tiny_overrides(synthetic_root, tmp_path_factory.mktemp("bench"), "train.batch_size=4",
                                           "train.mixed_precision=no"))


def test_a_training_update_counts_about_three_forwards(tiny_cfg):
    batch, tokenizer, categories = load_batch(tiny_cfg)
    harness = TrainHarness.build(tiny_cfg, batch, tokenizer, categories)
    _, forward_flops = time_forward(harness, batch, steps=1, warmup=0)
    harness.core.train()
    update_flops = harness.flops_per_update()
    assert forward_flops > 0
    assert 2.5 * forward_flops <= update_flops <= 3.5 * forward_flops  # backward ~ 2x forward
    before = [p.detach().clone() for p in harness.core.parameters()]
    harness.update()  # a real update: the weights move
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, harness.core.parameters(), strict=True))


def test_channels_last_keeps_the_outputs(tiny_cfg):
    from mmcls.data.splits import build_tokenizer
    from mmcls.models import build_model

    torch.manual_seed(0)
    model = build_model(tiny_cfg, 5, 2, build_tokenizer(tiny_cfg.data)).eval()
    pixels = torch.randn(3, 3, tiny_cfg.data.frame_size, tiny_cfg.data.frame_size)
    expected = model.encoder.vision(pixels)
    model.encoder.vision.set_channels_last(True)
    conv = next(m for m in model.encoder.vision.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model.encoder.vision(pixels), expected, rtol=1e-5, atol=1e-5)


def test_benchmark_tool_writes_the_report(synthetic_root, tmp_path, capsys):
    from mmcls.commands import benchmark

    overrides = tiny_overrides(synthetic_root, tmp_path / "run", "train.batch_size=4", "train.eval_batch_size=8",
                               "train.mixed_precision=no")  # fp32 on any machine, so the MFU uses the fp32 peak
    code = run_main(benchmark.main, ["--config", str(ROOT / "configs" / "demo.yaml"), "--quick", "--sources", "zip",
                                     "--workers", "0", "--switches", "eager_attention", "--out",
                                     str(tmp_path / "bench"), *overrides])
    assert code == 0
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text(encoding="utf-8"))
    assert report["peak_tflops"]["float32"] > 0
    assert [(r["config"], r["source"], r["workers"]) for r in report["loader"]] == [("demo", "zip", 0)]
    model = report["models"][0]
    assert model["name"] == "demo" and model["dtype"] == "float32" and model["batch"] == 4
    assert 0 < model["train_mfu"] < 1.5 and 0 < model["infer_mfu"] < 1.5
    assert model["train_videos_per_s"] > 0 and model["infer_e2e_videos_per_s"] > 0 and model["loader_headroom"] > 0
    assert model["flatten_speedup"] > 0 and model["feature_cache_speedup"] > 0 and model["peak_memory_mib"] > 0
    assert (model["h2d_uint8_gbps"] is None) == (not torch.cuda.is_available())  # measured on CUDA only
    (switch,) = report["switches"]["demo"]
    assert switch["switch"] == "eager_attention" and switch["train_speedup"] > 0 and switch["infer_speedup"] > 0
    table = (tmp_path / "bench" / "benchmark.md").read_text(encoding="utf-8")
    assert "| matmul peak |" in table and "| demo | zip | 0 |" in table and "eager_attention" in table
    assert table in capsys.readouterr().out


def test_benchmark_tool_rejects_an_unknown_switch(tmp_path, capsys):
    from mmcls.commands import benchmark

    assert run_main(benchmark.main, ["--out", str(tmp_path), "--switches", "warp_drive"]) == 2
    assert "--switches: unknown warp_drive" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a compiler")
def test_compiled_model_trains_like_the_eager_one(tiny_cfg):
    """Same loss and gradients of one training step (weights after Adam updates would amplify float noise in
    near-zero gradients, so those are not compared)."""
    cfg = build_config(to_dict(tiny_cfg), ["model.dropout=0", "model.text.dropout=0"])  # inductor has its own RNG
    batch, tokenizer, categories = load_batch(cfg)
    eager = TrainHarness.build(cfg, batch, tokenizer, categories)
    compiled = TrainHarness.build(build_config(to_dict(cfg), ["train.compile=true"]), batch, tokenizer, categories)
    losses = [harness.step(harness.batch)["loss"] for harness in (eager, compiled)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(eager.core.named_parameters(), compiled.core.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_epoch_start_is_timed_with_and_without_persistent_workers(tiny_cfg):
    from mmcls.bench.loader import epoch_start_seconds

    assert epoch_start_seconds(tiny_cfg, 0, 8, persistent=True) is None  # nothing to keep alive
    for persistent in (True, False):
        seconds = epoch_start_seconds(tiny_cfg, 1, 8, persistent=persistent)
        assert seconds is not None and seconds > 0


def test_the_loader_figure_cannot_exceed_what_the_workers_decode(tiny_cfg, monkeypatch):
    """Each video takes at least DELAY s in a worker, so two workers cannot deliver more than 2 / DELAY videos/s.
    The clock starts after a pause in which the workers fill their prefetch queue (as after a warm-up); quick mode
    times fewer batches than are in flight then, so counting those would report a figure far above the ceiling."""
    import time as real_time
    from types import SimpleNamespace

    import mmcls.bench.loader as loader_module
    from mmcls.data.dataset import VideoTextDataset

    delay, workers = 0.02, 2
    read = VideoTextDataset.__getitem__

    def slow(self, index):
        real_time.sleep(delay)
        return read(self, index)

    paused = []

    def perf_counter() -> float:
        if not paused:  # the clock's first reading: give the workers time to decode everything they were asked
            paused.append(True)
            real_time.sleep(1.0)
        return real_time.perf_counter()

    monkeypatch.setattr(VideoTextDataset, "__getitem__", slow)
    monkeypatch.setattr(loader_module, "time", SimpleNamespace(perf_counter=perf_counter))
    row = loader_module.loader_throughput(tiny_cfg, "zip", workers, batch_size=4, batches=2)
    assert row["videos"] == 8 and 0 < row["videos_per_s"] <= workers / delay, row


def test_inference_engines_run_the_same_model(tiny_cfg, tmp_path):
    from mmcls.bench.inference import engines_markdown, measure_engines

    rows = measure_engines("tiny", tiny_cfg, tmp_path, ["eager", "onnx", "onnx_int8"], steps=1, warmup=0)
    assert [r["engine"] for r in rows] == ["eager", "onnx", "onnx_int8"] and rows[0]["vs_eager"] == 1.0
    assert all(r["videos_per_s"] > 0 and r["batch"] == 4 for r in rows)
    assert rows[1]["argmax_agreement"] == 1.0  # the fp32 graph computes the model
    assert (tmp_path / "tiny" / "onnx" / "model.onnx").is_file()
    table = engines_markdown(rows)
    assert "| tiny | ONNX Runtime | int8 (dynamic) | 4 |" in table
