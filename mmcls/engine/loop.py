"""The training loop that finetuning and pretraining share, as plain functions (no runner, no hooks).

Read :func:`train` top to bottom: resume, then for each epoch and batch: freeze / unfreeze, one micro-batch of the
recipe's step inside ``accelerator.accumulate``, the guarded optimizer step; after each optimizer update: the
schedule, the EMA, logging, and the validation / checkpoint cadence; at each epoch's end a validation and a
checkpoint. accelerate handles devices, mixed precision, accumulation and multiple processes.

A recipe (:class:`Recipe`) supplies only what differs: its step (forward, loss and backward of one micro-batch),
its evaluation and what "best" means, and the state a resume needs. Everything else lives here once.

**SIGTERM** (schedulers, ``timeout``, some launchers on Ctrl-C) is caught while the loop runs (:class:`StopRequest`):
the loop finishes the optimizer update in progress, saves ``checkpoints/last`` and stops with
:class:`TrainingStopped` (one line, exit status 143); the same command resumes it. With several processes the
request is summed over all of them at every update, so all stop at the same update and save one consistent
checkpoint even when the signal reaches only some of them, or reaches them at different moments (a launcher
forwards it to each process in turn). DataLoader workers ignore a SIGTERM that their own process did not send
(:mod:`mmcls.data.worker_signals`), so a signal to the whole process group (``timeout``, SLURM) does not take the
batches away from the update being finished. A second SIGTERM changes nothing (``timeout`` sends two); the
SIGKILL that schedulers send after their grace period leaves the previous checkpoint, as any kill does. Validation
is not interrupted: a long one can outlast a short grace period. A disk that refuses a checkpoint is one line
(:class:`mmcls.io.WriteError`), and the previous checkpoint stays.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from tqdm import tqdm

from mmcls.engine.guard import guarded_step
from mmcls.engine.last_checkpoint import EpochPosition, epoch_loader, global_position, restore, save_last, trainer_state
from mmcls.engine.optim import reported_lr
from mmcls.engine.session import Training
from mmcls.errors import UserError
from mmcls.io import writing

log = logging.getLogger("mmcls")


class TrainingStopped(UserError):
    """The run was asked to stop (SIGTERM) and did, after saving ``checkpoints/last`` at the update it stopped at."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class StopRequest:
    """SIGTERM while the training loop runs: remembered by the handler, acted on by the loop at the next update
    boundary (:meth:`requested`). The handler is installed on entering and the previous one restored on leaving
    (only from the main thread, where Python allows signal handlers; elsewhere nothing is installed). DataLoader
    workers ignore a SIGTERM sent to the whole process group (:mod:`mmcls.data.worker_signals`), so the update in
    progress gets its batches."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._pid = os.getpid()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self._pid:  # not in a process forked meanwhile
            self.signal = signum

    def requested(self, accelerator: Any) -> bool:
        """Whether any process was asked to stop; called by every process at the same update (one all-reduce of a
        flag with several processes)."""
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([0.0 if self.signal is None else 1.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


@dataclass
class Evaluation:
    """What a recipe's evaluation returns: its metrics.csv columns and whether the weights are the best so far
    (the recipe has saved them then)."""

    row: dict[str, Any]
    improved: bool


class Recipe(Protocol):
    """What finetuning and pretraining each give the loop."""

    #: the names of the figures :meth:`step` may return, averaged over the epoch ("loss" is the optimised one)
    figures: tuple[str, ...]

    def step(self, batch: dict[str, Any], epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Forward, loss and backward of micro-batch ``index`` of ``epoch``; returns detached figures."""

    def evaluate(self, weights: torch.nn.Module, update: int, train: EpochPosition) -> Evaluation:
        """Validate ``weights`` (``train``: the epoch so far, summed over processes); save them when best."""

    def end_epoch(self, weights: torch.nn.Module, update: int) -> None:
        """Anything the recipe keeps per epoch (e.g. SWA snapshots)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state a resume needs (best scores, generators)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopState:
    """Counters of the loop (what a resumable checkpoint restores besides the tensors and the recipe's state)."""

    epoch: int = 0
    update: int = 0
    eval_seconds: float = 0.0
    last_lr: float = 0.0
    evals_since_best: int = 0
    stopped_early: bool = False


@dataclass
class LoopResult:
    """How a run went: its counters, wall time, training speed (validation excluded) and skipped updates."""

    state: LoopState
    seconds: float
    videos_per_s: float
    skipped_updates: int


def train(t: Training, recipe: Recipe) -> LoopResult:
    """Run ``t`` with ``recipe`` from where its checkpoint left off (or from the start) to the planned updates;
    :class:`TrainingStopped` after a SIGTERM (module docstring). An error releases the run folder's lock."""
    try:
        with StopRequest() as stop:
            return _train(t, recipe, stop)
    except BaseException:
        t.run.unlock()
        raise


def _train(t: Training, recipe: Recipe, stop: StopRequest) -> LoopResult:
    state, position, resumed_at = _resume(t, recipe)
    start = time.perf_counter()
    t.model.train()
    for epoch in range(state.epoch, t.plan.epochs):
        if _finished(t, state):  # a resumed run that had already finished
            break
        state.epoch = epoch
        t.train_set.set_epoch(epoch)
        if hasattr(t.train_loader, "set_epoch"):
            t.train_loader.set_epoch(epoch)
        loader, position = epoch_loader(t.accelerator, t.train_loader, t.loader_generator, position, recipe.figures)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.plan.epochs}", dynamic_ncols=True, initial=position.batches,
                   total=len(t.train_loader), disable=not t.accelerator.is_local_main_process)
        for batch in bar:
            _micro_batch(t, recipe, batch, state, position)
            if not t.accelerator.sync_gradients:
                continue
            saved = _after_update(t, recipe, state, position, bar, start)
            if stop.requested(t.accelerator):
                bar.close()
                if not saved:
                    _save(t, recipe, state, position)
                _stop(t, stop, state)
            if _finished(t, state):
                break
        bar.close()
        position.epoch_done = True
        summed = global_position(t.accelerator, position)
        log.info("epoch %d done: train loss %.4f, %d unreadable training videos", epoch + 1, summed.mean(),
                 summed.failures)
        recipe.end_epoch(t.evaluated_model(), state.update)
        if not state.stopped_early and not _due(state.update, t.cfg.train.eval_every):
            _validate_and_save(t, recipe, state, position, start)
        elif t.cfg.train.checkpoint_every:
            _save(t, recipe, state, position)
        position = EpochPosition()
        if _finished(t, state):
            break
        if stop.requested(t.accelerator):  # during the epoch's end: its checkpoint holds this update already
            _stop(t, stop, state)
    seconds, speed = _finish(t, state.update - resumed_at, start, state.eval_seconds)
    return LoopResult(state, seconds, speed, t.guard.skipped)


