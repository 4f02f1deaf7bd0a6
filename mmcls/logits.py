"""Saved logits: the exchange format between finetuning (out-of-fold logits), prediction, ensembling,
distillation and pseudo-labelling.

A bundle named ``X.npy`` is three files: ``X.npy`` float32 ``[N, C]``, ``X.ids.txt`` (the N video ids, one per
line, row order) and ``X.classes.txt`` (the C category ids, one per line, column order). With the class list in the
bundle, logits from runs whose category files differ are never combined by mistake, and any tool can turn them into
a submission without the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcls.errors import UserError
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


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    shifted = logits.astype(np.float64) / temperature
    shifted -= shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


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
