"""WBDC 2022 score (mean-F1), per-class reports, and submission files.

The competition score is the mean of four numbers computed with scikit-learn's ``f1_score``: level-1 micro-F1,
level-1 macro-F1, level-2 micro-F1 and level-2 macro-F1. Micro-F1 equals accuracy for single-label data; macro-F1
averages over the labels present in the truth *or* the prediction (sklearn's default when ``labels`` is not given),
so predicting a class that never occurs costs a zero in the average.

Level 2 is the category id itself; level 1 is a prefix of it (WBDC: the first two characters) or comes from a
hierarchy mapping ``lv2 -> lv1``.

A submission (and a truth file) is a CSV without header, one ``id,category_id`` per line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from mmcls.errors import DataError
from mmcls.io import atomic_open

METRIC_KEYS = ("lv1_micro_f1", "lv1_macro_f1", "lv2_micro_f1", "lv2_macro_f1", "mean_f1")
"""Keys of the score dicts, in the order they are printed."""

HEADER_WORDS = frozenset({"id", "vid", "video_id", "category", "category_id", "label", "pred", "prediction"})
"""Column names that mark a first line as a header (compared case-insensitively)."""

LV1Spec = Callable[[str], str] | Mapping[str, str] | None


# --- level-1 mapping ----------------------------------------------------------------------------------------------
def lv1_function(lv1_of: LV1Spec = None, lv1_prefix_len: int = 2) -> Callable[[str], str]:
    """Return ``category_id -> level-1 id`` from a mapping, a callable, or the id prefix of ``lv1_prefix_len``."""
    if lv1_of is None:
        if lv1_prefix_len < 1:
            raise ValueError(f"lv1_prefix_len must be >= 1, got {lv1_prefix_len}")
        return lambda category_id: category_id[:lv1_prefix_len]
    if isinstance(lv1_of, Mapping):
        mapping = lv1_of

        def lookup(category_id: str) -> str:
            try:
                return mapping[category_id]
            except KeyError:
                raise DataError(f"category {category_id!r} has no level-1 parent in the hierarchy") from None

        return lookup
    if callable(lv1_of):
        return lv1_of
    raise TypeError(f"lv1_of must be a mapping, a callable or None, got {type(lv1_of).__name__}")


# --- scores -------------------------------------------------------------------------------------------------------
def _check_pair(truth: Sequence, pred: Sequence) -> None:
    if len(truth) != len(pred):
        raise ValueError(f"truth and prediction differ in length: {len(truth)} vs {len(pred)}")
    if len(truth) == 0:
        raise ValueError("cannot score an empty prediction")


def _with_mean(scores: dict[str, float]) -> dict[str, float]:
    scores["mean_f1"] = float(np.mean([scores[k] for k in METRIC_KEYS[:4]]))
    return {k: scores[k] for k in METRIC_KEYS}


def mean_f1_from_ids(truth: Sequence[str], pred: Sequence[str], lv1_of: LV1Spec = None,
                     lv1_prefix_len: int = 2) -> dict[str, float]:
    """WBDC score from category-id strings, computed with sklearn ``f1_score`` exactly as the competition did."""
    from sklearn.metrics import f1_score

    _check_pair(truth, pred)
    to_lv1 = lv1_function(lv1_of, lv1_prefix_len)
    truth2, pred2 = [str(c) for c in truth], [str(c) for c in pred]
    truth1, pred1 = [to_lv1(c) for c in truth2], [to_lv1(c) for c in pred2]
    scores: dict[str, float] = {}
    for level, (t, p) in (("lv1", (truth1, pred1)), ("lv2", (truth2, pred2))):
        for average in ("micro", "macro"):
            scores[f"{level}_{average}_f1"] = float(f1_score(t, p, average=average, zero_division=0))
    return _with_mean(scores)


def _micro_macro(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Micro- and macro-F1 of integer labels in ``[0, num_classes)``; macro over classes in truth or prediction."""
    support = np.bincount(truth, minlength=num_classes)
    predicted = np.bincount(pred, minlength=num_classes)
    correct = np.bincount(truth[truth == pred], minlength=num_classes)
    present = (support + predicted) > 0
    f1 = 2.0 * correct[present] / (support[present] + predicted[present])
    return float(correct.sum() / truth.size), float(f1.mean())


