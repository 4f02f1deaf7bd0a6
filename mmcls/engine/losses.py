"""Training losses: class-weighted, label-smoothed, focal, mixable soft-target cross-entropy; R-Drop; logit adjustment.

:class:`Criterion` is built once per run and turns model outputs and a batch into ``loss`` (what is optimised) and
its parts. Everything works on soft targets ``[B, C]``, so label smoothing, mixup/CutMix labels and distillation
targets share one code path; with every option off it is plain cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmcls.config import Config, LossConfig, ModelConfig
from mmcls.data.categories import CategorySpace
from mmcls.labels import IGNORE_INDEX


def _check_counts(counts: Sequence[int]) -> np.ndarray:
    """Counts as float64 ``[C]``; ValueError when empty or negative."""
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"class counts must be a non-empty list, got shape {n.shape}")
    if (n < 0).any() or not np.isfinite(n).all():
        raise ValueError(f"class counts must be finite and >= 0, got {n.min()}")
    return n


def class_weights(counts: Sequence[int], mode: str, power: float = 0.5, beta: float = 0.999) -> torch.Tensor | None:
    """Per-class loss weights ``[C]`` for imbalance, or None for ``mode="none"``.

    ``inverse``: ``n_c^-power``; ``effective``: ``(1 - beta) / (1 - beta^n_c)`` (Cui et al. 2019). Normalised so the
    average weight over the training samples is 1 (the loss scale, hence the learning rate, stays comparable).
    Unseen classes get the largest weight of the seen ones (they never occur in training anyway).
    """
    if mode == "none":
        return None
    n = _check_counts(counts)
    seen = n > 0
    if not seen.any():
        raise ValueError("class counts are all zero: no weights can be derived")
    if mode == "inverse":
        if power < 0:
            raise ValueError(f"class weight power must be >= 0, got {power}")
        raw = n[seen] ** -power
    elif mode == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"effective-number beta must be in [0, 1), got {beta}")
        raw = (1.0 - beta) / (1.0 - beta ** n[seen])
    else:
        raise ValueError(f"unknown class weight mode {mode!r} (choose from none, inverse, effective)")
    weights = np.full(n.shape, raw.max())
    weights[seen] = raw
    weights *= n.sum() / (n * weights).sum()
    return torch.tensor(weights, dtype=torch.float32)


def logit_adjustment(counts: Sequence[int], tau: float) -> np.ndarray:
    """``-tau * log(prior)`` ``[C]`` to add to logits at prediction time (Menon et al. 2021).

    Raises rare classes relative to frequent ones, which helps macro-F1. The prior is add-one smoothed,
    ``(n_c + 1) / sum(n + 1)``, so unseen classes stay finite; ``tau = 0`` is a no-op.
    """
    n = _check_counts(counts)
    prior = (n + 1.0) / (n + 1.0).sum()
    return (-tau * np.log(prior)).astype(np.float32)


def smooth_targets(labels: torch.Tensor, num_classes: int, eps: float = 0.0) -> torch.Tensor:
    """``(1 - eps)`` one-hot ``+ eps / C`` as float32 ``[B, C]``; rows of ignored labels (-100) are all zero."""
    labelled = labels != IGNORE_INDEX
    one_hot = F.one_hot(torch.where(labelled, labels, 0), num_classes).float()  # [B, C]
    return (one_hot * (1.0 - eps) + eps / num_classes) * labelled.unsqueeze(1)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, focal_gamma: float = 0.0) -> torch.Tensor:
    """Per-sample ``-sum_c q_c (1 - p_c)^gamma log p_c`` ``[B]`` in float32 (focal loss when ``gamma > 0``).

    With ``gamma = 0`` and one-hot (smoothed) targets it equals ``F.cross_entropy`` (with ``label_smoothing``).
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    if focal_gamma > 0:
        # 1 - p = -expm1(log p) is exact near p = 1; the floor keeps the gradient of x^gamma (gamma < 1) finite at 0
        log_p = log_p * (-torch.expm1(log_p)).clamp_min(1e-12).pow(focal_gamma)
    return -(targets.float() * log_p).sum(dim=-1)


@dataclass
class Mixing:
    """How a batch was mixed: sample ``i`` holds ``lam`` of itself and ``1 - lam`` of sample ``perm[i]``."""

    perm: torch.Tensor  # long [B]: the partner of each sample
    lam: float  # weight of the sample's own content


def mix_targets(targets: torch.Tensor, mixing: Mixing) -> torch.Tensor:
    """Targets ``[B, C]`` mixed like the inputs: ``lam * targets + (1 - lam) * targets[perm]``."""
    return mixing.lam * targets + (1.0 - mixing.lam) * targets[mixing.perm]


