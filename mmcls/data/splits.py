"""Splits: the configured annotation files loaded as train / validation / test / unlabelled record lists.

Paths in the config are relative to ``data.root``. Validation is a file (``data.val``) or a class-stratified,
seeded hold-out of the training file (``data.val_fraction``). The category space is built here too, with class
counts from the training split only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcls.config import DataConfig
from mmcls.data.categories import CategorySpace, read_category_file, read_hierarchy
from mmcls.data.folds import read_folds, split_by_fold
from mmcls.data.records import VideoRecord, load_records, split_name
from mmcls.data.tokenizer import load_tokenizer
from mmcls.errors import ConfigError


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


def data_path(cfg: DataConfig, relative: str) -> Path:
    """A path from the config, relative to ``data.root`` unless absolute."""
    path = Path(relative)
    return path if path.is_absolute() else Path(cfg.root) / path


def tokenizer_dir(cfg: DataConfig, text_pretrained: str | None = None) -> Path:
    """``data.tokenizer``, else the text tower's directory, else ``data.root/tokenizer``."""
    if cfg.tokenizer:
        return Path(cfg.tokenizer)
    if text_pretrained:
        return Path(text_pretrained)
    return Path(cfg.root) / "tokenizer"


def build_tokenizer(cfg: DataConfig, text_pretrained: str | None = None) -> Any:
    """Load the tokenizer the config points at (always from a local directory)."""
    return load_tokenizer(tokenizer_dir(cfg, text_pretrained))


def build_categories(cfg: DataConfig, labelled: Sequence[VideoRecord],
                     counted: Sequence[VideoRecord] | None = None) -> CategorySpace:
    """Category space from ``data.category_file`` (or the labels of ``labelled``), level 1 by hierarchy or prefix.

    Class counts come from ``counted`` (default: ``labelled``): pass the training records only, so class-balanced
    losses never see the validation split.
    """
    category_file = data_path(cfg, cfg.category_file) if cfg.category_file else None
    hierarchy = read_hierarchy(data_path(cfg, cfg.hierarchy_file)) if cfg.hierarchy_file else None
    labels = [r.category_id for r in labelled if r.category_id is not None]
    counted_labels = None if counted is None else [r.category_id for r in counted if r.category_id is not None]
    return CategorySpace.from_labels(labels, cfg.lv1_prefix_len, hierarchy, category_file, counted_labels)


@dataclass
class Split:
    """Records of one annotation file plus the frame-folder split name they live under."""

    name: str
    records: list[VideoRecord]


def load_labelled_splits(cfg: DataConfig, seed: int) -> tuple[Split, Split, CategorySpace]:
    """Train and validation splits: fold ``data.fold`` of ``data.folds_file``, the ``data.val`` file, or a
    stratified ``data.val_fraction`` hold-out."""
    if not cfg.train:
        raise ConfigError("data.train: no labelled annotation file set")
    known = set(read_category_file(data_path(cfg, cfg.category_file))) if cfg.category_file else None
    train_path = data_path(cfg, cfg.train)
    train_records = load_records(train_path, labelled=True, categories=known)
    if cfg.fold is not None:
        folds_path = data_path(cfg, cfg.folds_file)
        kept, held = split_by_fold(train_records, read_folds(folds_path), cfg.fold, str(folds_path))
        train, val = Split(split_name(train_path), kept), Split(split_name(train_path), held)
    elif cfg.val:
        val_path = data_path(cfg, cfg.val)
        val = Split(split_name(val_path), load_records(val_path, labelled=True, categories=known))
        train = Split(split_name(train_path), train_records)
    else:
        kept, held = holdout_split(train_records, cfg.val_fraction, seed)
        train, val = Split(split_name(train_path), kept), Split(split_name(train_path), held)
    categories = build_categories(cfg, train.records + val.records, counted=train.records)
    return train, val, categories


def load_split(cfg: DataConfig, which: str) -> Split:
    """The split of config key ``data.<which>`` (e.g. ``test``, ``unlabeled``); labels, if any, are kept."""
    relative = getattr(cfg, which)
    if not relative:
        raise ConfigError(f"data.{which}: no annotation file set")
    path = data_path(cfg, relative)
    return Split(split_name(path), load_records(path))
