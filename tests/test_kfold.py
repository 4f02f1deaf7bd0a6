"""The kfold command end to end on the tiny synthetic dataset: folds, one run per fold, out-of-fold logits, the fold
ensemble on the test split, and a rerun that skips what is finished."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmcls.cli import run_main
from mmcls.data.folds import read_folds
from mmcls.logits import load_logits, softmax
from tests.helpers import run_installed, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_kfold_trains_every_fold_and_stacks_out_of_fold_logits(installed, synthetic_root, tmp_path, capsys):
    """The first run is the installed package's (``pip install .``, conftest.py), from a folder outside the
    checkout, as a user who installed mmcls runs it; the reruns call the command in this process."""
    from mmcls.commands.kfold import main

    out = tmp_path / "kfold"
    config = tmp_path / "my.yaml"  # the user's own config: the checkout's configs/ are not installed
    shutil.copy2(ROOT / "configs" / "demo.yaml", config)
    overrides = [o for o in tiny_overrides(synthetic_root, tmp_path / "unused", "train.max_steps=2")
                 if not o.startswith("output_dir=")]
    args = ["--config", str(config), "--k", "2", "--out", str(out), "--predict", "test", *overrides]
    run_installed(installed, tmp_path, "kfold", *args)

    folds = read_folds(out / "folds.csv")
    labelled = [r["id"] for r in json.loads((synthetic_root / "annotations" / "labeled.json").read_text())]
    assert sorted(folds) == sorted(labelled) and set(folds.values()) == {0, 1}
    oof = load_logits(out / "oof_logits.npy")
    assert sorted(oof.ids) == sorted(labelled)  # every labelled video once
    for fold in (0, 1):
        val = load_logits(out / f"fold{fold}" / "val_logits.npy")
        assert set(val.ids) == {i for i, f in folds.items() if f == fold}  # validated on its own fold only
        np.testing.assert_array_equal(oof.aligned(val.ids, val.classes), val.logits)
    _assert_val_logits_come_from_best(out / "fold1")
    summary = json.loads((out / "kfold.json").read_text())
    assert 0.0 <= summary["oof"]["mean_f1"] <= 1.0 and len(summary["fold_mean_f1"]) == 2

    fold_logits = [load_logits(out / f"fold{f}" / "test_logits.npy") for f in (0, 1)]
    ensemble = load_logits(out / "test_logits.npy")
    expected = np.mean([softmax(b.aligned(ensemble.ids, ensemble.classes)) for b in fold_logits], axis=0)
    np.testing.assert_allclose(np.exp(ensemble.logits), expected, rtol=1e-5, atol=1e-7)
    submission = [line.split(",") for line in (out / "test.csv").read_text().splitlines()]
    assert [i for i, _ in submission] == ensemble.ids
    assert [c for _, c in submission] == [ensemble.classes[j] for j in expected.argmax(axis=1)]

    # a rerun finds everything finished: no fold is retrained and no prediction redone
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("fold*/best/model.safetensors")}
    stamps.update({p: p.stat().st_mtime_ns for p in out.glob("fold*/test_logits.npy")})
    capsys.readouterr()
    assert run_main(main, args) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # an unfinished fold (no result.json: killed mid-run) resumes from its checkpoint, and only it does (here it
    # had finished its updates, so nothing is retrained); its prediction is made again
    (out / "fold1" / "result.json").unlink()
    assert run_main(main, args) == 0
    changed = {p for p, t in stamps.items() if p.stat().st_mtime_ns != t}
    assert changed == {out / "fold1" / "test_logits.npy"}
    assert "resumed from" in (out / "fold1" / "train.log").read_text()
    # the folds file decides K: asking for another K is a one-line error
    assert run_main(main, [*args[:2], "--k", "3", *args[4:]]) == 2
    assert "holds folds [0, 1]" in capsys.readouterr().err
    # other settings into the same folder would mix old and new folds: refused
    assert run_main(main, [*args, "train.lr=1e-3"]) == 2
    assert "overrides differ" in capsys.readouterr().err
    # an explicit folds file must exist (no silent new folds for a later round)
    assert run_main(main, [*args[:5], str(tmp_path / "other"), "--folds", str(tmp_path / "typo.csv"), *args[6:]]) == 2
    assert "typo.csv: not found" in capsys.readouterr().err


def _assert_val_logits_come_from_best(run: Path) -> None:
    """A fold's out-of-fold logits are what its exported best/ model predicts for its validation fold."""
    from accelerate import Accelerator

    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import load_labelled_splits
    from mmcls.engine.inference import run_inference
    from mmcls.model_folder import load_portable

    loaded = load_portable(run / "best")
    _, val, categories = load_labelled_splits(loaded.cfg.data, loaded.cfg.seed)
    dataset = build_dataset(loaded.cfg.data, val, loaded.tokenizer, categories, train=False)
    result = run_inference(loaded.model, build_dataloader(dataset, loaded.cfg.data, 16), Accelerator(cpu=True))
    saved = load_logits(run / "val_logits.npy")
    np.testing.assert_allclose(saved.aligned(result.ids, categories.lv2_ids), result.logits, atol=1e-4)
