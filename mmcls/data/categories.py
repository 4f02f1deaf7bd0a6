"""The two-level category space: ordered level-2 ids, their level-1 parents, class counts.

Level-2 classes are category-id strings (WBDC: 4 digits). Level-1 is a prefix of the id (WBDC: first two
characters) or comes from an explicit hierarchy file. The order is fixed once (a category file, or the sorted ids
of the labelled data) and saved with every model as ``categories.json`` so that class indices never drift.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmcls.errors import DataError
from mmcls.io import atomic_write_text

CATEGORIES_FILE = "categories.json"


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; other bytes are a :class:`DataError` naming the file."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None


def read_category_file(path: str | Path) -> list[str]:
    """Ordered category ids, one per line (blank lines and ``#`` comments skipped); duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError("category file not found", path=str(path))
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_read_lines(path), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        if item in seen:
            raise DataError(f"duplicate category id {item!r} (first on line {seen[item]})", path=str(path),
                            record=f"line {line_no}")
        seen[item] = line_no
        ids.append(item)
    if not ids:
        raise DataError("no category ids in file", path=str(path))
    return ids


def read_hierarchy(path: str | Path) -> dict[str, str]:
    """Map level-2 id -> level-1 id from a file of ``lv2 lv1`` pairs (whitespace, comma or tab separated)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("hierarchy file not found", path=str(path))
    parents: dict[str, str] = {}
    for line_no, line in enumerate(_read_lines(path), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        parts = item.replace(",", " ").split()
        if len(parts) != 2:
            raise DataError(f"expected two columns 'lv2_id lv1_id', got {line.strip()!r}", path=str(path),
                            record=f"line {line_no}")
        lv2, lv1 = parts
        if lv2 in parents and parents[lv2] != lv1:
            raise DataError(f"category {lv2!r} has two parents ({parents[lv2]!r}, {lv1!r})", path=str(path),
                            record=f"line {line_no}")
        parents[lv2] = lv1
    return parents


def _json_path(path: str | Path) -> Path:
    """``path`` itself when it names a ``.json`` file, else ``path/categories.json``."""
    path = Path(path)
    return path if path.suffix == ".json" else path / CATEGORIES_FILE


@dataclass
class CategorySpace:
    """Ordered level-2 ids, each with its level-1 parent; maps ids <-> indices for both levels."""

    lv2_ids: list[str]
    lv1_of: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    lv1_ids: list[str] = field(init=False)
    _lv2_index: dict[str, int] = field(init=False, repr=False)
    _lv1_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.lv2_ids)) != len(self.lv2_ids):
            dup = next(c for c, n in Counter(self.lv2_ids).items() if n > 1)
            raise DataError(f"duplicate category id {dup!r}")
        missing = [c for c in self.lv2_ids if c not in self.lv1_of]
        if missing:
            raise DataError(f"category {missing[0]!r} has no level-1 parent")
        self.lv1_ids = sorted({self.lv1_of[c] for c in self.lv2_ids})
        self._lv2_index = {c: i for i, c in enumerate(self.lv2_ids)}
        self._lv1_index = {c: i for i, c in enumerate(self.lv1_ids)}

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, ids: Sequence[str], lv1_prefix_len: int = 2, hierarchy: Mapping[str, str] | None = None,
              counts: Mapping[str, int] | None = None) -> CategorySpace:
        """Level 1 from ``hierarchy`` when given, else the first ``lv1_prefix_len`` characters of each id."""
        if hierarchy is not None:
            lv1_of = {c: hierarchy[c] for c in ids if c in hierarchy}
        else:
            lv1_of = {c: c[:lv1_prefix_len] for c in ids}
        return cls(list(ids), lv1_of, dict(counts or {}))

    @classmethod
    def from_labels(cls, labels: Iterable[str], lv1_prefix_len: int = 2,
                    hierarchy: Mapping[str, str] | None = None, category_file: str | Path | None = None,
                    counted: Iterable[str] | None = None) -> CategorySpace:
        """Order from ``category_file`` when given, else the sorted distinct labels.

        Counts come from ``counted`` when given (e.g. the training labels only), else from ``labels``.
        """
        labels = list(labels)
        ids = read_category_file(category_file) if category_file is not None else sorted(set(labels))
        unknown = sorted(set(labels) - set(ids))
        if unknown:
            raise DataError(f"label {unknown[0]!r} is not in the category file", path=str(category_file))
        counts = Counter(labels if counted is None else counted)
        return cls.build(ids, lv1_prefix_len, hierarchy, {c: counts.get(c, 0) for c in ids})

    # --- lookups ------------------------------------------------------------------------------------------------
    @property
    def num_lv2(self) -> int:
        return len(self.lv2_ids)

    @property
    def num_lv1(self) -> int:
        return len(self.lv1_ids)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._lv2_index

    def lv2_index(self, category_id: str) -> int:
        return self._lv2_index[category_id]

    def lv1_index(self, category_id: str) -> int:
        """Level-1 index of a level-2 category id."""
        return self._lv1_index[self.lv1_of[category_id]]

    def lv1_index_of_lv2(self) -> list[int]:
        """For each level-2 index, its level-1 index (for mapping level-2 predictions up)."""
        return [self.lv1_index(c) for c in self.lv2_ids]

    def count_list(self) -> list[int]:
        """Training counts per level-2 index (0 where unknown)."""
        return [self.counts.get(c, 0) for c in self.lv2_ids]

    # --- persistence --------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The JSON form: ordered level-2 ids, their parents, level-1 ids and training counts."""
        return {"lv2_ids": self.lv2_ids, "lv1_of": self.lv1_of, "lv1_ids": self.lv1_ids, "counts": self.counts}

    def save(self, path: str | Path) -> None:
        """Write ``categories.json``: ``path`` is a ``.json`` file or a folder (created if needed)."""
        path = _json_path(path)
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> CategorySpace:
        """Read a ``categories.json`` file, or the one inside folder ``path``."""
        path = _json_path(path)
        if not path.is_file():
            raise DataError("categories file not found", path=str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(list(data["lv2_ids"]), dict(data["lv1_of"]), dict(data.get("counts", {})))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"not a valid categories file ({exc})", path=str(path)) from None