def rdrop_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """R-Drop: symmetric KL ``0.5 * (KL(p_a || p_b) + KL(p_b || p_a))`` summed over classes, mean over samples."""
    log_a = F.log_softmax(logits_a.float(), dim=-1)
    log_b = F.log_softmax(logits_b.float(), dim=-1)
    # KL(a||b) + KL(b||a) = sum_c (p_a - p_b)(log p_a - log p_b)
    return 0.5 * ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(dim=-1).mean()


def validation_loss(outputs: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
    """Plain level-2 cross-entropy over the labelled samples (unweighted, so runs with any recipe compare)."""
    return F.cross_entropy(outputs["logits"].float(), batch["labels"], ignore_index=IGNORE_INDEX)


def _sample_weights(labels: torch.Tensor, class_w: torch.Tensor | None, mixing: Mixing | None) -> torch.Tensor:
    """Per-sample weight ``[B]``: the class weight of the label (mixed like the targets), 0 where unlabelled.

    A mixed sample counts only when both it and its partner are labelled (otherwise its target is incomplete).
    """
    labelled = labels != IGNORE_INDEX
    weights = labelled.float() if class_w is None else class_w[torch.where(labelled, labels, 0)]
    if mixing is not None:
        weights = mixing.lam * weights + (1.0 - mixing.lam) * weights[mixing.perm]
        labelled = labelled & labelled[mixing.perm]
    return weights * labelled


def _samples(outputs: dict[str, Any], key: str) -> torch.Tensor:
    """``outputs[key + "_samples"]`` ``[K, B, C]`` under multi-sample dropout, else ``outputs[key]`` ``[B, C]``."""
    samples = outputs.get(f"{key}_samples")
    return samples if samples is not None else outputs[key]


class Criterion:
    """The training loss of a run: level 2 (+ weighted level 1 and video-only auxiliary losses).

    Level 2: label-smoothed (or given soft) targets, mixed by ``mixing``, focal, reduced with per-sample class
    weights as ``sum(w_i l_i) / sum(w_i)`` (like ``F.cross_entropy(weight=...)``). Level 1: the same without class
    weights. Video: like level 2 over the samples with at least one frame in ``batch["frame_mask"]`` (pass the mask
    of the frames the model saw, i.e. the one :func:`mmcls.engine.mix.mix_frames` returns). Unlabelled samples (-100)
    contribute nothing; a part with no sample left is 0 with its head still in the graph (every DDP process then
    builds the same graph).

    ``across_processes``: the denominators ``sum(w_i)`` are averaged over all processes (one all-reduce of three
    numbers per call), so that DDP's gradient average equals the gradient of ONE weighted mean over the global
    batch. Otherwise a process whose shard holds fewer videos with frames (or other class weights) would get the
    same say as the others, and two processes would not train like one with the same global batch.
    """

    def __init__(self, num_lv2: int, num_lv1: int, loss_cfg: LossConfig, model_cfg: ModelConfig,
                 weights: torch.Tensor | None = None, lv1_of_lv2: Sequence[int] | None = None,
                 across_processes: bool = False) -> None:
        if weights is not None and tuple(weights.shape) != (num_lv2,):
            raise ValueError(f"class weights must have shape ({num_lv2},), got {tuple(weights.shape)}")
        self.num_lv2, self.num_lv1 = num_lv2, num_lv1
        self.loss_cfg, self.model_cfg = loss_cfg, model_cfg
        self.weights = weights
        self.across_processes = across_processes
        # [C2, C1] 0/1: sums soft level-2 targets into level-1 targets
        self.lv2_to_lv1 = None if lv1_of_lv2 is None else F.one_hot(torch.as_tensor(list(lv1_of_lv2)), num_lv1).float()

    @classmethod
    def from_config(cls, cfg: Config, categories: CategorySpace, across_processes: bool = False) -> Criterion:
        """Class weights from the training counts of ``categories`` as ``cfg.train.loss`` says."""
        loss_cfg = cfg.train.loss
        weights = class_weights(categories.count_list(), loss_cfg.class_weights, loss_cfg.class_weight_power,
                                loss_cfg.effective_beta)
        return cls(categories.num_lv2, categories.num_lv1, loss_cfg, cfg.model, weights,
                   categories.lv1_index_of_lv2(), across_processes)

    def to(self, device: torch.device | str) -> Criterion:
        """Move the class weights to ``device`` once (instead of a copy every step); returns ``self``."""
        if self.weights is not None:
            self.weights = self.weights.to(device)
        if self.lv2_to_lv1 is not None:
            self.lv2_to_lv1 = self.lv2_to_lv1.to(device)
        return self

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], mixing: Mixing | None = None,
                 soft_targets: torch.Tensor | None = None, soft_mask: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """``loss`` and its parts ``loss_lv2``, ``loss_lv1``, ``loss_video`` (the last two when their head is on).

        ``soft_targets`` ``[B, C2]`` replace the smoothed level-2 labels (distillation, soft pseudo-labels) in the
        rows where ``soft_mask`` ``[B]`` is True (every row when it is None); they are mixed but not smoothed, and
        unlabelled samples still count for nothing. The level-1 target of a soft row is its level-2 target summed
        per level-1 class (when the criterion knows the hierarchy, as :meth:`from_config` builds it).
        """
        labels = batch["labels"]
        class_w = None if self.weights is None else self.weights.to(labels.device)  # no-op after .to(device)
        targets = self._targets(labels, self.num_lv2)
        rows = None
        if soft_targets is not None:
            rows = (soft_mask if soft_mask is not None else torch.ones_like(labels, dtype=torch.bool)).unsqueeze(1)
            targets = torch.where(rows, soft_targets.float(), targets)
        if mixing is not None:
            targets = mix_targets(targets, mixing)
        # each part: (name, logits, targets, per-sample weights, classes, loss weight); the video part may be absent
        # on one process (a batch without any readable video skips the video head) and present on another
        parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, float] | None] = {
            "loss_lv2": (_samples(outputs, "logits"), targets, _sample_weights(labels, class_w, mixing),
                         self.num_lv2, 1.0), "loss_lv1": None, "loss_video": None}
        if outputs.get("logits_lv1") is not None and self.model_cfg.lv1_loss_weight > 0:
            labels_lv1 = batch["labels_lv1"]
            targets_lv1 = self._targets(labels_lv1, self.num_lv1)
            if rows is not None and self.lv2_to_lv1 is not None:
                soft_lv1 = soft_targets.float() @ self.lv2_to_lv1.to(soft_targets.device)  # [B, C1]
                targets_lv1 = torch.where(rows, soft_lv1, targets_lv1)
            if mixing is not None:
                targets_lv1 = mix_targets(targets_lv1, mixing)
            parts["loss_lv1"] = (_samples(outputs, "logits_lv1"), targets_lv1,
                                 _sample_weights(labels_lv1, None, mixing), self.num_lv1,
                                 self.model_cfg.lv1_loss_weight)
        if outputs.get("logits_video") is not None and self.model_cfg.aux_video_weight > 0:
            frame_mask = batch.get("frame_mask")
            has_video = frame_mask.any(dim=1) if frame_mask is not None else torch.zeros_like(labels, dtype=torch.bool)
            parts["loss_video"] = (outputs["logits_video"], targets, parts["loss_lv2"][2] * has_video, self.num_lv2,
                                   self.model_cfg.aux_video_weight)
        denominators = self._denominators([part[2] if part else None for part in parts.values()], labels.device)
        losses: dict[str, torch.Tensor] = {}
        total = None
        for (name, part), denominator in zip(parts.items(), denominators, strict=True):
            if part is None:
                continue
            logits, part_targets, part_weights, num_classes, loss_weight = part
            losses[name] = self._part(logits, part_targets, part_weights, num_classes, denominator)
            total = losses[name] if total is None else total + loss_weight * losses[name]
        losses["loss"] = total
        return losses

    def _denominators(self, weights: list[torch.Tensor | None], device: torch.device) -> torch.Tensor:
        """``sum(w)`` of each part ``[P]`` (0 for an absent part); with ``across_processes``, its mean over the
        processes (the same collective on every process, whichever parts it has)."""
        sums = torch.stack([w.sum().float() if w is not None else torch.zeros((), device=device) for w in weights])
        if self.across_processes and torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = sums.detach().clone()
            torch.distributed.all_reduce(sums)
            sums /= torch.distributed.get_world_size()
        return sums.detach()

    def _targets(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        return smooth_targets(labels, num_classes, self.loss_cfg.label_smoothing)

    def _part(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, num_classes: int,
              denominator: torch.Tensor) -> torch.Tensor:
        """One head's loss: ``sum(w_i l_i) / denominator`` over its per-sample focal soft cross-entropy (0, still in
        the graph, when the denominator is 0); logits ``[K, B, C]`` (K multi-sample-dropout samples) give the mean
        of the K losses."""
        if logits.shape[-1] != num_classes:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the criterion expects {num_classes}")
        if logits.ndim == 3:
            return torch.stack([self._part(sample, targets, weights, num_classes, denominator)
                                for sample in logits]).mean()
        losses = soft_cross_entropy(logits, targets, self.loss_cfg.focal_gamma)
        return (weights * losses).sum() / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
