"""Held-out validation split of a labelled file, stratified by class and deterministic by seed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mmcls.data.records import VideoRecord


def holdout_split(records: Sequence[VideoRecord], fraction: float, seed: int
                  ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split into (train, val) with about ``fraction`` of each class in val, keeping >= 1 of each class in train.

    Rare classes still reach validation (one sample as soon as a class has two), which matters for macro-F1.
    Both parts keep the original record order.
    """
    if fraction <= 0:
        return list(records), []
    by_class: dict[str | None, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_class[record.category_id].append(index)
    rng = np.random.default_rng(seed)
    val_indices: set[int] = set()
    for category in sorted(by_class, key=str):
        members = by_class[category]
        if len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, round(len(members) * fraction)))
        val_indices.update(int(i) for i in rng.choice(members, size=n_val, replace=False))
    train = [r for i, r in enumerate(records) if i not in val_indices]
    val = [r for i, r in enumerate(records) if i in val_indices]
    return train, val
