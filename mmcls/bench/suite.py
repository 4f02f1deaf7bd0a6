"""One benchmark run: the device's matmul peak, loader throughput, and per config the training speed with model FLOP
utilisation, inference speed (model only and end to end), peak memory, and the effect of each speed switch.

Every figure is measured in this process on this machine; MFU divides the counted model FLOP/s by the measured peak
of the dtype the run computes in (bf16/fp16 under autocast, else fp32).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from mmcls.accelerators import resolve_mixed_precision
from mmcls.bench.loader import epoch_start_seconds, loader_throughput
from mmcls.bench.model import (
    TrainHarness,
    load_batch,
    median_seconds,
    peak_memory_mib,
    reset_peak_memory,
    time_forward,
)
from mmcls.bench.peak import matmul_peak, supported_dtypes
from mmcls.config import Config, build_config, to_dict

log = logging.getLogger("mmcls.bench")

# switch name -> (overrides, what it shows); each is timed as a training update and an inference forward
SWITCHES: dict[str, tuple[tuple[str, ...], str]] = {
    "eager_attention": (("model.text.attn_implementation=eager",), "BERT attention without SDPA"),
    "bf16": (("train.mixed_precision=bf16",), "bf16 autocast"),
    "compile": (("train.compile=true",), "torch.compile (inductor)"),
    "channels_last": (("train.channels_last=true",), "channels_last vision tower"),
    "grad_checkpointing": (("train.grad_checkpointing=true",), "recompute activations (memory for time)"),
    # not speed switches: what time inside the vision tower costs (docs/PERFORMANCE.md, "Cost of the temporal
    # switches"; a ratio below 1 is the slowdown)
    "frame_diff": (("model.temporal.frame_diff=rgb",), "frame differences as 3 more stem channels"),
    "temporal_shift": (("model.temporal.shift=0.125",), "temporal shift (TSM) in the tower's blocks"),
}


def device_info() -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"device": str(device), "name": name, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def measure_peaks(seconds: float) -> dict[str, float]:
    """dtype name -> measured matmul TFLOP/s on the current device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {p.dtype: p.tflops for p in (matmul_peak(device, dtype, seconds=seconds)
                                        for dtype in supported_dtypes(device))}


def compute_dtype(cfg: Config) -> str:
    """The dtype the matmuls of a run compute in, as a key of :func:`measure_peaks`."""
    return {"bf16": "bfloat16", "fp16": "float16"}.get(resolve_mixed_precision(cfg.train.mixed_precision), "float32")


def _mfu(flops: int, seconds: float, peaks: dict[str, float], dtype: str) -> float | None:
    peak = peaks.get(dtype)
    return flops / seconds / (peak * 1e12) if peak else None


def measure_model(name: str, cfg: Config, peaks: dict[str, float], steps: int, warmup: int,
                  e2e_batches: int) -> dict[str, Any]:
    """Training update and inference figures of one config (its own batch sizes and precision)."""
    batch, tokenizer, categories = load_batch(cfg)
    harness = TrainHarness.build(cfg, batch, tokenizer, categories)
    device = harness.accelerator.device
    reset_peak_memory(device)
    seconds = harness.time_updates(steps, warmup)
    memory, memory_kind = peak_memory_mib(device)
    flops = harness.flops_per_update()
    dtype = compute_dtype(cfg)
    videos = len(batch["ids"])
    forward_s, forward_flops = time_forward(harness, batch, steps, warmup)
    params = sum(p.numel() for p in harness.core.parameters())
    row = {"name": name, "params_m": round(params / 1e6, 2), "batch": videos, "max_frames": cfg.data.max_frames,
           "frame_size": cfg.data.frame_size, "max_text_len": cfg.data.max_text_len, "dtype": dtype,
           "train_s_per_update": seconds, "train_videos_per_s": videos / seconds,
           "train_gflop_per_update": flops / 1e9, "train_tflops": flops / seconds / 1e12,
           "train_mfu": _mfu(flops, seconds, peaks, dtype), "peak_memory_mib": memory, "memory_kind": memory_kind,
           "infer_model_videos_per_s": videos / forward_s, "infer_mfu": _mfu(forward_flops, forward_s, peaks, dtype)}
    row["infer_e2e_videos_per_s"] = end_to_end_inference(harness, cfg, tokenizer, categories, e2e_batches)
    row["flatten_speedup"] = flattened_frames_speedup(harness, batch, steps, warmup)
    row["feature_cache_speedup"] = feature_cache_speedup(harness, batch, forward_s, steps, warmup)
    row.update(host_to_device(batch, device))
    return row


