"""Pretraining sources and hold-out, and the stratified training fraction of finetuning."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from mmcls.config import DataConfig
from mmcls.data.records import VideoRecord
from mmcls.data.splits import load_labelled_splits, load_pretrain_splits, pretrain_holdout, stratified_subset
from mmcls.errors import ConfigError


def write(path, ids, label=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "title": f"t{i}", **({"category_id": label(i)} if label else {})} for i in ids]
    path.write_text(json.dumps(rows))


@pytest.fixture
def root(tmp_path):
    write(tmp_path / "annotations/labeled.json", [f"l{i}" for i in range(10)], label=lambda i: "0101")
    write(tmp_path / "annotations/unlabeled.json", ["u0", "u1", "l3", "u2", "l5"])
    write(tmp_path / "annotations/test.json", ["t0", "u1", "t1"])
    return tmp_path


def cfg(root, **overrides):
    return DataConfig(root=str(root), **overrides)


def test_pretrain_splits_keep_each_id_once_per_frame_folder(root, caplog):
    with caplog.at_level(logging.INFO, logger="mmcls.data"):
        splits = load_pretrain_splits(cfg(root), ["train", "val", "unlabeled", "test"])  # data.val unset: skipped
    assert [s.folder for s in splits] == ["labeled", "unlabeled", "test"]
    assert [[r.id for r in s.records] for s in splits] == [
        [f"l{i}" for i in range(10)], ["u0", "u1", "u2"], ["t0", "t1"]]
    assert "3 ids appear in more than one source file" in caplog.text
    assert [r.id for r in load_pretrain_splits(cfg(root), ["test", "unlabeled"])[1].records] == ["u0", "l3", "u2",
                                                                                                  "l5"]


def test_pretrain_split_unset_source_is_a_config_error(root):
    with pytest.raises(ConfigError, match=r"pretrain\.sources.*'unlabeled'.*data\.unlabeled"):
        load_pretrain_splits(cfg(root, unlabeled=None), ["train", "unlabeled"])


def test_pretrain_holdout_is_seeded_and_disjoint(root):
    splits = load_pretrain_splits(cfg(root), ["train", "unlabeled", "test"])
    all_ids = [r.id for s in splits for r in s.records]
    kept, held = pretrain_holdout(splits, 4, seed=0)
    held_ids = [r.id for s in held for r in s.records]
    kept_ids = [r.id for s in kept for r in s.records]
    assert len(held_ids) == 4 and sorted(held_ids + kept_ids) == sorted(all_ids)
    assert all(s.folder in {"labeled", "unlabeled", "test"} and s.records for s in kept + held)
    assert pretrain_holdout(splits, 4, seed=0) == (kept, held)
    assert {r.id for s in pretrain_holdout(splits, 4, seed=1)[1] for r in s.records} != set(held_ids)
    kept, held = pretrain_holdout(splits, 100, seed=0)
    assert kept == [] and sum(len(s.records) for s in held) == len(all_ids)
    assert pretrain_holdout(splits, 0, seed=0) == (splits, [])


def records():
    labels = ["a"] * 200 + ["b"] * 50 + ["c"] * 3 + ["d"]
    return [VideoRecord(str(i), category_id=c) for i, c in enumerate(labels)]


def test_stratified_subset_keeps_a_fraction_of_each_class():
    recs = records()
    kept = stratified_subset(recs, 0.1, seed=0)
    assert Counter(r.category_id for r in kept) == {"a": 20, "b": 5, "c": 1, "d": 1}
    assert [r.id for r in kept] == sorted((r.id for r in kept), key=int)  # original order
    assert stratified_subset(recs, 0.1, seed=0) == kept
    assert stratified_subset(recs, 0.1, seed=1) != kept
    assert {r.id for r in kept} <= {r.id for r in stratified_subset(recs, 0.3, seed=0)}  # nested fractions
    assert stratified_subset(recs, 1.0, seed=0) == recs


def test_train_fraction_shrinks_training_only(root):
    labels = ["0101"] * 60 + ["0102"] * 30 + ["0201"] * 2
    write(root / "annotations/labeled.json", [str(i) for i in range(len(labels))], label=lambda i: labels[int(i)])
    full_train, full_val, full_cats = load_labelled_splits(cfg(root, val_fraction=0.2), seed=0)
    train, val, cats = load_labelled_splits(cfg(root, val_fraction=0.2, train_fraction=0.1), seed=0)
    assert val == full_val and train.folder == full_train.folder
    assert cats.lv2_ids == full_cats.lv2_ids
    full_counts = Counter(r.category_id for r in full_train.records)
    counts = Counter(r.category_id for r in train.records)
    assert counts == {c: max(1, round(n * 0.1)) for c, n in full_counts.items()}
    assert cats.counts == counts  # class weights see only the kept records
    assert load_labelled_splits(cfg(root, val_fraction=0.2, train_fraction=0.1), seed=0)[0] == train
