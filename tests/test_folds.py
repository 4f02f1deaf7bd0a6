"""K-fold assignment, the folds file, and finetuning splits by fold."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mmcls.config import build_config
from mmcls.data.folds import assign_folds, read_folds, split_by_fold, write_folds
from mmcls.data.records import VideoRecord
from mmcls.data.splits import load_labelled_splits
from mmcls.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def records():
    labels = ["a"] * 23 + ["b"] * 10 + ["c"] * 3
    return [VideoRecord(str(i), category_id=c) for i, c in enumerate(labels)]


def test_folds_are_stratified_complete_and_deterministic():
    recs = records()
    folds = assign_folds(recs, 5, seed=0)
    assert set(folds) == {r.id for r in recs} and set(folds.values()) == set(range(5))
    for label in "abc":
        per_fold = Counter(folds[r.id] for r in recs if r.category_id == label)
        counts = [per_fold.get(f, 0) for f in range(5)]
        assert max(counts) - min(counts) <= 1, (label, counts)  # each class spread evenly
    assert assign_folds(recs, 5, seed=0) == folds
    assert assign_folds(recs, 5, seed=1) != folds


def test_folds_file_round_trip_and_errors(tmp_path):
    folds = assign_folds(records(), 3, seed=0)
    write_folds(tmp_path / "folds.csv", folds)
    assert read_folds(tmp_path / "folds.csv") == folds
    (tmp_path / "bad.csv").write_text("id,fold\n1,x\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 2: expected 'id,fold'"):
        read_folds(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("1,0\n")
    with pytest.raises(DataError, match="expected the header line"):
        read_folds(tmp_path / "nohead.csv")
    with pytest.raises(DataError, match=r"data\.fold=7 is not in the folds file"):
        split_by_fold(records(), folds, 7, "folds.csv")
    with pytest.raises(DataError, match="labelled ids have no fold"):
        split_by_fold([*records(), VideoRecord("new", category_id="a")], folds, 0, "folds.csv")


def test_finetuning_split_by_fold_covers_everything_once(synthetic_root):
    out = synthetic_root / "folds_test.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "make_folds.py"), f"data.root={synthetic_root}",
                           "--k", "4", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    seen = []
    for fold in range(4):
        cfg = build_config({}, [f"data.root={synthetic_root}", f"data.folds_file={out}", f"data.fold={fold}"]).data
        train, val, _ = load_labelled_splits(cfg, seed=0)
        assert not {r.id for r in train.records} & {r.id for r in val.records}
        assert len(train.records) + len(val.records) == 96
        seen.extend(r.id for r in val.records)
    assert len(seen) == len(set(seen)) == 96  # every labelled video validated exactly once
    with pytest.raises(ConfigError, match=r"^data\.fold: needs data\.folds_file"):
        build_config({}, ["data.fold=1"])