def feature_cache_speedup(harness: TrainHarness, batch: dict[str, Any], pixel_forward_s: float, steps: int,
                          warmup: int) -> float | None:
    """Inference forward on pixels over the same forward on cached frame features (``data.frame_source=feats``:
    the vision tower and the JPEG decode are skipped; the decode is not in this ratio)."""
    from mmcls.engine.inference import model_inputs

    inputs = model_inputs(harness.batch)
    encoder = harness.core.encoder
    if encoder.vision is None or encoder.reads_features or inputs["frames"] is None:
        return None
    with torch.no_grad(), harness.autocast():
        features = encoder.frame_features(inputs["frames"], inputs["frame_mask"])  # [B, T, D]
    cached = {**harness.batch, "frames": features.to(torch.float16)}  # the cache stores float16
    encoder.set_reads_features(True)  # as a model loaded with data.frame_source=feats
    try:
        feature_s, _ = time_forward(harness, cached, steps, warmup)
    finally:
        encoder.set_reads_features(False)
    return pixel_forward_s / feature_s


def host_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, float | None]:
    """On CUDA: GB/s of copying the batch's frames as uint8 (pinned, and pageable) and as float32 (pageable), the
    form a loader that normalised on the host would send; None elsewhere."""
    frames = batch.get("frames")
    keys = ("h2d_uint8_pinned_gbps", "h2d_uint8_gbps", "h2d_float32_gbps")
    if device.type != "cuda" or frames is None or frames.dtype != torch.uint8:
        return dict.fromkeys(keys)
    variants = (frames.pin_memory(), frames.clone(), frames.float())
    rates = []
    for tensor in variants:
        tensor.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(10):
            tensor.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        rates.append(10 * tensor.numel() * tensor.element_size() / (time.perf_counter() - start) / 1e9)
    return dict(zip(keys, rates, strict=True))


@torch.no_grad()
def end_to_end_inference(harness: TrainHarness, cfg: Config, tokenizer: Any, categories: Any, batches: int) -> float:
    """Videos/s of loader + model over the test split (``data.test``, else the validation split), eval batch size
    and the config's workers, after one warm-up batch per worker (0 when the split is too small to time)."""
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import load_labelled_splits, load_split
    from mmcls.engine.inference import model_inputs

    split = load_split(cfg.data, "test") if cfg.data.test else load_labelled_splits(cfg.data, cfg.seed)[1]
    dataset = build_dataset(cfg.data, split, tokenizer, categories, train=False,
                            with_frames=cfg.model.mode != "text", seed=cfg.seed)
    loader = build_dataloader(dataset, cfg.data, cfg.train.eval_batch_size)
    model, device = harness.core.eval(), harness.accelerator.device
    warm = max(1, cfg.data.num_workers)  # every worker's start-up and first batch stay out of the timing
    iterator = iter(loader)
    videos, start = 0, 0.0
    for index in range(warm + batches):
        batch = next(iterator, None)
        if batch is None:
            break
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with harness.autocast():
            logits = model(**model_inputs(batch))["logits"]
        logits.float().cpu()  # the result reaches the host, as in prediction
        if index == warm - 1:
            start = time.perf_counter()
        elif index >= warm:
            videos += len(batch["ids"])
    return videos / max(time.perf_counter() - start, 1e-9) if videos else 0.0


