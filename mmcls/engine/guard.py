"""Guards around the optimizer step: skip updates whose gradients are not finite and stop a run that keeps diverging
(running out of device memory is :func:`mmcls.accelerators.out_of_memory_message`).

A NaN or inf loss (an overflow, a bad batch, a learning rate too high) poisons every weight it reaches. The training
loops therefore measure the global gradient norm at every optimizer update (it is the clipping norm, so this costs
nothing extra when clipping is on) and skip the update when it is not finite: the weights and the optimizer moments
stay as they were. Under DDP the norm is taken after the all-reduce, so every process makes the same choice.
With fp16 loss scaling the GradScaler already skips such steps (and lowers its scale); the guard then only counts.
After ``train.max_nonfinite_updates`` skipped updates in a row the run stops with :class:`TrainingDiverged`.
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
