"""One training micro-batch: the recipe's objective (finetuning: mixing, forward with R-Drop, the criterion;
pretraining: masking and the task losses), its backward, the adversarial passes and SAM's second pass.

The shared loop (:mod:`mmcls.engine.loop`) calls :meth:`TrainStep.__call__` inside ``accelerator.accumulate`` and
then steps the optimizer. Every trick is off unless its config switch is on, and a plain step is exactly forward,
loss, backward.

Cost per step relative to a plain one (the ablation in docs/RECIPES.md measures it): R-Drop doubles the fusion
and heads but runs the vision tower once; FGM adds one forward/backward of the fusion (frame features are reused,
the vision tower is not run again), PGD K of them; SAM a whole second forward/backward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from mmcls.config import Config
from mmcls.engine.adversarial import adversarial_backward
from mmcls.engine.inference import model_inputs
from mmcls.engine.losses import Criterion, Mixing, rdrop_loss
from mmcls.engine.mix import mix_frames
from mmcls.engine.sam import SharpnessAwareMinimization
from mmcls.errors import ConfigError


@dataclass
class StepInputs:
    """What the model sees for one micro-batch (after mixing or masking), and the mixing the targets must follow."""

    inputs: dict[str, Any]
    mixing: Mixing | None = None


class Objective(Protocol):
    """What a recipe's step computes; :class:`TrainStep` adds the backward passes and the tricks around it."""

    def prepare(self, batch: dict[str, Any], epoch: int, index: int) -> StepInputs:
        """The model inputs of micro-batch ``index`` of ``epoch`` (drawn once, reused by every pass)."""

    def losses(self, batch: dict[str, Any], step: StepInputs, frame_features: torch.Tensor | None = None,
               rdrop: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Forward and losses (``loss`` is optimised); ``frame_features`` replace the vision tower's output (the
        adversarial passes). Returns the losses and the model's outputs."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RepeatedBatch(Mapping[str, Any]):
    """``batch`` as seen by a forward that encoded it ``repeats`` times (R-Drop): every tensor whose first dimension
    is the batch size is stacked ``repeats`` times on access; other values pass through. Derived from the batch
    itself, so a new per-sample key needs no list kept in step."""

    def __init__(self, batch: Mapping[str, Any], repeats: int, size: int) -> None:
        self.batch, self.repeats, self.size = batch, repeats, size

    def __getitem__(self, key: str) -> Any:
        value = self.batch[key]
        if self.repeats > 1 and isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == self.size:
            return value.repeat(self.repeats, *([1] * (value.ndim - 1)))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.batch)

    def __len__(self) -> int:
        return len(self.batch)


def _repeat_mixing(mixing: Mixing | None, batch_size: int, repeats: int) -> Mixing | None:
    """The partners of a batch encoded ``repeats`` times: copy r of sample i mixes with copy r of its partner."""
    if mixing is None or repeats == 1:
        return mixing
    offsets = torch.arange(repeats, device=mixing.perm.device).repeat_interleave(batch_size) * batch_size
    return Mixing(perm=mixing.perm.repeat(repeats) + offsets, lam=mixing.lam)