@torch.no_grad()
def flattened_frames_speedup(harness: TrainHarness, batch: dict[str, Any], steps: int, warmup: int) -> float | None:
    """Time of encoding a batch's frames one time step at a time (T tower calls of B frames) over one call on all
    B*T frames, which is what the model does."""
    from mmcls.engine.inference import model_inputs
    from mmcls.models.pixels import normalize_frames

    vision = harness.core.encoder.vision
    frames = model_inputs(harness.batch)["frames"]
    if vision is None or frames is None or harness.core.encoder.reads_features:
        return None
    pixels = normalize_frames(frames.flatten(0, 1), vision.mean, vision.std)  # [B*T, 3, S, S]
    per_step = pixels.unflatten(0, frames.shape[:2])  # [B, T, 3, S, S]
    vision.eval()

    def timed(fn: Callable[[], Any]) -> float:
        def call() -> None:
            with harness.autocast():
                fn()

        return median_seconds(call, harness.accelerator.device, steps, warmup)

    once = timed(lambda: vision(pixels))
    looped = timed(lambda: [vision(per_step[:, t]) for t in range(per_step.shape[1])])
    return looped / once


def measure_switches(cfg: Config, peaks: dict[str, float], steps: int, warmup: int,
                     names: list[str]) -> list[dict[str, Any]]:
    """Each switch against the config as given: training update and inference forward time ratios."""
    batch, tokenizer, categories = load_batch(cfg)
    base = TrainHarness.build(cfg, batch, tokenizer, categories)
    base_train = base.time_updates(steps, warmup)
    base_infer, _ = time_forward(base, batch, steps, warmup)
    rows = []
    for name in names:
        overrides, what = SWITCHES[name]
        if name == "bf16" and "bfloat16" not in peaks:
            rows.append({"switch": name, "what": what, "skipped": "no bf16 on this device"})
            continue
        variant_cfg = build_config(to_dict(cfg), list(overrides))
        harness = TrainHarness.build(variant_cfg, batch, tokenizer, categories)
        warm = warmup + (3 if variant_cfg.train.compile else 0)  # compilation happens in the first calls
        train_s = harness.time_updates(steps, warm)
        infer_s, _ = time_forward(harness, batch, steps, warm)
        rows.append({"switch": name, "what": what, "train_speedup": base_train / train_s,
                     "infer_speedup": base_infer / infer_s})
    return rows


