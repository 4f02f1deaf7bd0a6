"""Adversarial training (``train.adversarial``): FGM and PGD on the word-embedding table, optionally on frame features.

Call :func:`adversarial_backward` right after the clean loss's backward, so that every ``.grad`` holds the clean
gradient. It perturbs the embedding table along its gradient (L2 norm over the whole table), runs the adversarial
forward and backward passes through the caller's ``compute_loss`` / ``backward``, leaves ``.grad`` = clean gradient +
``weight`` x the gradient at the final perturbed point, and restores the table bit for bit.

- FGM: one step ``r = epsilon * g / ||g||``; the adversarial gradient accumulates onto the clean one.
- PGD: ``steps`` steps of ``alpha * g / ||g||``, each projected back into the ``epsilon`` ball around the clean table;
  the intermediate passes only find the direction (their gradients are discarded) and the clean gradients are put
  back before the last pass.

With ``frames`` on, the frame features ``[B, T, D]`` of the clean pass are perturbed the same way, per video
(normalised over its ``[T, D]``), on a detached copy: the vision tower is not run again. The clean gradient for them is
read from ``frame_features.grad``, so the caller must call ``frame_features.retain_grad()`` before the clean backward
(for precomputed features, make the input features require grad first so the model's output carries a gradient).
Masked frames get a zero gradient and the model zeroes them anyway, so only the valid frames are perturbed.

A zero or non-finite gradient (a frozen table, an fp16 overflow) means no perturbation, but the passes
still run: under DDP every process must run the same number of backward passes, and the gradient keeps its scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from mmcls.config import AdversarialConfig


def _ascend(delta: Tensor, grad: Tensor | None, alpha: float, epsilon: float, dims: tuple[int, ...] | None) -> Tensor:
    """``delta + alpha * grad / ||grad||`` projected into the ``epsilon`` ball; norms over ``dims`` (None = all).

    Where the gradient's norm is zero or not finite, the step is zero.
    """
    if grad is None:
        return delta
    g = grad.detach().float()
    norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
    usable = torch.isfinite(norm) & (norm > 0)
    delta = delta + alpha * torch.where(usable, g / norm, 0.0)
    length = torch.linalg.vector_norm(delta, dim=dims, keepdim=True)
    return delta * torch.where(length > epsilon, epsilon / length, 1.0)


def _zero_grads(params: list[nn.Parameter]) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.zero_()


def _restore_grads(params: list[nn.Parameter], saved: list[Tensor | None]) -> None:
    for p, grad in zip(params, saved, strict=True):
        if grad is None:
            p.grad = None
        elif p.grad is None:
            p.grad = grad
        else:
            p.grad.copy_(grad)


def adversarial_backward(compute_loss: Callable[[Tensor | None], Tensor], backward: Callable[[Tensor], None],
                         embedding: nn.Parameter, params: Iterable[nn.Parameter], cfg: AdversarialConfig,
                         frame_features: Tensor | None = None, embedding_grad: Tensor | None = None) -> Tensor:
    """Run the FGM / PGD passes of ``cfg`` after the clean backward; returns the last adversarial loss (detached).

    ``compute_loss(frames)`` runs the model with the current (perturbed) ``embedding`` table, and with ``frames``
    (perturbed features ``[B, T, D]``) when given, else with the clean features detached. ``backward(loss)`` is
    ``accelerator.backward``. ``params`` are the model's trainable parameters, whose clean gradients PGD saves and
    restores. ``frame_features`` (the clean pass's features, used when ``cfg.frames``) must have had
    ``retain_grad()`` called before the clean backward. ``embedding_grad`` is the clean pass's own gradient of the
    table (captured with a hook before it was accumulated into ``.grad`` and, under DDP, averaged over processes);
    None = read ``embedding.grad``. The PGD passes' directions are captured the same way, so the attack's strength
    does not depend on the number of processes or accumulation steps.
    """
    if cfg.method == "none":
        raise ValueError("adversarial_backward needs train.adversarial.method fgm or pgd")
    steps, alpha = (1, cfg.epsilon) if cfg.method == "fgm" else (cfg.steps, cfg.alpha)
    params = list(params)
    if not any(p is embedding for p in params):
        params.append(embedding)
    saved = [None if p.grad is None else p.grad.detach().clone() for p in params] if steps > 1 else []

    backup = embedding.detach().clone()
    emb_delta = torch.zeros_like(backup, dtype=torch.float32)
    emb_grad = embedding_grad if embedding_grad is not None else embedding.grad
    captured: list[Tensor] = []
    hook = embedding.register_hook(lambda g: captured.append(g.detach()))  # each pass's own gradient
    clean, frame_delta, frame_grad = None, None, None
    if cfg.frames and frame_features is not None:
        clean, frame_grad = frame_features.detach(), frame_features.grad
        frame_delta = torch.zeros_like(clean, dtype=torch.float32)
    try:
        for step in range(steps):
            last = step == steps - 1
            emb_delta = _ascend(emb_delta, emb_grad, alpha, cfg.epsilon, dims=None)
            embedding.data.copy_(backup + emb_delta.to(backup.dtype))
            frames = None
            if clean is not None:
                frame_delta = _ascend(frame_delta, frame_grad, alpha, cfg.epsilon, dims=tuple(range(1, clean.ndim)))
                frames = (clean + frame_delta.to(clean.dtype)).requires_grad_(not last)
            if not last:  # this pass only finds the next direction
                _zero_grads(params)
            elif saved:
                _restore_grads(params, saved)
            captured.clear()
            loss = compute_loss(frames)
            backward(loss * cfg.weight if last else loss)
            emb_grad = sum(captured) if captured else None
            frame_grad = frames.grad if frames is not None else None
    finally:
        hook.remove()
        embedding.data.copy_(backup)
    return loss.detach()
