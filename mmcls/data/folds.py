"""K-fold assignment: stratified by level-2 class (scikit-learn), deterministic by seed, stored as ``id,fold`` CSV.

With ``data.folds_file`` and ``data.fold=K``, finetuning validates on fold K and trains on the others, so K runs
cover every labelled video once as validation (out-of-fold predictions for ensembling and distillation).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmcls.data.records import VideoRecord
from mmcls.errors import DataError
from mmcls.io import atomic_write_text

FOLDS_HEADER = "id,fold"


def assign_folds(records: Sequence[VideoRecord], k: int, seed: int) -> dict[str, int]:
    """Fold of every record: classes spread evenly over the ``k`` folds (sizes differ by at most one per class)."""
    from sklearn.model_selection import StratifiedKFold

    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if len(records) < k:
        raise DataError(f"{len(records)} labelled records cannot fill {k} folds")
    labels = np.array([r.category_id or "" for r in records])
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds: dict[str, int] = {}
    with warnings.catch_warnings():  # classes rarer than k: sklearn warns, the assignment is still as even as can be
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            folds.update({records[i].id: fold for i in held})
    return folds


def write_folds(path: str | Path, folds: dict[str, int]) -> None:
    """``id,fold`` lines with a header, in the given order, atomically."""
    atomic_write_text(path, FOLDS_HEADER + "\n" + "".join(f"{i},{f}\n" for i, f in folds.items()))


def read_folds(path: str | Path) -> dict[str, int]:
    """Read a folds file; malformed lines are errors naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("folds file not found (write one with tools/make_folds.py)", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None
    if not lines or lines[0].strip() != FOLDS_HEADER:
        raise DataError(f"expected the header line {FOLDS_HEADER!r}", path=str(path), record="line 1")
    folds: dict[str, int] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        fold = parts[1].strip() if len(parts) == 2 else ""
        if not (fold.isascii() and fold.isdigit()) or len(fold) > 9:  # int() of 5000 digits is a ValueError
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise DataError(f"expected 'id,fold' with an integer fold, got {shown!r}", path=str(path),
                            record=f"line {line_no}")
        video_id = parts[0].strip()
        if video_id in folds:
            raise DataError(f"duplicate id {video_id!r}", path=str(path), record=f"line {line_no}")
        folds[video_id] = int(fold)
    return folds


def split_by_fold(records: Sequence[VideoRecord], folds: dict[str, int], fold: int, where: str
                  ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(train, val): val = the records assigned to ``fold``; every record must have a fold."""
    missing = [r.id for r in records if r.id not in folds]
    if missing:
        raise DataError(f"{len(missing)} labelled ids have no fold (first: {missing[0]!r}); rerun tools/make_folds.py",
                        path=where)
    available = sorted(set(folds.values()))
    if fold not in available:
        raise DataError(f"data.fold={fold} is not in the folds file (folds {available})", path=where)
    train = [r for r in records if folds[r.id] != fold]
    val = [r for r in records if folds[r.id] == fold]
    return train, val
