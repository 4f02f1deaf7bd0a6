"""Model-side timing on one real batch kept in memory: a full training update, inference forwards, FLOPs, memory.

The batch comes from the config's own training split (train transforms), so shapes, padding and unreadable videos
are those of a real run; the loader is timed separately (:mod:`mmcls.bench.loader`).
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from mmcls.config import Config, build_config, to_dict
from mmcls.engine.inference import model_inputs
from mmcls.errors import UserError

aten = torch.ops.aten


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                             **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter knows the CUDA attention kernels; the CPU flash kernel is added here so CPU and GPU count alike
CPU_ATTENTION_FLOPS = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                       aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops}


def load_batch(cfg: Config) -> tuple[dict[str, Any], Any, Any]:
    """The first training batch of ``cfg`` (train transforms, ``train.batch_size`` videos), tokenizer, categories."""
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import build_tokenizer, load_labelled_splits

    cfg = build_config(to_dict(cfg), ["data.num_workers=0"])
    tokenizer = build_tokenizer(cfg.data, cfg.model.text.pretrained)
    train_split, _, categories = load_labelled_splits(cfg.data, cfg.seed)
    dataset = build_dataset(cfg.data, train_split, tokenizer, categories, train=True,
                            with_frames=cfg.model.mode != "text", seed=cfg.seed)
    loader = build_dataloader(dataset, cfg.data, cfg.train.batch_size, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(cfg.seed))
    batch = next(iter(loader), None)
    if batch is None:
        raise UserError(f"train.batch_size={cfg.train.batch_size}: the training split has only {len(dataset)} "
                        "videos, fewer than one batch")
    return batch, tokenizer, categories


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``steps`` timed calls after ``warmup`` untimed ones (device synchronised)."""
    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast_for(device: torch.device, precision: str) -> Any:
    """A fresh autocast context for ``precision`` (no / bf16 / fp16). The bench builds several accelerators in one
    process and accelerate keeps one global precision, so inference timing does not use ``accelerator.autocast``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def free_memory() -> None:
    """Collect what earlier harnesses left (accelerate's patched forward keeps a reference cycle under mixed
    precision) so the next one starts, and its peak memory is measured, from a clean device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class TrainHarness:
    """A model, its optimizer and the training step of ``cfg``, prepared by accelerate, with a device batch."""

    cfg: Config
    accelerator: Accelerator
    model: torch.nn.Module
    core: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: Any
    ema: Any
    batch: dict[str, Any]
    updates: int = 0

    @property
    def precision(self) -> str:
        return str(self.accelerator.mixed_precision)

    def autocast(self) -> Any:
        return autocast_for(self.accelerator.device, self.precision)

    @classmethod
    def build(cls, cfg: Config, batch: dict[str, Any], tokenizer: Any, categories: Any) -> TrainHarness:
        from mmcls.accelerators import training_accelerator
        from mmcls.engine.ema import build_ema
        from mmcls.engine.losses import Criterion
        from mmcls.engine.optim import optimizer_for
        from mmcls.engine.session import apply_model_switches
        from mmcls.engine.step import classification_step
        from mmcls.models import build_model

        free_memory()
        torch.manual_seed(cfg.seed)
        AcceleratorState._reset_state()  # accelerate keeps one precision per process; each harness sets its own
        accelerator = training_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum_steps)
        model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer)
        apply_model_switches(model, cfg)
        model = model.to(accelerator.device)
        optimizer = optimizer_for(model, cfg.train)
        model, optimizer = accelerator.prepare(model, optimizer)
        core = accelerator.unwrap_model(model)
        criterion = Criterion.from_config(cfg, categories).to(accelerator.device)
        step = classification_step(cfg, model, core, criterion, accelerator)
        device_batch = {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        model.train()
        return cls(cfg, accelerator, model, core, optimizer, step, build_ema(core, cfg.train.ema), device_batch)

    def update(self) -> None:
        """One optimizer update exactly as the finetune loop does it (without accumulation)."""
        self.step(self.batch)
        if self.cfg.train.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        if self.ema is not None:
            self.ema.update(self.core, step=self.updates)

    def time_updates(self, steps: int, warmup: int) -> float:
        """Median seconds of one update over ``steps`` timed updates after ``warmup`` untimed ones."""
        return median_seconds(self.update, self.accelerator.device, steps, warmup)

    def flops_per_update(self) -> int:
        """Model FLOPs of one training step (forward, backward and every extra pass the recipe adds), counted by
        torch's flop counter on matmuls, convolutions and attention (elementwise work is not counted, as usual
        for MFU)."""
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
            self.step(self.batch)
        self.optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())


def time_forward(harness: TrainHarness, batch: dict[str, Any], steps: int, warmup: int) -> tuple[float, int]:
    """(median seconds, FLOPs) of one inference forward of ``batch`` through the harness's model (eval mode,
    no_grad, the harness's own precision)."""
    model, device = harness.core, harness.accelerator.device
    model.eval()
    inputs = model_inputs({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    # counted with autograd on: torch's module tracker trips over no_grad outputs; the FLOPs are the same
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter, harness.autocast():
        model(**inputs)

    def forward() -> None:
        with torch.no_grad(), harness.autocast():
            model(**inputs)

    return median_seconds(forward, device, steps, warmup), int(counter.get_total_flops())


def reset_peak_memory(device: torch.device) -> None:
    free_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """(MiB, what): the device's peak allocated memory since the last reset on CUDA, else this process's peak
    resident set (which includes Python, the libraries and every earlier measurement of the process)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
