"""Ensembling saved predictions: weighted averages of class probabilities, with weights (and optionally a per-class
bias on the log-probabilities) searched on out-of-fold predictions to maximise the WBDC mean-F1.

Everything works on probabilities ``[N, C]`` of M models aligned to one id order and one class order (see
:mod:`mmcls.logits`). The searches are coordinate ascent over a grid: each step changes one coordinate to the grid
value that scores best, and only a strict gain of at least ``min_gain`` is taken, so ties keep the simpler choice
(equal weights, zero bias) and noise on a small out-of-fold set moves little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcls.data.categories import CategorySpace
from mmcls.data.records import load_records
from mmcls.errors import ArgumentError, UserError
from mmcls.logits import check_weights, load_logits, predicted_classes, predicted_indices, softmax
from mmcls.metrics import mean_f1_from_indices, read_submission

WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
BIAS_GRID = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)


def combine(probs: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray,
            class_bias: np.ndarray | None = None) -> np.ndarray:
    """``log(sum_m w_m p_m / sum w) + bias`` ``[N, C]``: the ensemble's log-probabilities (argmax = its labels)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probs),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need {len(probs)} non-negative weights with a positive sum, got {list(w)}")
    mean = sum(wi * p for wi, p in zip(w / w.sum(), probs, strict=True))
    out = np.log(np.maximum(mean, 1e-30))
    return out if class_bias is None else out + class_bias[None, :]


def score(log_probs: np.ndarray, truth: np.ndarray, lv1_of_lv2: np.ndarray) -> float:
    """Mean-F1 of the argmax of ``log_probs`` against level-2 indices ``truth``."""
    return mean_f1_from_indices(truth, predicted_indices(log_probs)[0], lv1_of_lv2)["mean_f1"]


@dataclass
class EnsembleFit:
    """What the search found, with the out-of-fold scores that justify it."""

    weights: list[float]  # normalised to sum 1
    class_bias: list[float]  # [C], zeros when not searched
    single_scores: list[float]  # each model alone
    equal_score: float  # equal weights, no bias
    weighted_score: float  # searched weights, no bias
    score: float  # searched weights and bias
    history: list[str] = field(default_factory=list)  # one line per accepted step


def search_weights(probs: Sequence[np.ndarray], truth: np.ndarray, lv1_of_lv2: np.ndarray,
                   grid: Sequence[float] = WEIGHT_GRID, rounds: int = 5, min_gain: float = 1e-4,
                   history: list[str] | None = None) -> np.ndarray:
    """Weights ``[M]`` (sum 1) maximising the mean-F1 of :func:`combine`, starting from equal weights."""
    weights = np.full(len(probs), 1.0)
    best = score(combine(probs, weights), truth, lv1_of_lv2)
    for _ in range(rounds):
        improved = False
        for m in range(len(probs)):
            for value in grid:
                trial = weights.copy()
                trial[m] = value
                if trial.sum() <= 0:
                    continue
                trial_score = score(combine(probs, trial), truth, lv1_of_lv2)
                if trial_score >= best + min_gain:
                    best, weights, improved = trial_score, trial, True
                    if history is not None:
                        history.append(f"weight[{m}] = {value:g}: mean_f1 {best:.4f}")
        if not improved:
            break
    return weights / weights.sum()


def search_class_bias(log_probs: np.ndarray, truth: np.ndarray, lv1_of_lv2: np.ndarray,
                      grid: Sequence[float] = BIAS_GRID, rounds: int = 2, min_gain: float = 1e-4,
                      history: list[str] | None = None) -> np.ndarray:
    """A bias ``[C]`` added to ``log_probs`` that maximises mean-F1 (a per-class prior adjustment: it moves the
    decision boundaries towards classes that macro-F1 rewards predicting more often)."""
    bias = np.zeros(log_probs.shape[1])
    best = score(log_probs, truth, lv1_of_lv2)
    for _ in range(rounds):
        improved = False
        for c in range(log_probs.shape[1]):
            current = bias[c]
            for value in grid:
                if value == current:
                    continue
                bias[c] = value
                trial_score = score(log_probs + bias[None, :], truth, lv1_of_lv2)
                if trial_score >= best + min_gain:
                    best, current, improved = trial_score, value, True
                    if history is not None:
                        history.append(f"bias[{c}] = {value:g}: mean_f1 {best:.4f}")
            bias[c] = current
        if not improved:
            break
    return bias


