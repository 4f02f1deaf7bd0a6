"""Saved logits: the exchange format between finetuning (out-of-fold logits), prediction, ensembling,
distillation and pseudo-labelling.

A bundle named ``X.npy`` is three files: ``X.npy`` float32 ``[N, C]``, ``X.ids.txt`` (the N video ids, one per
line, row order) and ``X.classes.txt`` (the C category ids, one per line, column order). With the class list in the
bundle, logits from runs whose category files differ are never combined by mistake, and any tool can turn them into
a submission without the model.

Turning scores into categories happens here and nowhere else: :func:`predicted_indices` (level-2 index by argmax, and
level-1 through the category hierarchy) and :func:`predicted_classes` (the level-2 category ids).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcls.errors import ArgumentError, UserError
from mmcls.io import atomic_open, atomic_write_text


@dataclass
class SavedLogits:
    """One bundle: ``logits`` float32 ``[N, C]``, row ``i`` for ``ids[i]``, column ``j`` for ``classes[j]``."""

    ids: list[str]
    logits: np.ndarray
    classes: list[str]
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.logits.ndim != 2 or self.logits.shape != (len(self.ids), len(self.classes)):
            raise UserError(f"{self.path or 'logits'}: shape {self.logits.shape} does not match {len(self.ids)} ids "
                            f"x {len(self.classes)} classes")
        for what, names in (("id", self.ids), ("class", self.classes)):
            if len(set(names)) != len(names):
                repeated = next(n for n, count in Counter(names).items() if count > 1)
                raise UserError(f"{self.path or 'logits'}: repeated {what} {repeated!r}")

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Softmax of ``logits / temperature`` in float64 ``[N, C]``."""
        return softmax(self.logits, temperature)

    def aligned(self, ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        """The logits with rows in ``ids`` order and columns in ``classes`` order (float32 ``[len(ids), C]``).

        Every id must be present and the class sets must be equal; anything else is a :class:`UserError` that
        names the bundle, so predictions of different data or label spaces are never mixed silently.
        """
        where = self.path or "logits"
        if set(classes) != set(self.classes):
            extra = sorted(set(self.classes) ^ set(classes))[:3]
            raise UserError(f"{where}: its classes differ from the others' (e.g. {extra}); combine only "
                            "predictions over the same category list")
        row = {video_id: i for i, video_id in enumerate(self.ids)}
        missing = [video_id for video_id in ids if video_id not in row]
        if missing:
            raise UserError(f"{where}: {len(missing)} ids are missing (first: {missing[0]!r})")
        column = {category: j for j, category in enumerate(self.classes)}
        return self.logits[np.ix_([row[i] for i in ids], [column[c] for c in classes])]


def check_weights(weights: Sequence[float], count: int, argument: str = "weights") -> list[float]:
    """``count`` finite, non-negative weights with a positive sum (an :class:`~mmcls.errors.ArgumentError` naming
    ``argument`` otherwise: a NaN weight would pass ``w < 0`` and make every probability, and so every prediction,
    NaN and constant)."""
    values = [float(w) for w in weights]
    if len(values) != count or not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise ArgumentError(argument, f"need {count} finite, non-negative weights with a positive sum, got "
                            f"{' '.join(f'{w:g}' for w in values)}")
    return values


def warn_nonfinite(scores: np.ndarray, what: str) -> int:
    """Log a warning when rows of ``scores`` ``[N, C]`` hold NaN or inf (their argmax is a meaningless constant
    class: a model with non-finite weights); returns how many rows do."""
    rows = int((~np.isfinite(np.asarray(scores))).any(axis=-1).sum()) if np.size(scores) else 0
    if rows:
        logging.getLogger("mmcls").warning(
            "%s: %d of %d rows of logits are not finite (NaN or inf); their predictions are meaningless (the model's "
            "weights are probably not finite)", what, rows, len(scores))
    return rows


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    if not 0 < temperature < math.inf:  # also NaN
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    shifted = logits.astype(np.float64) / temperature
    shifted -= shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predicted_indices(scores: np.ndarray, lv1_of_lv2: Sequence[int] | np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(level-2 index, level-1 index or None)`` of every row of ``scores`` ``[N, C]`` (or one row ``[C]``).

    ``scores``: logits, probabilities or log-probabilities (any of them: the argmax is the same). Level 2 is the
    argmax over the classes (ties: the lowest index); level 1, when ``lv1_of_lv2`` (the level-1 index of each
    level-2 column, :meth:`mmcls.data.categories.CategorySpace.lv1_index_of_lv2` in column order) is given, is the
    parent of that class, so the two levels never disagree.
    """
    array = np.asarray(scores)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"scores must be [N, C] or [C] with C > 0, got shape {array.shape}")
    lv2 = array.argmax(axis=-1)
    if lv1_of_lv2 is None:
        return lv2, None
    lv1_map = np.asarray(lv1_of_lv2, dtype=np.int64)
    if lv1_map.shape != (array.shape[-1],):
        raise ValueError(f"lv1_of_lv2 has {lv1_map.size} entries for {array.shape[-1]} classes")
    return lv2, lv1_map[lv2]


def predicted_classes(scores: np.ndarray, classes: Sequence[str]) -> list[str]:
    """The predicted level-2 category id of every row of ``scores`` ``[N, C]``; column ``j`` is ``classes[j]``."""
    array = np.asarray(scores)
    if array.ndim != 2 or array.shape[1] != len(classes):
        raise ValueError(f"scores of shape {array.shape} do not match {len(classes)} classes")
    return [classes[int(j)] for j in predicted_indices(array)[0]]


def sidecar(path: str | Path, kind: str) -> Path:
    """``X.ids.txt`` / ``X.classes.txt`` next to ``X.npy``."""
    return Path(path).with_suffix(f".{kind}.txt")


def save_logits(path: str | Path, ids: Sequence[str], logits: np.ndarray, classes: Sequence[str]) -> None:
    """Write the bundle atomically (each file by temp + rename; the ``.npy`` last, so a reader that finds it finds
    its sidecars)."""
    bundle = SavedLogits(list(ids), np.asarray(logits, dtype=np.float32), list(classes), Path(path))
    atomic_write_text(sidecar(path, "ids"), "".join(f"{i}\n" for i in bundle.ids))
    atomic_write_text(sidecar(path, "classes"), "".join(f"{c}\n" for c in bundle.classes))
    with atomic_open(path, "wb", encoding=None) as handle:
        np.save(handle, bundle.logits)


def _read_list(path: Path, what: str, bundle: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{bundle}: its {what} file {path.name} is missing (logits are saved as X.npy + "
                        "X.ids.txt + X.classes.txt)")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_logits(path: str | Path) -> SavedLogits:
    """Read a bundle; missing files, a non-2-D array or mismatched lengths are one-line :class:`UserError` s."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: logits file not found")
    try:
        logits = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a .npy array ({exc})") from None
    if not np.issubdtype(logits.dtype, np.floating) or not np.isfinite(logits).all():
        raise UserError(f"{path}: logits must be finite floats, got {logits.dtype}")
    ids = _read_list(sidecar(path, "ids"), "ids", path)
    classes = _read_list(sidecar(path, "classes"), "classes", path)
    return SavedLogits(ids, logits.astype(np.float32), classes, path)