def run_suite(configs: dict[str, Config], sources: list[str], workers: list[int], steps: int, warmup: int,
              loader_batches: int, e2e_batches: int, switches: list[str], peak_seconds: float) -> dict[str, Any]:
    """Everything, in the order the report shows it."""
    peaks = measure_peaks(peak_seconds)
    log.info("matmul peak (TFLOP/s): %s", peaks)
    report: dict[str, Any] = {"device": device_info(), "peak_tflops": peaks, "loader": [], "epoch_start": [],
                              "models": [], "switches": {}}
    for name, cfg in configs.items():
        for source in sources:
            for count in sorted({*workers, cfg.data.num_workers}):
                row = loader_throughput(cfg, source, count, cfg.train.batch_size, loader_batches)
                report["loader"].append({"config": name, **row})
                log.info("%s loader %s x%d: %.1f videos/s", name, source, count, row["videos_per_s"])
        report["models"].append(measure_model(name, cfg, peaks, steps, warmup, e2e_batches))
        log.info("%s model: %s", name, report["models"][-1])
        if switches:
            report["switches"][name] = measure_switches(cfg, peaks, steps, warmup, switches)
            log.info("%s switches: %s", name, report["switches"][name])
    for name, cfg in configs.items():  # what persistent workers save at each epoch boundary
        if cfg.data.num_workers and "zip" in sources:
            report["epoch_start"].append({"config": name, "workers": cfg.data.num_workers, **{
                key: epoch_start_seconds(cfg, cfg.data.num_workers, cfg.train.batch_size, persistent)
                for key, persistent in (("persistent_s", True), ("restarted_s", False))}})
    for model in report["models"]:  # loader headroom: what the config's own worker count delivers / what it trains
        own = [r for r in report["loader"] if r["config"] == model["name"] and r["source"] == "zip"]
        best = max(own, key=lambda r: r["videos_per_s"]) if own else None
        model["loader_headroom"] = best["videos_per_s"] / model["train_videos_per_s"] if best else None
    return report


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables (what docs/PERFORMANCE.md quotes)."""
    info = report["device"]
    out = [f"device: {info['device']} ({info['name']}), {info['cpu_count']} CPU cores, torch {info['torch']} "
           f"({info['torch_threads']} threads, {info['cpu_capability']})", "",
           "| matmul peak | TFLOP/s |", "|---|---:|"]
    out += [f"| {dtype} | {tflops:.3f} |" for dtype, tflops in report["peak_tflops"].items()]
    out += ["", "| config | source | workers | videos/s | frames/s | unreadable videos |",
            "|---|---|---:|---:|---:|---:|"]
    out += [f"| {r['config']} | {r['source']} | {r['workers']} | {_fmt(r['videos_per_s'])} | "
            f"{_fmt(r['frames_per_s'], 0)} | {r['failed_videos']} of {r['videos']} |" for r in report["loader"]]
    if report["epoch_start"]:
        out += ["", "| config | workers | first batch of an epoch: persistent workers | restarted workers |",
                "|---|---:|---:|---:|"]
        out += [f"| {r['config']} | {r['workers']} | {r['persistent_s']:.3f} s | {r['restarted_s']:.3f} s |"
                for r in report["epoch_start"]]
    out += ["", "| config | params (M) | batch x frames @ px, text | dtype | training videos/s | GFLOP / update | "
            "MFU | loader headroom | peak memory (MiB) |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    out += [f"| {m['name']} | {m['params_m']} | {m['batch']} x {m['max_frames']} @ {m['frame_size']}, "
            f"{m['max_text_len']} | {m['dtype']} | {_fmt(m['train_videos_per_s'])} | "
            f"{_fmt(m['train_gflop_per_update'])} | {_pct(m['train_mfu'])} | {_times(m['loader_headroom'])} | "
            f"{_fmt(m['peak_memory_mib'], 0)} ({m['memory_kind']}) |" for m in report["models"]]
    out += ["", "| config | inference videos/s (model) | MFU | inference videos/s (end to end) | "
            "frames flattened: speedup | feature cache: speedup |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {m['name']} | {_fmt(m['infer_model_videos_per_s'])} | {_pct(m['infer_mfu'])} | "
            f"{_fmt(m['infer_e2e_videos_per_s'])} | {_times(m['flatten_speedup'], 2)} | "
            f"{_times(m['feature_cache_speedup'], 2)} |" for m in report["models"]]
    copies = [m for m in report["models"] if m["h2d_uint8_gbps"] is not None]
    if copies:
        out += ["", "| config | frames to the device: uint8 pinned | uint8 | float32 (host-normalised) |",
                "|---|---:|---:|---:|"]
        out += [f"| {m['name']} | {m['h2d_uint8_pinned_gbps']:.1f} GB/s | {m['h2d_uint8_gbps']:.1f} GB/s | "
                f"{m['h2d_float32_gbps']:.1f} GB/s |" for m in copies]
    for name, rows in report["switches"].items():
        out += ["", f"| switch ({name}) | what | training speedup | inference speedup |", "|---|---|---:|---:|"]
        for r in rows:
            if "skipped" in r:
                out.append(f"| {r['switch']} | {r['what']} | {r['skipped']} | |")
            else:
                out.append(f"| {r['switch']} | {r['what']} | {r['train_speedup']:.2f}x | {r['infer_speedup']:.2f}x |")
    return "\n".join(out) + "\n"


def _times(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}x"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"

