"""Sharpness-aware minimisation (SAM, Foret et al. 2021) around any optimizer.

SAM minimises the loss at the worst point of a small neighbourhood: the gradient of the update is taken at
``w + rho * g / ||g||_2`` (``g`` the ordinary gradient at ``w``), then applied to the original weights ``w``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import get_total_norm


class SharpnessAwareMinimization:
    """Moves the weights to the sharp point of the neighbourhood and back, around an unchanged optimizer step.

    One update::

        loss(model(batch)).backward()
        sam.ascend()                     # w -> w + rho * g / ||g||, gradients cleared
        loss(model(batch)).backward()    # the gradient at the perturbed weights
        sam.descend()                    # back to w exactly, keeping that gradient
        clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()

    Under DDP the first backward has already all-reduced the gradients when :meth:`ascend` runs, so every process
    applies the same perturbation.
    """

    def __init__(self, params: Iterable[nn.Parameter], rho: float) -> None:
        self.params = list(params)
        self.rho = rho
        self._saved: list[tuple[nn.Parameter, torch.Tensor]] = []

    @torch.no_grad()
    def ascend(self) -> bool:
        """After the first backward: perturb the parameters that have gradients, then clear all gradients.

        Returns whether the weights moved: a zero or non-finite gradient norm leaves them where they are (the
        second pass then gives the gradient at the unperturbed weights).
        """
        params = [p for p in self.params if p.grad is not None]
        norm = float(get_total_norm([p.grad for p in params]))
        moved = norm > 0 and math.isfinite(norm)
        if moved:
            scale = self.rho / norm
            for param in params:
                self._saved.append((param, param.detach().clone()))
                param.add_(param.grad, alpha=scale)
        for param in params:
            param.grad = None
        return moved

    @torch.no_grad()
    def descend(self) -> None:
        """After the second backward: restore the weights saved by :meth:`ascend` bit for bit; gradients stay."""
        for param, saved in self._saved:
            param.copy_(saved)
        self._saved.clear()
