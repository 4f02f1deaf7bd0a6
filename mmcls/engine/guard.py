"""Guards around the optimizer step: skip updates whose gradients are not finite and stop a run that keeps diverging
(running out of device memory is :func:`mmcls.accelerators.out_of_memory_message`).

A NaN or inf loss (an overflow, a bad batch, a learning rate too high) poisons every weight it reaches. The training
loops therefore measure the global gradient norm at every optimizer update (it is the clipping norm, so this costs
nothing extra when clipping is on) and skip the update when it is not finite: the weights and the optimizer moments
stay as they were. Under DDP the norm is taken after the all-reduce, so every process makes the same choice.
With fp16 loss scaling the GradScaler already skips such steps (and lowers its scale); the guard then only counts.
After ``train.max_nonfinite_updates`` skipped updates in a row the run stops with :class:`TrainingDiverged`.

A finite gradient can still make non-finite weights (``train.lr=1e308``): the recipes check the weights before they
export them (:func:`unexportable`: never a NaN model, never an untrained one as ``best/``), and a run that ends with
nothing exported is a :class:`NoModel` error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator

from mmcls.errors import UserError

logger = logging.getLogger("mmcls")


class TrainingDiverged(UserError):
    """Too many optimizer updates in a row had a non-finite gradient."""


class NoModel(UserError):
    """A run ended without weights worth exporting: every validated model was non-finite or untrained."""


class NonFiniteGuard:
    """Counts non-finite updates; :meth:`check` says whether an update may be applied."""

    def __init__(self, limit: int) -> None:
        """``limit``: stop after this many non-finite updates in a row (0 = never stop, only skip)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self.consecutive = 0
        self.skipped = 0

    def check(self, grad_norm: torch.Tensor | float | None, update: int) -> bool:
        """True when ``grad_norm`` is finite (or unknown: None); else count, warn, and raise once the limit is hit."""
        if grad_norm is None or math.isfinite(float(grad_norm)):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped += 1
        logger.warning("update %d: gradient norm %s: update skipped (%d in a row, %d in this run)", update,
                       float(grad_norm), self.consecutive, self.skipped)
        if self.limit and self.consecutive >= self.limit:
            raise TrainingDiverged(
                f"{self.consecutive} updates in a row had a non-finite gradient (last: update {update}); the run "
                "stopped and its last checkpoint is intact. Lower train.lr, keep train.max_grad_norm > 0, or try "
                "train.mixed_precision=bf16 instead of fp16")
        return False


def nonfinite_weights(module: torch.nn.Module, accelerator: Accelerator | None = None) -> str | None:
    """The name of the first parameter or floating buffer of ``module`` that holds a NaN or an inf (None when all are
    finite). With ``accelerator``, the answer is agreed across processes (a process that finds none reports
    ``"(on another process)"`` when another does), so that every process decides alike (e.g. on sharded weights).

    A model like that predicts one constant class: it is never exported (``best/``), however it scores."""
    bad = next((name for name, tensor in (*module.named_parameters(), *module.named_buffers())
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all())), None)
    if accelerator is not None and accelerator.num_processes > 1:
        flag = torch.tensor([bad is not None], dtype=torch.int32, device=accelerator.device)
        if bool(accelerator.gather(flag).any()) and bad is None:
            bad = "(on another process)"
    return bad


def unexportable(module: torch.nn.Module, accelerator: Accelerator, guard: NonFiniteGuard, update: int) -> str | None:
    """Why the weights ``module`` after ``update`` updates must not be exported as ``best/`` (None when they may):
    no update so far had a finite gradient (they are the untrained start), or a weight is NaN or inf (the model
    predicts one constant class). Every process gives the same answer."""
    if update <= 0:
        return "no optimizer update was made: the weights are untrained"
    if guard.skipped >= update:
        return f"no update had a finite gradient yet ({guard.skipped} of {update} skipped): the weights are untrained"
    bad = nonfinite_weights(module, accelerator)
    if bad is not None:
        return f"the weights are not finite ({bad} holds NaN or inf)"
    return None


def no_model_error(reason: str, update: int) -> NoModel:
    """The one-line error of a run that ends with nothing to export (``reason``: the last :func:`unexportable`)."""
    return NoModel(f"no model was exported: at every validation (the last at update {update}) {reason}; lower "
                   "train.lr (and train.lr_text / train.lr_vision), keep train.max_grad_norm > 0, or try "
                   "train.mixed_precision=bf16 instead of fp16")


def guarded_step(accelerator: Accelerator, parameters: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                 max_grad_norm: float, guard: NonFiniteGuard, update: int,
                 before_stop: Callable[[], None] | None = None) -> None:
    """Clip (when ``max_grad_norm > 0``), then step and zero the optimizer unless the gradient is not finite.

    Call it inside ``accelerator.accumulate``: between synchronisations it only passes through (accelerate's
    optimizer ignores ``step`` and ``zero_grad`` while gradients accumulate). ``before_stop`` runs (e.g. saves a
    checkpoint) before :class:`TrainingDiverged` propagates.
    """
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm > 0 else math.inf)
        try:
            finite = guard.check(norm, update)
        except TrainingDiverged:
            if before_stop is not None:
                before_stop()
            raise
        if not finite and accelerator.scaler is None:
            optimizer.zero_grad(set_to_none=True)
            return
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
