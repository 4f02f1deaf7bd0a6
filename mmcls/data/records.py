"""Annotation records: load a JSON list or JSONL file and validate every record.

A record is ``{"id": str, "title": str, "asr": str, "ocr": [{"time": int, "text": str}, ...], "category_id": str}``
(``category_id`` only in labelled files). A soft-labelled record (pseudo-labels, tools/pseudo_label.py) also has
``"category_probs": {category_id: probability, ...}``: the training target, with ``category_id`` its argmax.
Missing or null text fields count as empty; everything else that is wrong (not an object, no id, a wrong type, a
duplicate id, an unknown category, an integer too long to read) raises a :class:`DataError` that names the file, the
record and the field.

Text is sanitised once, here: a code point that UTF-8 cannot encode (a lone UTF-16 surrogate, e.g. the ``"\\ud83d"``
escape of half an emoji that crawled text carries) in a title, asr or ocr line is replaced by U+FFFD, counted, and
the count is logged once per file; such a character in an id or a category id is an error instead (ids name files
and submission lines).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcls.errors import DataError
from mmcls.metrics import csv_field_problem

UNSAFE_ID_CHARS = ("/", "\\", "\0")  # ids name frame files: they must stay one path component
INVALID_TEXT = re.compile(r"[\ud800-\udfff]")  # lone surrogates: the code points UTF-8 (and a tokenizer) cannot take
REPLACEMENT = "\ufffd"

logger = logging.getLogger("mmcls.data")


@dataclass(slots=True)
class VideoRecord:
    """One video's annotation. ``ocr`` holds ``(time, text)`` pairs as given; ``category_id`` is None if unlabelled."""

    id: str
    title: str = ""
    asr: str = ""
    ocr: list[tuple[float, str]] = field(default_factory=list)
    category_id: str | None = None
    category_probs: dict[str, float] | None = None  # soft label (sums to 1), when the file gives one


def frame_folder_name(path: str | Path) -> str:
    """The frame folder of an annotation file's videos: its name without suffixes (``annotations/labeled.json`` ->
    ``labeled``, whose frames are under ``zip_frames/labeled/``)."""
    name = Path(path).name
    return name.split(".", 1)[0]


def _iter_raw_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, raw_record)``: ``record N`` (0-based) for a JSON list, ``line N`` (1-based) for JSONL."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg}", path=str(path),
                            record=f"line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise DataError("malformed JSON: nested too deeply", path=str(path)) from None
        except ValueError:  # Python's limit on the digits of an integer (json reads 1e5000-digit ints with int())
            raise _too_long_integer(path, text) from None
        for index, raw in enumerate(data):
            yield f"record {index}", raw
        return
    if stripped.startswith("{"):
        # split on "\n" only: str.splitlines() would also split on U+2028 and friends inside a transcript
        for line_no, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except RecursionError:
                raise DataError("malformed JSON: nested too deeply", path=str(path), record=f"line {line_no}") from None
            except json.JSONDecodeError as exc:
                if line_no == 1 and _is_single_object(text):
                    raise DataError("expected a JSON list of records (or one object per line), got one JSON object",
                                    path=str(path)) from None
                raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=str(path),
                                record=f"line {line_no}") from None
            except ValueError:  # an integer over Python's digit limit
                raise _too_long_integer(path, line, line_no) from None
            yield f"line {line_no}", raw
        return
    if not stripped:
        raise DataError("no records in the file", path=str(path))
    raise DataError("expected a JSON list of records or JSON Lines (one object per line)", path=str(path))


def _is_single_object(text: str) -> bool:
    """Whether ``text`` is one (pretty-printed) JSON object rather than JSON Lines."""
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, and so is an over-long integer
        return False


def _max_digits() -> int:
    return sys.get_int_max_str_digits() or 10 ** 9  # 0: no limit


def _too_long_integer(path: Path, text: str, line_no: int | None = None) -> DataError:
    """The error for a JSON integer longer than Python reads (``sys.get_int_max_str_digits``, 4300 by default),
    naming its line (found again in ``text``, which starts at line ``line_no``)."""
    limit = _max_digits()
    match = re.search(rf"\d{{{limit + 1},}}", text)
    if line_no is None and match is not None:
        line_no = text.count("\n", 0, match.start()) + 1
    digits = f"{match.end() - match.start()} digits" if match is not None else f"more than {limit} digits"
    return DataError(f"malformed JSON: an integer of {digits} (at most {limit} can be read)", path=str(path),
                     record=f"line {line_no}" if line_no is not None else None)