def _as_labels(values: np.ndarray | Sequence[int], num_classes: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {array.shape} dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{name} has class indices outside [0, {num_classes})")
    return array


def mean_f1_from_indices(truth_lv2: np.ndarray | Sequence[int], pred_lv2: np.ndarray | Sequence[int],
                         lv1_of_lv2: Sequence[int] | np.ndarray) -> dict[str, float]:
    """WBDC score from level-2 class indices (fast numpy path); ``lv1_of_lv2[i]`` is the level-1 index of class i.

    Gives the same numbers as :func:`mean_f1_from_ids` (same formula as sklearn: F1 = 2·TP / (support + predicted)).
    """
    lv1_map = np.asarray(lv1_of_lv2, dtype=np.int64)
    if lv1_map.ndim != 1 or lv1_map.size == 0 or lv1_map.min() < 0:
        raise ValueError("lv1_of_lv2 must be a non-empty list of non-negative level-1 indices")
    num_lv2, num_lv1 = lv1_map.size, int(lv1_map.max()) + 1
    truth2 = _as_labels(truth_lv2, num_lv2, "truth_lv2")
    pred2 = _as_labels(pred_lv2, num_lv2, "pred_lv2")
    _check_pair(truth2, pred2)
    scores: dict[str, float] = {}
    scores["lv1_micro_f1"], scores["lv1_macro_f1"] = _micro_macro(lv1_map[truth2], lv1_map[pred2], num_lv1)
    scores["lv2_micro_f1"], scores["lv2_macro_f1"] = _micro_macro(truth2, pred2, num_lv2)
    return _with_mean(scores)


def format_scores(scores: Mapping[str, float], digits: int = 4) -> str:
    """One ``name value`` line per score, in :data:`METRIC_KEYS` order."""
    return "\n".join(f"{key} {scores[key]:.{digits}f}" for key in METRIC_KEYS if key in scores)


# --- per-class report ---------------------------------------------------------------------------------------------
def per_class_report(truth: Sequence[str], pred: Sequence[str], lv1_of: LV1Spec = None, lv1_prefix_len: int = 2,
                     level: int = 2) -> list[dict]:
    """One row per class present in truth or prediction, sorted by support (descending), then id.

    Row keys: ``id, lv1, support, predicted, correct, precision, recall, f1`` (0 where undefined, as in the score).
    ``level=1`` reports the level-1 classes instead (then ``lv1`` equals ``id``).
    """
    if level not in (1, 2):
        raise ValueError(f"level must be 1 or 2, got {level}")
    _check_pair(truth, pred)
    to_lv1 = lv1_function(lv1_of, lv1_prefix_len)
    truth_l, pred_l = [str(c) for c in truth], [str(c) for c in pred]
    if level == 1:
        truth_l, pred_l = [to_lv1(c) for c in truth_l], [to_lv1(c) for c in pred_l]
    support, predicted = Counter(truth_l), Counter(pred_l)
    correct = Counter(t for t, p in zip(truth_l, pred_l, strict=True) if t == p)
    rows = []
    for cid in sorted(set(support) | set(predicted)):
        tp, n_true, n_pred = correct[cid], support[cid], predicted[cid]
        rows.append({
            "id": cid,
            "lv1": cid if level == 1 else to_lv1(cid),
            "support": n_true,
            "predicted": n_pred,
            "correct": tp,
            "precision": tp / n_pred if n_pred else 0.0,
            "recall": tp / n_true if n_true else 0.0,
            "f1": 2.0 * tp / (n_true + n_pred),
        })
    rows.sort(key=lambda row: -row["support"])  # stable: ties keep id order
    return rows


def format_report(rows: Sequence[Mapping], digits: int = 4) -> str:
    """Render :func:`per_class_report` rows as an aligned text table."""
    header = ("id", "lv1", "support", "predicted", "correct", "precision", "recall", "f1")
    cells = [[str(row[k]) if k in header[:5] else f"{row[k]:.{digits}f}" for k in header] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:  # ids left-aligned, numbers right-aligned
        pairs = enumerate(zip(values, widths, strict=True))
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in pairs)

    lines = [line(header)] + [line(c) for c in cells]
    return "\n".join(lines)


# --- submission files ---------------------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (BOM, CRLF and trailing blank lines tolerated)."""
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file", path=str(path))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError("empty file: expected one 'id,category_id' per line", path=str(path))
    return lines


def _is_header(fields: list[str], expected: Collection[str] | None, known: Collection[str] | None) -> bool:
    """A first line that names columns instead of holding an id."""
    if any(f.lower() in HEADER_WORDS for f in fields):
        return True
    return (len(fields) == 2 and expected is not None and known is not None
            and fields[0] not in expected and fields[1] not in known)


def read_submission(path: str | Path, expected_ids: Sequence[str] | None = None,
                    known_categories: Collection[str] | None = None) -> dict[str, str]:
    """Read an ``id,category_id`` CSV (no header) into an ordered ``{id: category_id}``; validate every line.

    With ``expected_ids`` the file must hold exactly those ids (any order); with ``known_categories`` every
    category must be one of them. Errors are :class:`DataError` naming the file and the line.
    """
    path = Path(path)
    expected = set(expected_ids) if expected_ids is not None else None
    known = set(known_categories) if known_categories is not None else None
    lines = _read_lines(path)
    result: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        where = {"path": str(path), "record": f"line {line_no}"}
        fields = [f.strip() for f in line.split(",")]
        if line_no == 1 and _is_header(fields, expected, known):
            raise DataError(f"looks like a header ({line.strip()!r}); a submission has no header, "
                            "only 'id,category_id' lines", **where)
        if not line.strip():
            raise DataError("empty line", **where)
        if len(fields) != 2:
            raise DataError(f"expected 2 columns 'id,category_id', got {len(fields)}: {line.strip()!r}", **where)
        sample_id, category = fields
        if not sample_id:
            raise DataError("empty id", field="id", **where)
        if not category:
            raise DataError(f"empty category_id for id {sample_id!r}", field="category_id", **where)
        if sample_id in first_line:
            raise DataError(f"duplicate id {sample_id!r} (first on line {first_line[sample_id]})", field="id",
                            **where)
        if expected is not None and sample_id not in expected:
            raise DataError(f"unknown id {sample_id!r} (not among the {len(expected)} expected ids)", field="id",
                            **where)
        if known is not None and category not in known:
            raise DataError(f"unknown category_id {category!r} for id {sample_id!r} "
                            f"(not among the {len(known)} known categories)", field="category_id", **where)
        first_line[sample_id] = line_no
        result[sample_id] = category
    if expected_ids is not None and len(result) != len(expected):
        missing = [i for i in expected_ids if i not in result]
        shown = ", ".join(repr(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"wrong line count: {len(lines)} lines but {len(expected)} expected ids; "
                        f"{len(missing)} ids are missing: {shown}", path=str(path),
                        record=f"line {len(lines) + 1} (end of file)")
    return result


def csv_field_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id or category of a header-less ``id,category_id`` CSV (None if it can)."""
    if not value:
        return "empty"
    if any(ch in value for ch in ",\r\n"):
        return "contains a comma or a line break"
    if value != value.strip():
        return "leading or trailing white space"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (half an escaped emoji): no UTF-8 file can hold it
        return f"not valid text: U+{ord(value[exc.start]):04X} at character {exc.start} cannot be written as UTF-8"
    return None


def write_submission(path: str | Path, ids: Sequence[str], category_ids: Sequence[str]) -> None:
    """Write ``id,category_id`` lines (no header) atomically, in the given order."""
    if len(ids) != len(category_ids):
        raise ValueError(f"{len(ids)} ids but {len(category_ids)} category ids")
    seen: set[str] = set()
    lines = []
    for index, (sample_id, category) in enumerate(zip(ids, category_ids, strict=True)):
        sample_id, category = str(sample_id), str(category)
        for name, value in (("id", sample_id), ("category_id", category)):
            problem = csv_field_problem(value)
            if problem:
                raise DataError(f"{name} {value!r} cannot be written to a CSV submission: {problem}", record=index,
                                field=name)
        if sample_id in seen:
            raise DataError(f"duplicate id {sample_id!r}", record=index, field="id")
        seen.add(sample_id)
        lines.append(f"{sample_id},{category}\n")
    with atomic_open(path, "w") as handle:
        handle.write("".join(lines))
