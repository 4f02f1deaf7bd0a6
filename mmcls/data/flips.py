"""Label-aware horizontal flips: ``data.flip_label_map``, the category pairs a mirror image swaps.

A horizontal flip turns a left-to-right video into a right-to-left one. For classes that differ only in that
direction ("swipe left" / "swipe right", Something-Something's "pushing something from left to right" / "... right
to left"), a flipped training video has the other label, and a flipped test view scores the other class. The map
says which: training (:class:`mmcls.data.dataset.VideoTextDataset`) swaps a flipped video's labels and soft target,
and ``--tta-hflip`` (:func:`mmcls.workflow.predict.predict_model`) swaps the flipped view's score columns before
averaging. Categories absent from the map, or mapped to themselves, keep their label.

Where it comes from, in ``data.flip_label_map``:

- a mapping of category ids (``{"0101": "0102", "0102": "0101"}``; quote the ids in YAML, where an unquoted
  ``0101`` is a number), which must be symmetric: ``a -> b`` needs ``b -> a``;
- or a file relative to ``data.root``: a ``.json`` file holding such an object, or a text file of pairs, one
  ``a b`` per line (whitespace or comma separated, ``#`` comments), each swapped both ways.

Every problem (asymmetry, a file not found or malformed, a category the run does not have) is a one-line
:class:`~mmcls.errors.ConfigError` naming ``data.flip_label_map``. The resolved map travels with a trained model as
``best/flip_label_map.json`` (:data:`FLIP_MAP_FILE`), so prediction needs neither the data folder nor the config key.

Without a map a flip never changes a label, and nothing warns: which classes are mirror images is knowledge about the
labels that no heuristic recovers (most datasets have none, and a warning on every ``data.hflip > 0`` run would be
noise); the help of ``data.flip_label_map`` says to set it, or ``data.hflip=0``, when direction classes exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcls.config import DataConfig, check_flip_pairs
from mmcls.data.categories import CategorySpace
from mmcls.errors import ConfigError
from mmcls.io import atomic_write_text

KEY = "data.flip_label_map"
FLIP_MAP_FILE = "flip_label_map.json"


def check_symmetric(pairs: Mapping[str, str], where: str = KEY) -> dict[str, str]:
    """``pairs`` without its identities; ConfigError (naming ``where``) unless every id is a string and ``a -> b``
    comes with ``b -> a``."""
    for a, b in pairs.items():
        if not isinstance(a, str) or not isinstance(b, str):
            raise ConfigError(f"{where}: category ids must be strings, got {a!r}: {b!r}")
    check_flip_pairs(where, dict(pairs))
    return {a: b for a, b in pairs.items() if a != b}


def _read_pairs_text(path: Path, where: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        item = line.split("#", 1)[0].replace(",", " ").split()
        if not item:
            continue
        if len(item) != 2:
            raise ConfigError(f"{where}: {path} line {line_no}: expected two category ids 'a b', got {line.strip()!r}")
        a, b = item
        for x, y in ((a, b), (b, a)):
            if pairs.get(x, y) != y:
                raise ConfigError(f"{where}: {path} line {line_no}: {x!r} is already swapped with {pairs[x]!r}")
            pairs[x] = y
    return pairs


def read_flip_map_file(path: str | Path, where: str = KEY) -> dict[str, str]:
    """The pairs of a flip-map file (``.json`` object, or text pairs; see the module docstring), identities
    dropped; ConfigError naming ``where`` when it is missing, unreadable or not symmetric."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{where}: file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: {path} must hold a JSON object of category ids, got "
                                  f"{type(data).__name__}")
            return check_symmetric(data, f"{where}: {path}")
        return check_symmetric(_read_pairs_text(path, where), f"{where}: {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {path}: {str(exc).splitlines()[0]}") from None


@dataclass(frozen=True)
class FlipLabelMap:
    """The category pairs a horizontal flip swaps (identities dropped), over a run's :class:`CategorySpace`.

    ``permutation[j]`` is the level-2 index of the category that index ``j`` becomes when flipped (``j`` itself
    when unmapped); the map is an involution, so it is its own inverse.
    """

    pairs: dict[str, str]
    categories: CategorySpace = field(repr=False)
    permutation: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pairs = check_symmetric(self.pairs)
        unknown = sorted(c for c in pairs if c not in self.categories)
        if unknown:
            raise ConfigError(f"{KEY}: unknown category {unknown[0]!r} (not among the {self.categories.num_lv2} "
                              "categories)")
        index = self.categories.lv2_index
        perm = np.array([index(pairs.get(c, c)) for c in self.categories.lv2_ids], dtype=np.int64)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "permutation", perm)

    @classmethod
    def from_config(cls, cfg: DataConfig, categories: CategorySpace) -> FlipLabelMap | None:
        """The map of ``cfg.flip_label_map`` (a mapping, or a file relative to ``cfg.root``) over ``categories``;
        None when the key is unset or the map swaps nothing."""
        raw = cfg.flip_label_map
        if raw is None:
            return None
        pairs = check_symmetric(raw) if isinstance(raw, Mapping) else read_flip_map_file(Path(cfg.root) / raw)
        return cls(pairs, categories) if pairs else None

    def __len__(self) -> int:
        return len(self.pairs) // 2

    def category(self, category_id: str) -> str:
        """The category ``category_id`` becomes when its video is flipped."""
        return self.pairs.get(category_id, category_id)

    def lv2_index(self, index: int) -> int:
        """The level-2 index ``index`` becomes when flipped."""
        return int(self.permutation[index])

    def permute(self, scores: np.ndarray) -> np.ndarray:
        """Scores / probabilities / a soft target over the level-2 classes (last axis) as the flipped video's:
        column ``j`` takes the column of the category ``j`` swaps with."""
        return scores[..., self.permutation]

    # --- persistence (best/flip_label_map.json) ---------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write ``folder/flip_label_map.json`` (the symmetric JSON object, sorted)."""
        text = json.dumps(dict(sorted(self.pairs.items())), ensure_ascii=False, indent=1)
        atomic_write_text(Path(folder) / FLIP_MAP_FILE, text + "\n")

    @classmethod
    def load(cls, folder: str | Path, categories: CategorySpace) -> FlipLabelMap | None:
        """The map a model folder stores, None when it has none."""
        path = Path(folder) / FLIP_MAP_FILE
        if not path.is_file():
            return None
        pairs = read_flip_map_file(path)
        return cls(pairs, categories) if pairs else None
