"""Pseudo-labels: keep the confident predictions on unlabelled videos and write them as a labelled annotation file.

Selection (:func:`select_confident`): a probability threshold on the top class, and/or the ``k`` most confident
videos of each predicted class (which keeps rare classes represented, where a threshold alone would keep mostly the
easy head classes). The file (:func:`pseudo_records`) holds each video's text, its argmax as ``category_id`` and,
for soft labels, its probabilities as ``category_probs``; finetuning adds it to the training split with
``data.pseudo`` (never to validation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from mmcls.data.records import VideoRecord
from mmcls.errors import ArgumentError
from mmcls.logits import predicted_classes, predicted_indices


def select_confident(probs: np.ndarray, threshold: float | None = None,
                     top_k_per_class: int | None = None) -> np.ndarray:
    """Sorted row indices of ``probs`` ``[N, C]`` to keep: top probability >= ``threshold`` (when given), then at
    most ``top_k_per_class`` per predicted class, the most confident first (when given). One of the two is needed."""
    if threshold is None and top_k_per_class is None:
        raise ArgumentError(None, "choose {threshold} and/or {top_k_per_class} (use {threshold} 0 to keep everything)")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ArgumentError("threshold", f"must be in [0, 1], got {threshold}")
    if top_k_per_class is not None and top_k_per_class < 1:
        raise ArgumentError("top_k_per_class", f"must be >= 1, got {top_k_per_class}")
    confidence = probs.max(axis=1)
    predicted = predicted_indices(probs)[0]
    keep = np.ones(len(probs), dtype=bool) if threshold is None else confidence >= threshold
    if top_k_per_class is not None:
        capped = np.zeros_like(keep)
        for c in np.unique(predicted[keep]):
            members = np.flatnonzero(keep & (predicted == c))
            best = members[np.argsort(-confidence[members], kind="stable")[:top_k_per_class]]
            capped[best] = True
        keep = capped
    return np.flatnonzero(keep)


def soft_label(probs: np.ndarray, classes: Sequence[str], min_prob: float = 1e-3) -> dict[str, float]:
    """``{category: probability}`` of the classes with at least ``min_prob`` (the top class always), renormalised."""
    top = int(predicted_indices(probs)[0])
    kept = np.flatnonzero(probs >= min_prob)
    if kept.size == 0 or top not in kept:
        kept = np.union1d(kept, [top])
    values = probs[kept] / probs[kept].sum()
    return {classes[int(j)]: round(float(p), 6) for j, p in zip(kept, values, strict=True)}


def pseudo_records(records: Sequence[VideoRecord], probs: np.ndarray, classes: Sequence[str], keep: np.ndarray,
                   soft: bool = False, min_prob: float = 1e-3) -> list[VideoRecord]:
    """Copies of ``records[keep]`` labelled with their argmax (and, with ``soft``, their probabilities)."""
    labels = predicted_classes(probs[keep], classes) if len(keep) else []
    out = []
    for i, label in zip(keep, labels, strict=True):
        row = probs[i]
        out.append(replace(records[i], category_id=label,
                           category_probs=soft_label(row, classes, min_prob) if soft else None))
    return out
