"""Dataset, collate and DataLoader over real synthetic zip/mp4 files, including the faulty videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmcls.config import build_config
from mmcls.data.dataset import IGNORE_INDEX, Collator, build_dataloader, build_dataset
from mmcls.data.records import VideoRecord
from mmcls.data.splits import build_tokenizer, holdout_split, load_labelled_splits, load_split


def data_cfg(root, *overrides):
    return build_config({}, [f"data.root={root}", "data.category_file=category_ids.txt", "data.max_frames=4",
                             "data.frame_size=24", "data.resize_size=32", "data.max_text_len=48", *overrides]).data


def faulty_ids(root, split: str, source: str) -> set[str]:
    from mmcls.synthetic import FAULT_SOURCES

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
    train_counts = {c: sum(r.category_id == c for r in train.records) for c in categories.lv2_ids}
    assert categories.counts == train_counts  # class counts never include the validation split
    assert len(train.records) + len(val.records) == 96
    dataset = build_dataset(cfg, val, build_tokenizer(cfg), categories, train=False)
    batch = next(iter(build_dataloader(dataset, cfg, batch_size=len(val.records))))
    truth = [categories.lv2_index(r.category_id) for r in val.records]
    assert batch["labels"].tolist() == truth
    assert batch["labels_lv1"].tolist() == [categories.lv1_index(r.category_id) for r in val.records]


def test_train_samples_depend_only_on_seed_epoch_and_index(synthetic_root):
    """Same frames with 0 or 2 (persistent) workers; set_epoch reaches the workers; a new epoch re-augments."""
    results = {}
    for workers in (0, 2):
        cfg = data_cfg(synthetic_root, f"data.num_workers={workers}")
        train, _, categories = load_labelled_splits(cfg, seed=0)
        dataset = build_dataset(cfg, train, build_tokenizer(cfg), categories, train=True, seed=7)
        loader = build_dataloader(dataset, cfg, batch_size=8)
        epochs = []
        for epoch in (0, 1, 0):
            dataset.set_epoch(epoch)
            epochs.append(next(iter(loader)))
        results[workers] = epochs
    for workers in (0, 2):
        first, second, first_again = results[workers]
        assert first["ids"] == second["ids"] == first_again["ids"]
        assert torch.equal(first["frames"], first_again["frames"])  # replayable (resume)
        assert not torch.equal(first["frames"], second["frames"])  # new epoch, new augmentation
    for a, b in zip(results[0], results[2], strict=True):
        assert torch.equal(a["frames"], b["frames"])  # independent of the worker count
    cfg = data_cfg(synthetic_root, "data.num_workers=0")
    train, _, categories = load_labelled_splits(cfg, seed=0)
    other_seed = build_dataset(cfg, train, build_tokenizer(cfg), categories, train=True, seed=8)
    assert not torch.equal(next(iter(build_dataloader(other_seed, cfg, batch_size=8)))["frames"],
                           results[0][0]["frames"])


def test_mp4_workers_survive_decord_use_in_the_parent(synthetic_root):
    """decord readers used in the parent must not hang forked workers (mp4 workers start with forkserver)."""
    cfg = data_cfg(synthetic_root, "data.frame_source=mp4", "data.num_workers=2", "data.decode_timeout=20")
    split = load_split(cfg, "test")
    dataset = build_dataset(cfg, split, build_tokenizer(cfg), None, train=False)
    healthy = [r.id for r in split.records if r.id not in faulty_ids(synthetic_root, "test", "mp4")]
    for video_id in healthy[:10]:  # use decord in this process first
        assert dataset.frame_loader.load(video_id).error is None
    loader = build_dataloader(dataset, cfg, batch_size=8)
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    errors = [e for batch in loader for e in batch["video_errors"] if e is not None]
    assert len(errors) == len(faulty_ids(synthetic_root, "test", "mp4"))
    assert not any(e.startswith("timeout") for e in errors)


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


def test_feats_batches_have_a_fixed_width_even_when_every_video_fails(tmp_path, tiny_tokenizer):
    import io
    import zipfile

    (tmp_path / "annotations").mkdir()
    ids = ["v1", "v2", "odd", "gone"]
    (tmp_path / "annotations" / "test.json").write_text(json.dumps([{"id": i, "title": "hello"} for i in ids]))
    (tmp_path / "feats").mkdir()
    with zipfile.ZipFile(tmp_path / "feats" / "test.zip", "w") as zf:
        for video_id, shape in (("v1", (5, 16)), ("v2", (3, 16)), ("odd", (4, 12))):
            buffer = io.BytesIO()
            np.save(buffer, np.ones(shape, dtype=np.float32))
            zf.writestr(f"{video_id}.npy", buffer.getvalue())
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    cfg = build_config({}, [f"data.root={tmp_path}", "data.frame_source=feats", "data.max_frames=4",
                            "data.num_workers=0"]).data
    dataset = build_dataset(cfg, load_split(cfg, "test"), build_tokenizer(cfg), None, train=False)
    batches = list(build_dataloader(dataset, cfg, batch_size=1))
    for batch in batches:
        assert batch["frames"].shape == (1, 4, 16) and batch["frames"].dtype == torch.float16
    masks = {b["ids"][0]: int(b["frame_mask"].sum()) for b in batches}
    assert masks == {"v1": 4, "v2": 3, "odd": 0, "gone": 0}  # wrong width and missing: masked, never a crash


def test_dataset_pickles_and_copies_and_spawned_workers_follow_set_epoch(synthetic_root):
    import copy
    import pickle

    cfg = data_cfg(synthetic_root, "data.num_workers=1", "data.worker_start=spawn")
    train, _, categories = load_labelled_splits(cfg, seed=0)
    dataset = build_dataset(cfg, train, build_tokenizer(cfg), categories, train=True, seed=3)
    dataset.set_epoch(2)
    assert pickle.loads(pickle.dumps(dataset)).epoch == 2 and copy.deepcopy(dataset).epoch == 2
    loader = build_dataloader(dataset, cfg, batch_size=4)
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    first = next(iter(loader))
    dataset.set_epoch(3)
    second = next(iter(loader))  # the persistent spawned worker sees the new epoch
    dataset.set_epoch(2)
    again = next(iter(loader))
    assert torch.equal(first["frames"], again["frames"]) and not torch.equal(first["frames"], second["frames"])


class _Indexed(torch.utils.data.Dataset):
    """The smallest dataset a training loader takes: its epoch, and samples that are their own index."""

    text_encoder = frame_loader = None

    def __init__(self, size: int) -> None:
        self.size, self.epoch = size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {"id": str(index), "input_ids": [], "frames": None, "video_error": None, "label": 0, "label_lv1": 0}


def test_the_training_order_survives_a_resume_with_persistent_workers():
    """A persistent-worker loader makes its iterator (and draws its workers' seeds from its generator) once per
    run; a resumed run makes a new one. The order of an epoch must not depend on that: it comes from (seed,
    epoch) alone, with 0 or 2 workers."""
    cfg = build_config({}, ["data.num_workers=2", "data.persistent_workers=true"]).data
    dataset = _Indexed(12)
    loader = build_dataloader(dataset, cfg, 4, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(0), seed=5)
    orders = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        orders.append([batch["ids"] for batch in loader])
    assert orders[0] != orders[1]
    assert sorted(i for batch in orders[2] for i in batch) == sorted(str(i) for i in range(12))
    for workers in (2, 0):  # the resumed process: a new loader at epoch 2
        resumed = _Indexed(12)
        resumed.set_epoch(2)
        cfg = build_config({}, [f"data.num_workers={workers}"]).data
        again = build_dataloader(resumed, cfg, 4, shuffle=True, drop_last=True,
                                 generator=torch.Generator().manual_seed(0), seed=5)
        assert [batch["ids"] for batch in again] == orders[2]
