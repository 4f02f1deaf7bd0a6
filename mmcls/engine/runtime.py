"""What finetuning and pretraining share around their loops: the accelerator, the logged learning rate, the
atomic ``checkpoints/last`` and the end-of-run check that every process holds the same weights."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from mmcls.config import Config, build_config, to_dict
from mmcls.engine.optim import reported_lr
from mmcls.io import replace_dir
from mmcls.rundir import RunDir


def resolve_mixed_precision(setting: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, none on CPU."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_accelerator(cfg: Config) -> Accelerator:
    """The accelerator for a run: precision and accumulation from ``cfg.train``.

    DDP is told that some parameters may get no gradient in a step: a batch whose videos all failed to decode
    skips the vision tower and the video head.
    """
    return Accelerator(mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision),
                       gradient_accumulation_steps=cfg.train.grad_accum_steps,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def apply_model_switches(model: torch.nn.Module, cfg: Config) -> None:
    """The model-level speed and memory switches of ``cfg.train``, in place, before ``accelerator.prepare``:
    gradient checkpointing, channels_last frames for the vision tower, torch.compile."""
    if cfg.train.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.train.channels_last:
        model.encoder.set_channels_last(True)
    if cfg.train.compile:
        model.compile()  # in place: state_dict names, unwrap_model and checkpoints stay as they are


def show_progress(bar: Any, loss: float, lr: float, videos_per_batch: int) -> None:
    """The training bar's figures: running loss, learning rate and videos/s over all processes (tqdm itself shows
    batches done and the time left)."""
    figures = bar.format_dict
    # batches/s of this process: tqdm's smoothed rate, else (smoothing off) the average so far
    done = figures["n"] - (figures.get("initial") or 0)  # a resumed bar starts at the batches already done
    rate = figures.get("rate") or (done / figures["elapsed"] if figures.get("elapsed") else None)
    speed = f"{rate * videos_per_batch:.1f}" if rate else "-"
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", videos_s=speed, refresh=False)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """Current learning rate of the fusion layers and heads (``train.lr``), the one logged as ``lr``
    (:func:`mmcls.engine.optim.reported_lr`; kept for the loops that call it by this name)."""
    return reported_lr(optimizer)


@torch.no_grad()
def check_replicas_in_sync(model: torch.nn.Module, accelerator: Accelerator) -> None:
    """Every process must end with the same weights; a silent divergence (a parameter that DDP did not reduce)
    would make the saved model depend on which process saved it. Compares float64 checksums across processes."""
    if accelerator.num_processes == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    sums = accelerator.gather(checksum.to(accelerator.device))
    if not torch.all(sums == sums[0]):
        raise RuntimeError(f"the processes' weights diverged (checksums {sums.tolist()}); please report this")
    logging.getLogger("mmcls").info("weights identical on all %d processes", accelerator.num_processes)


def save_last_checkpoint(accelerator: Accelerator, run: RunDir, trainer_state: dict[str, Any] | None = None,
                         keep: int = 1) -> None:
    """``checkpoints/last``: the full training state (model, optimizer, scheduler, RNG, and the loop's
    ``trainer_state.json`` when given), swapped in atomically.

    ``keep`` > 1 keeps the previous ``keep - 1`` checkpoints too, as ``checkpoints/update-<N>`` (the update they
    were taken at), the oldest removed first.
    """
    tmp = run.checkpoints / "last.tmp"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if trainer_state is not None:
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state), encoding="utf-8")
        last = run.checkpoints / "last"
        kept = _kept_name(last) if keep > 1 else None
        same_update = (trainer_state is not None and kept is not None  # e.g. a validation right after a save
                       and kept.name == f"update-{trainer_state['state']['update']:08d}")
        if kept is not None and not kept.exists() and not same_update:
            last.rename(kept)  # between the renames a resume finds the newest update-* (mmcls.engine.resume)
            tmp.rename(last)
        else:
            replace_dir(tmp, last)
        for old in sorted(run.checkpoints.glob("update-*"))[:-(keep - 1) or None]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _kept_name(last: Path) -> Path | None:
    """``update-<N>`` for the checkpoint now in ``last`` (None when it has no trainer state)."""
    state = last / "trainer_state.json"
    if not state.is_file():
        return None
    update = json.loads(state.read_text(encoding="utf-8"))["state"]["update"]
    return last.with_name(f"update-{update:08d}")


def with_feature_width(cfg: Config, dataset: Any, run: RunDir) -> Config:
    """For ``data.frame_source: feats`` without ``data.feat_dim``: the width read from the files, saved in the run's
    config (a saved model is rebuilt from it)."""
    if not cfg.data.reads_features or cfg.data.feat_dim is not None or cfg.model.mode == "text":
        return cfg
    cfg = build_config(to_dict(cfg), [f"data.feat_dim={dataset.frame_loader.source.feature_dim()}"])
    run.save_config(cfg)
    return cfg


@dataclass(frozen=True)
class UpdatePlan:
    """How long a run is, in optimizer updates: the schedule's unit."""

    updates_per_epoch: int
    total_updates: int
    epochs: int


def plan_updates(batches_per_epoch: int, cfg: Config) -> UpdatePlan:
    """``train.max_steps`` updates, or ``train.epochs`` epochs of ``batches_per_epoch / grad_accum_steps``."""
    per_epoch = max(1, math.ceil(batches_per_epoch / cfg.train.grad_accum_steps))
    total = cfg.train.max_steps or cfg.train.epochs * per_epoch
    return UpdatePlan(per_epoch, total, math.ceil(total / per_epoch))


def describe_plan(plan: UpdatePlan, cfg: Config, accelerator: Accelerator) -> str:
    """One log line: updates, epochs, processes, global batch and precision of a run."""
    global_batch = cfg.train.batch_size * cfg.train.grad_accum_steps * accelerator.num_processes
    return (f"{plan.total_updates} updates ({plan.epochs} epochs x {plan.updates_per_epoch}), "
            f"{accelerator.num_processes} process(es), global batch {global_batch}, "
            f"precision {accelerator.mixed_precision}")


def finish_run(core: torch.nn.Module, accelerator: Accelerator, cfg: Config, updates: int, start: float,
               eval_seconds: float) -> tuple[float, float]:
    """End of a run on every process: the replica check, a barrier, then (seconds, training videos/s without the
    validation time)."""
    check_replicas_in_sync(core, accelerator)
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - start
    videos = updates * cfg.train.batch_size * cfg.train.grad_accum_steps * accelerator.num_processes
    return elapsed, videos / max(elapsed - eval_seconds, 1e-9)
