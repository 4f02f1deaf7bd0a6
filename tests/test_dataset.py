"""Dataset, collate and DataLoader over real synthetic zip/mp4 files, including the faulty videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmcls.config import build_config
from mmcls.data.dataset import (
    IGNORE_INDEX,
    Collator,
    build_dataloader,
    build_dataset,
    build_tokenizer,
    load_labelled_splits,
    load_split,
)
from mmcls.data.records import VideoRecord
from mmcls.data.splits import holdout_split


def data_cfg(root, *overrides):
    return build_config({}, [f"data.root={root}", "data.category_file=category_ids.txt", "data.max_frames=4",
                             "data.frame_size=24", "data.resize_size=32", "data.max_text_len=48", *overrides]).data


def faulty_ids(root, split: str, source: str) -> set[str]:
    from mmcls.data.synthetic import FAULT_SOURCES

    faults = json.loads((root / "faults.json").read_text())[split]
    return {vid for vid, kind in faults.items() if source in FAULT_SOURCES[kind]}


@pytest.mark.parametrize("source", ["zip", "mp4"])
def test_two_worker_loader_yields_every_sample_once_with_masked_faults(synthetic_root, source):
    cfg = data_cfg(synthetic_root, f"data.frame_source={source}", "data.num_workers=2")
    split = load_split(cfg, "test")
    dataset = build_dataset(cfg, split, build_tokenizer(cfg), None, train=False)
    loader = build_dataloader(dataset, cfg, batch_size=8)
    assert loader.num_workers == 2 and loader.persistent_workers
    seen, failed = [], set()
    for epoch in range(2):  # persistent workers serve a second epoch
        for batch in loader:
            b = len(batch["ids"])
            assert batch["input_ids"].shape[0] == b and batch["input_ids"].dtype == torch.long
            assert batch["frames"].shape == (b, 4, 3, 24, 24) and batch["frames"].dtype == torch.uint8
            assert batch["frame_mask"].shape == (b, 4) and batch["frame_mask"].dtype == torch.bool
            assert (batch["labels"] == IGNORE_INDEX).all()  # the test split has no labels
            for i, error in enumerate(batch["video_errors"]):
                if error is None:
                    assert batch["frame_mask"][i].any()
                else:
                    failed.add(batch["ids"][i])
                    assert not batch["frame_mask"][i].any() and not batch["frames"][i].any()
                    assert batch["attention_mask"][i].sum() >= 4  # the text is kept
            if epoch == 0:
                seen.extend(batch["ids"])
    assert sorted(seen) == sorted(r.id for r in split.records)  # every id once, none swapped in
    assert failed == faulty_ids(synthetic_root, "test", source)


def test_labels_and_holdout(synthetic_root):
    cfg = data_cfg(synthetic_root, "data.val_fraction=0.2", "data.num_workers=0")
    train, val, categories = load_labelled_splits(cfg, seed=0)
    assert {r.id for r in train.records}.isdisjoint(r.id for r in val.records)
    assert len(train.records) + len(val.records) == 96
    dataset = build_dataset(cfg, val, build_tokenizer(cfg), categories, train=False)
    batch = next(iter(build_dataloader(dataset, cfg, batch_size=len(val.records))))
    truth = [categories.lv2_index(r.category_id) for r in val.records]
    assert batch["labels"].tolist() == truth
    assert batch["labels_lv1"].tolist() == [categories.lv1_index(r.category_id) for r in val.records]


def test_train_augmentation_replays_from_the_seed_and_changes_per_epoch(synthetic_root):
    cfg = data_cfg(synthetic_root, "data.num_workers=2", "data.persistent_workers=false")
    train, _, categories = load_labelled_splits(cfg, seed=0)
    dataset = build_dataset(cfg, train, build_tokenizer(cfg), categories, train=True)

    def loader_for(seed):
        return build_dataloader(dataset, cfg, batch_size=8, generator=torch.Generator().manual_seed(seed))

    loader = loader_for(5)
    first, second = (next(iter(loader)) for _ in range(2))  # two epochs of one loader
    replay = next(iter(loader_for(5)))  # a fresh run with the same seed
    assert first["ids"] == second["ids"] == replay["ids"]
    assert torch.equal(first["frames"], replay["frames"])
    assert not torch.equal(first["frames"], second["frames"])  # a new epoch draws new augmentations


def test_eval_is_identical_with_0_and_2_workers(synthetic_root):
    batches = []
    for workers in (0, 2):
        cfg = data_cfg(synthetic_root, f"data.num_workers={workers}")
        dataset = build_dataset(cfg, load_split(cfg, "test"), build_tokenizer(cfg), None, train=False)
        batches.append(list(build_dataloader(dataset, cfg, batch_size=8)))
    for x, y in zip(*batches, strict=True):
        assert x["ids"] == y["ids"] and torch.equal(x["frames"], y["frames"])
        assert torch.equal(x["input_ids"], y["input_ids"])


def test_collator_pads_text_and_frames():
    collate = Collator(pad_id=0, max_frames=3, frame_shape=(3, 2, 2))
    frames = torch.full((2, 3, 2, 2), 7, dtype=torch.uint8)
    batch = collate([
        {"id": "a", "input_ids": [5, 6, 7], "frames": frames, "video_error": None, "label": 1, "label_lv1": 0},
        {"id": "b", "input_ids": [5], "frames": None, "video_error": "missing: x", "label": -100, "label_lv1": -100},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["frame_mask"].tolist() == [[True, True, False], [False, False, False]]
    assert (batch["frames"][0, :2] == 7).all() and not batch["frames"][0, 2].any() and not batch["frames"][1].any()
    assert batch["video_errors"] == [None, "missing: x"]


def test_holdout_is_stratified_and_deterministic():
    records = [VideoRecord(str(i), category_id=c) for i, c in enumerate(["a"] * 20 + ["b"] * 2 + ["c"])]
    train, val = holdout_split(records, 0.25, seed=3)
    assert [r.category_id for r in val].count("a") == 5
    assert [r.category_id for r in val].count("b") == 1 and [r.category_id for r in train].count("b") == 1
    assert "c" not in {r.category_id for r in val}  # a single sample stays in training
    again = holdout_split(records, 0.25, seed=3)
    assert [r.id for r in again[1]] == [r.id for r in val]
    assert np.all([int(r.id) for r in train] == sorted(int(r.id) for r in train))  # order kept