def _stop(t: Training, stop: StopRequest, state: LoopState) -> None:
    """End a run asked to stop, its checkpoint saved at ``state.update``."""
    name = signal.Signals(stop.signal).name if stop.signal is not None else "SIGTERM (to another process)"
    message = (f"stopped by {name} at update {state.update}; {t.run.checkpoints / 'last'} saved: rerun the same "
               "command to resume")
    log.warning(message)
    raise TrainingStopped(message)


def _resume(t: Training, recipe: Recipe) -> tuple[LoopState, EpochPosition, int]:
    """The loop's counters, position and the updates done before this process started (for the speed figure)."""
    saved = t.session.saved
    if saved is None:
        return LoopState(), EpochPosition(), 0
    counters, position = restore(t.accelerator, t.session.checkpoint, saved, t.loader_generator, t.run, t.parts)
    t.guard.skipped = saved["skipped"]
    recipe.load_state_dict(saved["recipe"])
    return LoopState(**counters), position, counters["update"]


def _finished(t: Training, state: LoopState) -> bool:
    return state.update >= t.plan.total_updates or state.stopped_early


def _due(update: int, every: int) -> bool:
    return bool(every) and update % every == 0


def _micro_batch(t: Training, recipe: Recipe, batch: dict[str, Any], state: LoopState,
                 position: EpochPosition) -> None:
    """One micro-batch: freezing, the recipe's step and the (guarded) optimizer step, and the epoch's sums."""
    if t.freezer is not None and (message := t.freezer.update(state.update)):
        log.info("update %d: %s", state.update, message)
    with t.accelerator.accumulate(t.model):
        figures = recipe.step(batch, state.epoch, position.batches)  # the batch's index in the epoch, also resumed
        guarded_step(t.accelerator, t.model.parameters(), t.optimizer, t.cfg.train.max_grad_norm, t.guard,
                     state.update + 1, lambda: _save(t, recipe, state, position))
    position.batches += 1
    position.record(figures)
    position.failures += sum(error is not None for error in batch["video_errors"])