def fit_ensemble(probs: Sequence[np.ndarray], truth: np.ndarray, lv1_of_lv2: np.ndarray, *,
                 weights: Sequence[float] | None = None, search: bool = True, class_bias: bool = False,
                 rounds: int = 5) -> EnsembleFit:
    """Fit the ensemble of ``probs`` (out-of-fold, ``[N, C]`` each) to level-2 indices ``truth``.

    ``weights`` given: used as they are (``search`` ignored); otherwise searched when ``search`` else equal.
    ``class_bias``: also search a per-class bias on top of the weighted ensemble.
    """
    if not probs:
        raise ValueError("no predictions to ensemble")
    if weights is not None:
        weights = check_weights(weights, len(probs))
    truth = np.asarray(truth, dtype=np.int64)
    lv1 = np.asarray(lv1_of_lv2, dtype=np.int64)
    history: list[str] = []
    singles = [score(np.log(np.maximum(p, 1e-30)), truth, lv1) for p in probs]
    equal = np.full(len(probs), 1.0 / len(probs))
    equal_score = score(combine(probs, equal), truth, lv1)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum()
    elif search and len(probs) > 1:
        w = search_weights(probs, truth, lv1, rounds=rounds, history=history)
    else:
        w = equal
    combined = combine(probs, w)
    weighted_score = score(combined, truth, lv1)
    bias = (search_class_bias(combined, truth, lv1, history=history) if class_bias
            else np.zeros(combined.shape[1]))
    final = score(combined + bias[None, :], truth, lv1)
    return EnsembleFit([float(x) for x in w], [float(b) for b in bias], singles, equal_score, weighted_score, final,
                       history)


# ----------------------------------------------------------------------------------------------------------------
# files: out-of-fold and test logits bundles -> a fitted ensemble -> test predictions


def read_labels(path: str | Path) -> dict[str, str]:
    """``{id: category_id}`` from a truth CSV (``id,category_id``, no header) or a labelled annotation file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_submission(path)
    return {r.id: r.category_id for r in load_records(path, labelled=True) if r.category_id is not None}


@dataclass
class EnsembleResult:
    """A fitted ensemble and, when test bundles were given, its test predictions (log-probabilities)."""

    fit: EnsembleFit | None
    classes: list[str]
    test_ids: list[str] = field(default_factory=list)
    test_log_probs: np.ndarray | None = None
    oof_ids: list[str] = field(default_factory=list)
    oof_log_probs: np.ndarray | None = None  # the fitted ensemble on the out-of-fold videos

    @property
    def num_oof(self) -> int:
        return len(self.oof_ids)

    def test_labels(self) -> list[str]:
        assert self.test_log_probs is not None
        return predicted_classes(self.test_log_probs, self.classes)


def ensemble_files(oof: Sequence[str | Path], test: Sequence[str | Path], truth: str | Path | None,
                   categories: CategorySpace | None = None, *, weights: Sequence[float] | None = None,
                   search: bool = True, class_bias: bool = False, lv1_prefix_len: int = 2) -> EnsembleResult:
    """Fit on the out-of-fold bundles ``oof`` against ``truth`` and apply to the ``test`` bundles (same models, same
    order). Without ``oof``: ``weights`` (or equal ones) applied to ``test`` as they are.

    Rows of every bundle are aligned to the first bundle's ids and columns to its classes. ``categories`` gives the
    level-1 parents (else the first ``lv1_prefix_len`` characters of each class id).
    """
    if not oof and not test:
        raise ArgumentError(None, "give {oof} and/or {test} logits")
    if oof and test and len(oof) != len(test):
        raise ArgumentError(None, "{oof} and {test} must name the same models in the same order "
                            f"({len(oof)} vs {len(test)})")
    n_models = len(oof) or len(test)
    if weights is not None:
        weights = check_weights(weights, n_models)
    oof_bundles = [load_logits(p) for p in oof]
    test_bundles = [load_logits(p) for p in test]
    classes = (oof_bundles or test_bundles)[0].classes
    space = categories or CategorySpace.build(classes, lv1_prefix_len)
    if set(space.lv2_ids) != set(classes):
        raise ArgumentError("categories", "its classes differ from those of the logits")
    lv1_of_lv2 = np.asarray(space.lv1_index_of_lv2())[[space.lv2_index(c) for c in classes]]
    result = EnsembleResult(None, list(classes))
    fitted_weights = list(weights) if weights is not None else [1.0] * n_models
    bias = None
    if oof_bundles:
        if truth is None:
            raise ArgumentError("truth", "the labels of the out-of-fold ids are needed to fit the ensemble")
        labels = read_labels(truth)
        ids = oof_bundles[0].ids
        unlabelled = [i for i in ids if i not in labels]
        if unlabelled:
            raise UserError(f"{truth}: no label for {len(unlabelled)} out-of-fold ids (first: {unlabelled[0]!r})")
        unknown = sorted({labels[i] for i in ids} - set(classes))
        if unknown:
            raise UserError(f"{truth}: categories {unknown[:3]} are not among the logits' classes")
        column = {c: j for j, c in enumerate(classes)}
        truth_idx = np.array([column[labels[i]] for i in ids], dtype=np.int64)
        probs = [softmax(b.aligned(ids, classes)) for b in oof_bundles]
        result.fit = fit_ensemble(probs, truth_idx, lv1_of_lv2, weights=weights, search=search,
                                  class_bias=class_bias)
        fitted_weights, bias = result.fit.weights, np.asarray(result.fit.class_bias)
        result.oof_ids = list(ids)
        result.oof_log_probs = combine(probs, fitted_weights, bias).astype(np.float32)
    if test_bundles:
        ids = test_bundles[0].ids
        probs = [softmax(b.aligned(ids, classes)) for b in test_bundles]
        result.test_ids = list(ids)
        result.test_log_probs = combine(probs, fitted_weights, bias).astype(np.float32)
    return result
