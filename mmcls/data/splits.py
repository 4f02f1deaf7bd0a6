"""Splits: the configured annotation files loaded as train / validation / test / unlabelled record lists.

Paths in the config are relative to ``data.root``. Validation is a file (``data.val``) or a class-stratified,
seeded hold-out of the training file (``data.val_fraction``); ``data.train_fraction`` then keeps a stratified part
of the training split. The category space is built here too, with class counts from the kept training records
only. Pretraining reads several annotation files at once, each id once, with a seeded hold-out for validation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcls.config import DataConfig
from mmcls.data.categories import CategorySpace, read_category_file, read_hierarchy
from mmcls.data.folds import read_folds, split_by_fold
from mmcls.data.records import VideoRecord, frame_folder_name, load_records
from mmcls.data.tokenizer import load_tokenizer
from mmcls.errors import ConfigError

logger = logging.getLogger("mmcls.data")


def holdout_split(records: Sequence[VideoRecord], fraction: float, seed: int
                  ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Divide into (train, val) with about ``fraction`` of each class in val, keeping >= 1 of each class in train.

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


def stratified_subset(records: Sequence[VideoRecord], fraction: float, seed: int) -> list[VideoRecord]:
    """About ``fraction`` of each class (at least one), drawn at random from ``seed``, in the original order.

    Each class is shuffled once and its first ``max(1, round(n * fraction))`` members kept, so with one seed a
    smaller fraction keeps a subset of a larger one (nested learning curves). ``fraction >= 1`` keeps everything.
    """
    if fraction >= 1:
        return list(records)
    by_class: dict[str | None, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_class[record.category_id].append(index)
    rng = np.random.default_rng([seed, 1])  # a stream of its own, independent of holdout_split's
    kept: set[int] = set()
    for category in sorted(by_class, key=str):
        members = by_class[category]
        n_kept = max(1, round(len(members) * fraction))
        kept.update(int(i) for i in rng.permutation(members)[:n_kept])
    return [r for i, r in enumerate(records) if i in kept]


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
class AnnotationSet:
    """The records of one annotation file (or a part of it: the training or validation part of a train/val
    split) and the frame folder their videos live under (``zip_frames/<folder>/``, ``videos/<folder>/``,
    ``feats/<folder>.zip``; the annotation file's name, e.g. ``labeled``)."""

    folder: str
    records: list[VideoRecord]


def load_labelled_splits(cfg: DataConfig, seed: int) -> tuple[AnnotationSet, AnnotationSet, CategorySpace]:
    """Train and validation splits: fold ``data.fold`` of ``data.folds_file``, the ``data.val`` file, or a
    stratified ``data.val_fraction`` hold-out; then a stratified ``data.train_fraction`` of the training split.

    Categories come from all train and validation records, so class indices never depend on the fraction; class
    counts from the kept training records.
    """
    if not cfg.train:
        raise ConfigError("data.train: no labelled annotation file set")
    known = set(read_category_file(data_path(cfg, cfg.category_file))) if cfg.category_file else None
    train_path = data_path(cfg, cfg.train)
    train_records = load_records(train_path, labelled=True, categories=known)
    if cfg.fold is not None:
        folds_path = data_path(cfg, cfg.folds_file)
        kept, held = split_by_fold(train_records, read_folds(folds_path), cfg.fold, str(folds_path))
        folder = frame_folder_name(train_path)
        train, val = AnnotationSet(folder, kept), AnnotationSet(folder, held)
    elif cfg.val:
        val_path = data_path(cfg, cfg.val)
        val = AnnotationSet(frame_folder_name(val_path), load_records(val_path, labelled=True, categories=known))
        train = AnnotationSet(frame_folder_name(train_path), train_records)
    else:
        kept, held = holdout_split(train_records, cfg.val_fraction, seed)
        folder = frame_folder_name(train_path)
        train, val = AnnotationSet(folder, kept), AnnotationSet(folder, held)
    kept_train = stratified_subset(train.records, cfg.train_fraction, seed)
    categories = build_categories(cfg, train.records + val.records, counted=kept_train)
    return AnnotationSet(train.folder, kept_train), val, categories


def load_pseudo_splits(cfg: DataConfig, categories: CategorySpace, labelled: Collection[str],
                       with_frames: bool = True) -> list[AnnotationSet]:
    """The ``data.pseudo`` videos to add to training, one set per file (none when unset), minus any id in
    ``labelled`` or in an earlier file.

    ``labelled`` holds the ids of the training and validation splits: a pseudo-label for one of them is dropped
    (and counted in the log), so validation never scores a video that trained on a pseudo-label of itself. The
    videos' frames live under ``data.pseudo_frames`` (one folder, or one per file), by default the folder of
    ``data.unlabeled``; ``with_frames`` checks that some of them are there (pseudo-labels of the test split need
    ``data.pseudo_frames=test``).
    """
    files = [cfg.pseudo] if isinstance(cfg.pseudo, str) else list(cfg.pseudo or [])
    if not files:
        return []
    folders = cfg.pseudo_frames if isinstance(cfg.pseudo_frames, list) else [cfg.pseudo_frames] * len(files)
    if len(folders) != len(files):
        raise ConfigError(f"data.pseudo_frames: {len(folders)} frame folders for {len(files)} data.pseudo files; give "
                          "one folder, or one per file")
    seen = set(labelled)
    sets = []
    for file, folder in zip(files, folders, strict=True):
        path = data_path(cfg, file)
        records = load_records(path, labelled=True, categories=set(categories.lv2_ids))
        kept = [r for r in records if r.id not in seen]
        if len(kept) < len(records):
            logger.warning("data.pseudo: %d of %d pseudo-labelled ids of %s are labelled videos (training or "
                           "validation) or in an earlier file, and were dropped", len(records) - len(kept),
                           len(records), path)
        if not kept:
            raise ConfigError(f"data.pseudo: every video of {path} is a labelled one or in an earlier file; nothing "
                              "to add")
        frames = folder or frame_folder_name(data_path(cfg, cfg.unlabeled) if cfg.unlabeled else path)
        if with_frames and not cfg.reads_features:
            _check_frames_exist(cfg, frames, [r.id for r in kept[:PROBE_IDS]])
        logger.info("data.pseudo: %d pseudo-labelled videos from %s (frames: %s)", len(kept), path, frames)
        seen.update(r.id for r in kept)
        sets.append(AnnotationSet(frames, kept))
    return sets


PROBE_IDS = 20


def _check_frames_exist(cfg: DataConfig, split: str, ids: Sequence[str]) -> None:
    """ConfigError when none of ``ids`` has a frame file under ``split``: a wrong frame folder, not broken videos."""
    from mmcls.data.frames import build_frame_source

    source = build_frame_source(cfg, split)
    if not any(source.path(video_id).exists() for video_id in ids):
        raise ConfigError(f"data.pseudo_frames: none of the first {len(ids)} pseudo-labelled videos has frames in "
                          f"{source.location}; set data.pseudo_frames to the split they come from (e.g. test)")


ANNOTATION_KEYS = ("test", "unlabeled", "train", "val")  # the annotation-file keys data.<key> that tools read


def load_split(cfg: DataConfig, which: str) -> AnnotationSet:
    """The split of config key ``data.<which>`` (e.g. ``test``, ``unlabeled``); labels, if any, are kept."""
    relative = getattr(cfg, which)
    if not relative:
        raise ConfigError(f"data.{which}: no annotation file set")
    path = data_path(cfg, relative)
    return AnnotationSet(frame_folder_name(path), load_records(path))


def load_pretrain_splits(cfg: DataConfig, sources: Sequence[str]) -> list[AnnotationSet]:
    """One split per source file ``data.<source>`` (``train``, ``val``, ``unlabeled``, ``test``), each id once.

    A split per file because each file's frames live under their own folder. An id in several files is kept at
    its first occurrence (in ``sources`` order) and the number of dropped duplicates is logged; a file left
    without records is dropped. Labels are kept as read, and pretraining ignores them. An unset source is a
    :class:`ConfigError`, except ``val``, which is skipped: validation often comes from ``data.train``.
    """
    splits: list[AnnotationSet] = []
    seen: set[str] = set()
    duplicates = 0
    for source in sources:
        relative = getattr(cfg, source)
        if not relative:
            if source == "val":
                continue
            raise ConfigError(f"pretrain.sources: includes {source!r} but data.{source} is not set")
        path = data_path(cfg, relative)
        records = []
        for record in load_records(path):
            if record.id in seen:
                duplicates += 1
                continue
            seen.add(record.id)
            records.append(record)
        if records:
            splits.append(AnnotationSet(frame_folder_name(path), records))
    if duplicates:
        logger.info("pretraining: %d ids appear in more than one source file; each is used once", duplicates)
    return splits


def pretrain_holdout(splits: Sequence[AnnotationSet], size: int, seed: int
                     ) -> tuple[list[AnnotationSet], list[AnnotationSet]]:
    """``(kept, held)``: ``size`` videos drawn at random from ``seed`` over all splits (all when fewer) are held
    out to validate pretraining. Splits keep their names and record order; empty parts are dropped."""
    total = sum(len(split.records) for split in splits)
    held_flat = set(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False).tolist())
    kept: list[AnnotationSet] = []
    held: list[AnnotationSet] = []
    start = 0
    for split in splits:
        flags = [start + i in held_flat for i in range(len(split.records))]
        start += len(split.records)
        for part, want in ((kept, False), (held, True)):
            records = [r for r, flag in zip(split.records, flags, strict=True) if flag == want]
            if records:
                part.append(AnnotationSet(split.folder, records))
    return kept, held