def _after_update(t: Training, recipe: Recipe, state: LoopState, position: EpochPosition, bar: Any,
                  start: float) -> bool:
    """After an optimizer update: the schedule, the EMA, the log, and validation or a checkpoint when due (then
    True: ``checkpoints/last`` holds this update)."""
    lr = reported_lr(t.optimizer)  # the rate this update used
    t.scheduler.step()
    state.update += 1
    state.last_lr = lr
    if t.ema is not None:
        t.ema.update(t.core, step=state.update)
    if _due(state.update, t.cfg.train.log_every):
        show_progress(bar, position.mean(), lr, t.cfg.train.batch_size * t.accelerator.num_processes)
        t.run.scalar("train/lr", lr, state.update)
        for name, value in position.means().items():
            if position.counts[name]:
                t.run.scalar(f"train/{name}", value, state.update)
    if _due(state.update, t.cfg.train.eval_every):
        _validate_and_save(t, recipe, state, position, start)
    elif _due(state.update, t.cfg.train.checkpoint_every):
        _save(t, recipe, state, position)
    else:
        return False
    return True


def _validate_and_save(t: Training, recipe: Recipe, state: LoopState, position: EpochPosition,
                       start: float) -> None:
    """The recipe's evaluation, a metrics.csv row, early stopping, and ``checkpoints/last``."""
    eval_start = time.perf_counter()
    summed = global_position(t.accelerator, position)
    evaluation = recipe.evaluate(t.evaluated_model(), state.update, summed)
    t.run.append_metrics({"step": state.update, "epoch": state.epoch, "train_loss": summed.mean(),
                          "lr": state.last_lr, **evaluation.row, "train_video_failures": summed.failures,
                          "elapsed_s": round(time.perf_counter() - start, 1)})
    state.evals_since_best = 0 if evaluation.improved else state.evals_since_best + 1
    patience = t.cfg.train.early_stopping_patience
    if patience and state.evals_since_best >= patience:
        state.stopped_early = True
        log.info("early stopping: no better score in %d validations", patience)
    _save(t, recipe, state, summed=summed)
    state.eval_seconds += time.perf_counter() - eval_start


def _save(t: Training, recipe: Recipe, state: LoopState, position: EpochPosition | None = None,
          summed: EpochPosition | None = None) -> None:
    """``checkpoints/last`` with everything a resume needs (see :mod:`mmcls.engine.last_checkpoint`); ``summed``:
    the epoch's sums over all processes when the caller has them, else gathered from ``position``. A disk that
    refuses the write is one :class:`~mmcls.io.WriteError` naming the file and the free space; the previous
    ``checkpoints/last`` stays as it was."""
    summed = summed if summed is not None else global_position(t.accelerator, position)
    with writing(t.run.checkpoints / "last.tmp", t.run.checkpoints):
        trainer = trainer_state(t.cfg, state, summed, t.loader_generator, recipe=recipe.state_dict(),
                                skipped=t.guard.skipped)
        save_last(t.accelerator, t.run, trainer, t.cfg.train.keep_checkpoints, t.parts)


def show_progress(bar: Any, loss: float, lr: float, videos_per_batch: int) -> None:
    """The training bar's figures: running loss, learning rate and videos/s over all processes (tqdm itself shows
    batches done and the time left)."""
    figures = bar.format_dict
    # batches/s of this process: tqdm's smoothed rate, else (smoothing off) the average so far
    done = figures["n"] - (figures.get("initial") or 0)  # a resumed bar starts at the batches already done
    rate = figures.get("rate") or (done / figures["elapsed"] if figures.get("elapsed") else None)
    speed = f"{rate * videos_per_batch:.1f}" if rate else "-"
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", videos_s=speed, refresh=False)


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
    log.info("weights identical on all %d processes", accelerator.num_processes)


def _finish(t: Training, updates: int, start: float, eval_seconds: float) -> tuple[float, float]:
    """End of the loop on every process: the replica check, a barrier, then (seconds, training videos/s without
    the validation time)."""
    check_replicas_in_sync(t.core, t.accelerator)
    t.accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - start
    videos = updates * t.cfg.train.batch_size * t.cfg.train.grad_accum_steps * t.accelerator.num_processes
    return elapsed, videos / max(elapsed - eval_seconds, 1e-9)