class ClassificationObjective:
    """Finetuning's objective: frame mixing (mixup / CutMix), the forward (twice in one pass for R-Drop) and the
    criterion."""

    def __init__(self, cfg: Config, model: torch.nn.Module, core: torch.nn.Module, criterion: Criterion,
                 seed: int) -> None:
        """``seed``: of the mixing draws (:func:`classification_step` makes it differ per process)."""
        self.model, self.core, self.criterion = model, core, criterion
        self.rdrop_alpha = cfg.train.loss.rdrop_alpha
        self.mix = cfg.train.mix if cfg.train.mix.enabled else None
        # mixing draws differ per process (each mixes its own shard) but are reproducible from the seed
        self.mix_generator = torch.Generator().manual_seed(seed)
        # cached features need a gradient for the frame attack to start from (pixels get one from the tower)
        attack = cfg.train.adversarial
        self.features_need_grad = attack.method != "none" and attack.frames and core.encoder.reads_features

    def state_dict(self) -> dict[str, Any]:
        """The mixing generator's state (JSON-ready), for resumable checkpoints."""
        return {"mix_generator": self.mix_generator.get_state().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mix_generator.set_state(torch.tensor(state["mix_generator"], dtype=torch.uint8))

    def prepare(self, batch: dict[str, Any], epoch: int, index: int) -> StepInputs:
        inputs = model_inputs(batch)
        if self.mix is None or inputs.get("frames") is None:
            return StepInputs(inputs)
        vision = self.core.encoder.vision  # mixing blends normalised pixels: the tower's own statistics
        mean, std = (vision.mean, vision.std) if vision is not None else ((0.0,) * 3, (1.0,) * 3)
        mixed = mix_frames(inputs["frames"], inputs["frame_mask"], self.mix, self.mix_generator, mean, std)
        if mixed is None:
            return StepInputs(inputs)
        frames, frame_mask, mixing = mixed
        return StepInputs({**inputs, "frames": frames, "frame_mask": frame_mask}, mixing)

    def losses(self, batch: dict[str, Any], step: StepInputs, frame_features: torch.Tensor | None = None,
               rdrop: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        inputs = dict(step.inputs)
        if frame_features is not None:
            inputs["frames"] = None
            inputs["features"] = frame_features
        elif self.features_need_grad and inputs.get("frames") is not None:
            inputs["frames"] = inputs["frames"].float().requires_grad_()
        repeats = 2 if rdrop and self.rdrop_alpha > 0 else 1
        outputs = self.model(**inputs, repeats=repeats)
        size = inputs["input_ids"].shape[0]
        view = RepeatedBatch({**batch, "frame_mask": inputs.get("frame_mask")}, repeats, size)
        losses = self.criterion(outputs, view, mixing=_repeat_mixing(step.mixing, size, repeats),
                                soft_targets=view.get("soft_targets"), soft_mask=view.get("soft_mask"))
        if repeats > 1:
            logits = outputs["logits"].float()
            losses["loss_rdrop"] = rdrop_loss(logits[:size], logits[size:])
            losses["loss"] = losses["loss"] + self.rdrop_alpha * losses["loss_rdrop"]
        return losses, outputs


class TrainStep:
    """Forward, losses and backward of one micro-batch of ``objective`` with the step-level tricks of
    ``cfg.train`` (FGM / PGD on the word embeddings and frame features, SAM); both recipes use it."""

    def __init__(self, cfg: Config, model: torch.nn.Module, core: torch.nn.Module, accelerator: Accelerator,
                 objective: Objective) -> None:
        """``model`` is the prepared (maybe DDP-wrapped) model, ``core`` the unwrapped one (same parameters)."""
        self.model, self.core = model, core
        self.objective = objective
        self.accelerator = accelerator
        self.adversarial = cfg.train.adversarial if cfg.train.adversarial.method != "none" else None
        if cfg.train.sam_rho > 0 and accelerator.mixed_precision == "fp16":  # e.g. train.mixed_precision=auto on V100
            raise ConfigError("train.sam_rho: SAM does not work with fp16 loss scaling, which "
                              f"train.mixed_precision={cfg.train.mixed_precision} chose here; set bf16 or no")
        self.sam = SharpnessAwareMinimization(list(model.parameters()), cfg.train.sam_rho) \
            if cfg.train.sam_rho > 0 else None

    def state_dict(self) -> dict[str, Any]:
        return self.objective.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state)

    def __call__(self, batch: dict[str, Any], epoch: int = 0, index: int = 0) -> dict[str, torch.Tensor]:
        """Run micro-batch ``index`` of ``epoch``, leave its gradient accumulated in ``.grad``; returns the detached
        losses.

        Order: clean pass; with SAM, the weights move to the sharp point and the pass is repeated there; then the
        adversarial passes (at the sharp point with SAM, so the update gets clean + adversarial gradients there);
        SAM moves the weights back. The losses returned are the first (clean) pass's.
        """
        step = self.objective.prepare(batch, epoch, index)
        losses, features, grad = self._backward(batch, step)
        if self.sam is not None and self.accelerator.sync_gradients:
            self.sam.ascend()
            _, features, grad = self._backward(batch, step)
        if self.adversarial is not None:
            losses["loss_adv"] = adversarial_backward(
                self._attack_loss(batch, step, features), self.accelerator.backward, self._embedding(),
                self.model.parameters(), self.adversarial, frame_features=features, embedding_grad=grad)
        if self.sam is not None and self.accelerator.sync_gradients:
            self.sam.descend()
        return {name: value.detach() for name, value in losses.items()}

    def _embedding(self) -> torch.nn.Parameter:
        return self.core.encoder.text.word_embeddings

    def _backward(self, batch: dict[str, Any], step: StepInputs
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """Forward, loss and backward of the micro-batch. With adversarial training on, also returns the clean frame
        features ``[B, T, D]`` (with their gradient when the frame attack is on) and this micro-batch's own gradient
        of the word embeddings: ``.grad`` holds more than that (earlier micro-batches; under DDP the average over
        processes), and the attack direction must not depend on the number of processes or accumulation steps."""
        losses, outputs = self.objective.losses(batch, step)
        if self.adversarial is None:
            self.accelerator.backward(losses["loss"])
            return losses, None, None
        features = outputs.get("frame_features")
        attack_frames = self.adversarial.frames and features is not None
        if attack_frames and not features.requires_grad:
            self._warn_frozen_frames()
            attack_frames = False
        if attack_frames:
            features.retain_grad()  # the frame attack starts from the clean gradient of the features
        captured: list[torch.Tensor] = []
        hook = self._embedding().register_hook(lambda g: captured.append(g.detach()))  # before accumulation
        try:
            self.accelerator.backward(losses["loss"])
        finally:
            hook.remove()
        clean = None
        if features is not None:  # [B, T, D]; under R-Drop the batch was encoded twice: first copy, summed gradient
            size = step.inputs["input_ids"].shape[0]
            clean = features[:size].detach()
            if attack_frames and features.grad is not None:
                clean.grad = features.grad.view(-1, *clean.shape).sum(dim=0)
        return losses, clean, (sum(captured) if captured else None)

    def _warn_frozen_frames(self) -> None:
        if not getattr(self, "_warned_frozen", False):
            logging.getLogger("mmcls").warning(
                "train.adversarial.frames: the frame features carry no gradient (the vision tower is frozen), so "
                "only the word embeddings are attacked while it stays frozen")
            self._warned_frozen = True

    def _attack_loss(self, batch: dict[str, Any], step: StepInputs, clean: torch.Tensor | None
                     ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        """The adversarial passes' loss: the fusion re-run on the clean frame features (no vision tower), or on
        the perturbed ones when the frame attack gives them."""
        def loss(perturbed: torch.Tensor | None) -> torch.Tensor:
            frames = perturbed if perturbed is not None else (clean.detach() if clean is not None else None)
            return self.objective.losses(batch, step, frame_features=frames, rdrop=False)[0]["loss"]
        return loss


def classification_step(cfg: Config, model: torch.nn.Module, core: torch.nn.Module, criterion: Criterion,
                        accelerator: Accelerator, seed: int | None = None) -> TrainStep:
    """Finetuning's :class:`TrainStep`; mixing draws differ per process (each mixes its own shard) but are
    reproducible from ``seed`` (default ``cfg.seed``)."""
    seed = cfg.seed if seed is None else seed
    objective = ClassificationObjective(cfg, model, core, criterion, seed + 7919 * accelerator.process_index)
    return TrainStep(cfg, model, core, accelerator, objective)
