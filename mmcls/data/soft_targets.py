"""Soft training targets per video: soft pseudo-labels from the annotation file, and distillation from a teacher.

A video's target is, in order of precedence:

1. its ``category_probs`` (a soft pseudo-label written by tools/pseudo_label.py), as given;
2. ``alpha * one-hot(label) + (1 - alpha) * softmax(teacher logits / T)`` when ``train.distill.teacher`` covers it;
3. nothing here: the loss uses the (label-smoothed) hard label.

Targets are float32 ``[C]`` vectors in the run's category order; the collator stacks them with a mask saying which
rows are soft (:class:`mmcls.engine.losses.Criterion` keeps the hard target for the others).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mmcls.config import DistillConfig
from mmcls.data.categories import CategorySpace
from mmcls.data.records import VideoRecord
from mmcls.errors import ConfigError
from mmcls.logits import load_logits, softmax

logger = logging.getLogger("mmcls.data")


class SoftTargets:
    """Maps a record to its soft target ``[C]`` or None (see the module docstring)."""

    def __init__(self, categories: CategorySpace, alpha: float, teacher_ids: Sequence[str] = (),
                 teacher_probs: np.ndarray | None = None) -> None:
        """``teacher_probs`` float32 ``[N, C]`` (columns in ``categories`` order), row ``i`` for ``teacher_ids[i]``;
        ``alpha`` is the weight of the one-hot label next to them."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.categories = categories
        self.alpha = alpha
        self.teacher_row = {video_id: i for i, video_id in enumerate(teacher_ids)}
        self.teacher_probs = teacher_probs

    @classmethod
    def from_config(cls, distill: DistillConfig, categories: CategorySpace,
                    records: Sequence[VideoRecord]) -> SoftTargets | None:
        """None when no record has a soft label and no teacher is set; logs how many videos each source covers."""
        ids: list[str] = []
        probs = None
        if distill.teacher:
            bundle = load_logits(distill.teacher)
            if set(bundle.classes) != set(categories.lv2_ids):
                raise ConfigError(f"train.distill.teacher: {distill.teacher} predicts other classes than this run's "
                                  "category list")
            training = {r.id for r in records}
            ids = [i for i in bundle.ids if i in training]  # only what training needs (workers get a copy)
            logger.info("distillation: teacher %s covers %d of %d training videos (alpha %.2f, T %.2f)",
                        distill.teacher, len(ids), len(records), distill.alpha, distill.temperature)
            if not ids:
                raise ConfigError(f"train.distill.teacher: {distill.teacher} covers none of the training videos")
            probs = softmax(bundle.aligned(ids, categories.lv2_ids), distill.temperature).astype(np.float32)
        soft_labels = sum(r.category_probs is not None for r in records)
        if soft_labels:
            logger.info("soft labels: %d training videos carry category_probs", soft_labels)
        if probs is None and not soft_labels:
            return None
        return cls(categories, distill.alpha, ids, probs)

    def __call__(self, record: VideoRecord) -> np.ndarray | None:
        if record.category_probs is not None:
            target = np.zeros(self.categories.num_lv2, dtype=np.float32)
            for category, prob in record.category_probs.items():
                target[self.categories.lv2_index(category)] = prob
            return target / target.sum()
        row = self.teacher_row.get(record.id)
        if row is None or record.category_id is None or self.teacher_probs is None:
            return None
        target = (1.0 - self.alpha) * self.teacher_probs[row]
        target[self.categories.lv2_index(record.category_id)] += self.alpha
        return target.astype(np.float32)