def _describe_number(value: Any) -> str:
    """A short form of a bad value for a message: floats as written, long integers by their length."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return repr(value) if abs(value) < 10 ** 15 else f"an integer of {int(math.log10(abs(value))) + 1} digits"
    return type(value).__name__


def _is_finite(value: float | int) -> bool:
    """``math.isfinite`` that also answers for integers too large for a float (they are not: they overflow it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def clean_text(value: str) -> tuple[str, int]:
    """``value`` with every code point that UTF-8 cannot encode (a lone surrogate) replaced by U+FFFD, and how many
    were replaced."""
    return INVALID_TEXT.subn(REPLACEMENT, value)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id (None if it can): a character that UTF-8 cannot encode."""
    bad = INVALID_TEXT.search(value)
    if bad is None:
        return None
    return (f"not valid text: a lone surrogate U+{ord(bad.group()):04X} at character {bad.start()} (half of an "
            "escaped emoji?)")


def _text_field(raw: dict, name: str, path: Path, where: str, fixed: list[str]) -> str:
    """A text field, cleaned (:func:`clean_text`); appends ``name`` to ``fixed`` when characters were replaced."""
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", path=str(path), record=where, field=name)
    value, replaced = clean_text(value)
    if replaced:
        fixed.append(name)
    return value


def _ocr_field(raw: dict, path: Path, where: str, fixed: list[str]) -> list[tuple[float, str]]:
    value = raw.get("ocr")
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"expected a list of {{time, text}} objects, got {type(value).__name__}", path=str(path),
                        record=where, field="ocr")
    lines: list[tuple[float, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(f"expected an object with time and text, got {type(item).__name__}", path=str(path),
                            record=where, field=f"ocr[{i}]")
        time, text = item.get("time"), item.get("text")
        if time is None:
            time = 0
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not _is_finite(time):
            raise DataError(f"expected a finite number, got {_describe_number(time)}", path=str(path), record=where,
                            field=f"ocr[{i}].time")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise DataError(f"expected a string, got {type(text).__name__}", path=str(path), record=where,
                            field=f"ocr[{i}].text")
        text, replaced = clean_text(text)
        if replaced:
            fixed.append(f"ocr[{i}].text")
        lines.append((time, text))
    return lines


def parse_record(raw: Any, path: Path, where: str, labelled: bool | None,
                 fixed: list[str] | None = None) -> VideoRecord:
    """Validate one raw JSON value; ``labelled=True`` requires ``category_id``, ``False`` ignores it.

    Text fields come back cleaned (:func:`clean_text`); the names of those that were changed are appended to
    ``fixed``."""
    fixed = [] if fixed is None else fixed
    if not isinstance(raw, dict):
        raise DataError(f"expected a JSON object, got {type(raw).__name__}", path=str(path), record=where)
    if "id" not in raw:
        raise DataError("missing", path=str(path), record=where, field="id")
    video_id = raw["id"]
    if not isinstance(video_id, str):
        hint = " (write ids as strings to keep leading zeros)" if isinstance(video_id, int) else ""
        raise DataError(f"expected a string, got {type(video_id).__name__}{hint}", path=str(path), record=where,
                        field="id")
    if not video_id.strip():
        raise DataError("empty id", path=str(path), record=where, field="id")
    problem = text_problem(video_id)
    if problem:
        raise DataError(f"id {video_id!r} is {problem}; ids name frame files and submission lines", path=str(path),
                        record=where, field="id")
    problem = csv_field_problem(video_id)
    if problem:
        raise DataError(f"id {video_id!r} cannot go into a submission CSV: {problem}", path=str(path), record=where,
                        field="id")
    if video_id in (".", "..") or any(c in video_id for c in UNSAFE_ID_CHARS):
        raise DataError(f"id {video_id!r} is not usable as a file name (no '/', '\\', NUL, '.' or '..')",
                        path=str(path), record=where, field="id")
    category_id = None
    if labelled is not False:
        category_id = raw.get("category_id")
        if category_id is None and labelled:
            raise DataError("missing in a labelled file", path=str(path), record=where, field="category_id")
        if category_id is not None and not isinstance(category_id, str):
            hint = " (write category ids as strings, e.g. \"0103\")" if isinstance(category_id, int) else ""
            raise DataError(f"expected a string, got {type(category_id).__name__}{hint}", path=str(path),
                            record=where, field="category_id")
        if category_id is not None and csv_field_problem(category_id):
            raise DataError(f"category id {category_id!r} is unusable: {csv_field_problem(category_id)}",
                            path=str(path), record=where, field="category_id")
    return VideoRecord(
        id=video_id,
        title=_text_field(raw, "title", path, where, fixed),
        asr=_text_field(raw, "asr", path, where, fixed),
        ocr=_ocr_field(raw, path, where, fixed),
        category_id=category_id,
        category_probs=_probs_field(raw, path, where) if category_id is not None else None,
    )


def _probs_field(raw: dict, path: Path, where: str) -> dict[str, float] | None:
    """``category_probs``: an object of category id -> probability in [0, 1], summing to 1 (+-1e-3)."""
    value = raw.get("category_probs")
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise DataError("expected a non-empty object {category_id: probability}", path=str(path), record=where,
                        field="category_probs")
    for key, prob in value.items():
        if csv_field_problem(key):
            raise DataError(f"category id {key!r} is unusable: {csv_field_problem(key)}", path=str(path),
                            record=where, field="category_probs")
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise DataError(f"expected a probability in [0, 1] for {key!r}, got {_describe_number(prob)}",
                            path=str(path), record=where, field="category_probs")
    total = sum(value.values())
    if abs(total - 1.0) > 1e-3:
        raise DataError(f"probabilities sum to {total:.4f}, not 1", path=str(path), record=where,
                        field="category_probs")
    return {str(k): float(p) for k, p in value.items()}


def load_records(path: str | Path, labelled: bool | None = None,
                 categories: Collection[str] | None = None) -> list[VideoRecord]:
    """Load and validate an annotation file (JSON list or JSONL).

    ``labelled``: True requires a ``category_id`` on every record, False drops any, None keeps what is there.
    ``categories``: when given, a ``category_id`` outside it is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("annotation file not found", path=str(path))
    records: list[VideoRecord] = []
    first_seen: dict[str, str] = {}
    fixed_records, fixed_fields, first_fixed = 0, 0, ""
    for where, raw in _iter_raw_records(path):
        fixed: list[str] = []
        record = parse_record(raw, path, where, labelled, fixed)
        if fixed:
            fixed_records, fixed_fields = fixed_records + 1, fixed_fields + len(fixed)
            first_fixed = first_fixed or f"{where} field '{fixed[0]}'"
        if record.id in first_seen:
            raise DataError(f"duplicate id {record.id!r} (first at {first_seen[record.id]})", path=str(path),
                            record=where, field="id")
        first_seen[record.id] = where
        if categories is not None and record.category_id is not None and record.category_id not in categories:
            raise DataError(f"unknown category {record.category_id!r} (not in the category list)", path=str(path),
                            record=where, field="category_id")
        if categories is not None and record.category_probs is not None:
            unknown = [c for c in record.category_probs if c not in categories]
            if unknown:
                raise DataError(f"unknown category {unknown[0]!r} (not in the category list)", path=str(path),
                                record=where, field="category_probs")
        records.append(record)
    if not records:
        raise DataError("no records in the file", path=str(path))
    if fixed_records:
        logger.warning("%s: %d text field(s) of %d record(s) held characters that are not valid text (lone UTF-16 "
                       "surrogates, e.g. half an emoji); replaced by U+FFFD (first: %s)", path, fixed_fields,
                       fixed_records, first_fixed)
    return records


def save_records(records: list[VideoRecord], path: str | Path) -> None:
    """Write records as a JSON list (or JSONL when the name ends in ``.jsonl``), atomically."""
    from mmcls.io import atomic_open

    def as_dict(r: VideoRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"id": r.id, "title": r.title, "asr": r.asr,
                               "ocr": [{"time": t, "text": s} for t, s in r.ocr]}
        if r.category_id is not None:
            out["category_id"] = r.category_id
        if r.category_probs is not None:
            out["category_probs"] = r.category_probs
        return out

    with atomic_open(path, "w") as handle:
        if str(path).endswith(".jsonl"):
            for r in records:
                handle.write(json.dumps(as_dict(r), ensure_ascii=False) + "\n")
        else:
            json.dump([as_dict(r) for r in records], handle, ensure_ascii=False)
