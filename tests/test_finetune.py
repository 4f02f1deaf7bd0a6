"""Finetuning and prediction end to end on a tiny synthetic dataset, in one and in two real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmcls.config import build_config
from mmcls.engine.optim import lr_factor
from tests.helpers import launch_two_processes, read_csv_ids, read_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_finetune_writes_the_run_directory_and_predict_writes_every_id(synthetic_root, tmp_path):
    from mmcls.commands import finetune as train
    from mmcls.commands import predict

    run = tmp_path / "run"
    assert train.main(["--config", str(ROOT / "configs" / "demo.yaml"),
                       *tiny_overrides(synthetic_root, run, "train.max_steps=6", "train.eval_every=3")]) == 0
    for name in ("config.yaml", "metrics.csv", "train.log", "checkpoints/last/model.safetensors",
                 "best/model.safetensors", "best/config.yaml", "best/categories.json", "best/bert_config.json",
                 "best/tokenizer.json"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert all(0.0 <= float(r["mean_f1"]) <= 1.0 for r in rows)
    assert "new best mean_f1" in (run / "train.log").read_text(encoding="utf-8")

    out = tmp_path / "result.csv"
    assert predict.main(["--model", str(run / "best"), "--output", str(out), "--logits", str(tmp_path / "l.npy")]) == 0
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text())]
    assert read_csv_ids(out) == test_ids  # every id once, in annotation order, faulty videos included
    categories = json.loads((run / "best" / "categories.json").read_text())["lv2_ids"]
    assert all(line.split(",")[1] in categories for line in out.read_text().splitlines())
    import numpy as np

    logits = np.load(tmp_path / "l.npy")
    assert logits.shape == (len(test_ids), len(categories)) and np.isfinite(logits).all()
    assert (tmp_path / "l.ids.txt").read_text().split() == test_ids

    # logit adjustment: the saved logits move by exactly -tau * log(prior), and the argmax follows them
    from mmcls.data.categories import CategorySpace
    from mmcls.engine.losses import logit_adjustment

    adjusted_out = tmp_path / "adjusted.csv"
    assert predict.main(["--model", str(run / "best"), "--output", str(adjusted_out), "--logits",
                         str(tmp_path / "a.npy"), "--logit-adjust", "2.0"]) == 0
    counts = CategorySpace.load(run / "best").count_list()
    expected = logits + logit_adjustment(counts, 2.0)[None, :]
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, rtol=1e-5, atol=1e-5)
    assert [line.split(",")[1] for line in adjusted_out.read_text().splitlines()] == \
        [categories[i] for i in expected.argmax(axis=1)]


def test_learning_rate_is_pinned_per_update(synthetic_root, tmp_path):
    """The logged rate of update u is peak * factor(u - 1): the schedule counts optimizer updates."""
    from mmcls.engine.finetune import finetune

    run = tmp_path / "run"
    cfg = build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=6", "train.eval_every=1",
                                          "train.warmup_steps=2", "train.schedule=linear", "train.lr=1e-3",
                                          "train.grad_accum_steps=2"))
    finetune(cfg)
    lrs = [float(r["lr"]) for r in read_metrics(run)]
    assert lrs == pytest.approx([1e-3 * lr_factor(u, 6, 2, "linear", 0.0) for u in range(6)], rel=1e-5)


def test_finetune_with_the_recipe_switched_on(synthetic_root, tmp_path):
    """Every trick at once on a tiny run: it trains, validates the EMA, averages top-k snapshots, logs each part."""
    from mmcls.engine.finetune import finetune

    run = tmp_path / "run"
    cfg = build_config({}, tiny_overrides(
        synthetic_root, run, "train.max_steps=6", "train.eval_every=2", "train.log_every=1",
        "train.layer_decay=0.8", "train.optimizer=ranger", "train.schedule=cosine_restarts",
        "train.ema.decay=0.9", "train.adversarial.method=pgd", "train.adversarial.steps=2",
        "train.adversarial.frames=true", "train.loss.class_weights=effective", "train.loss.focal_gamma=1.0",
        "train.loss.label_smoothing=0.1", "train.loss.rdrop_alpha=0.5", "model.dropout_samples=2",
        "train.mix.mixup_alpha=0.4", "train.mix.cutmix_alpha=1.0", "train.swa.mode=topk", "train.swa.count=2",
        "train.freeze.towers=[vision]", "train.freeze.layers=1", "train.freeze.updates=3",
        "train.grad_checkpointing=true"))
    scores = finetune(cfg)
    rows = read_metrics(run)
    assert [r["weights"] for r in rows] == ["ema", "ema", "ema", "swa"]
    assert 0.0 <= scores["mean_f1"] <= 1.0
    for name in ("best/model.safetensors", "swa/model.safetensors"):
        assert (run / name).is_file(), name
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "SWA of 2 snapshots" in log
    assert "update 3:" in log  # the vision tower's lower layers unfroze at update 3
    tags = _tensorboard_tags(run)
    assert {"train/loss_lv2", "train/loss_rdrop", "train/loss_adv"} <= tags


def test_early_stopping_stops_after_patience(synthetic_root, tmp_path):
    from mmcls.engine.finetune import finetune

    run = tmp_path / "run"
    # a zero learning rate can never improve on the first validation: patience 2 stops at the third
    cfg = build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=20", "train.eval_every=1",
                                          "train.lr=0", "train.lr_text=0", "train.lr_vision=0",
                                          "train.early_stopping_patience=2"))
    finetune(cfg)
    assert [int(r["step"]) for r in read_metrics(run)] == [1, 2, 3]
    assert "early stopping" in (run / "train.log").read_text(encoding="utf-8")


def _tensorboard_tags(run: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_two_processes_finetune_and_predict(synthetic_root, tmp_path):
    run = tmp_path / "run2"
    proc = launch_two_processes("finetune", [
        "--config", str(ROOT / "configs" / "demo.yaml"),
        *tiny_overrides(synthetic_root, run, "train.max_steps=4", "train.eval_every=2", "train.warmup_steps=1",
                        "train.schedule=linear", "train.lr=1e-3",
                        # the tricks with extra passes or extra state must keep the replicas identical
                        "train.adversarial.method=fgm", "train.ema.decay=0.9", "train.loss.rdrop_alpha=0.5",
                        "train.mix.mixup_alpha=0.4", "train.swa.mode=topk", "train.freeze.towers=[vision]",
                        "train.freeze.updates=2")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "2 process(es)" in log  # really two processes, not one
    assert "weights identical on all 2 processes" in log
    lrs = [float(r["lr"]) for r in read_metrics(run) if r["weights"] != "swa"]
    assert lrs == pytest.approx([1e-3 * lr_factor(u, 4, 1, "linear", 0.0) for u in (1, 3)], rel=1e-5)

    out = tmp_path / "result2.csv"
    proc = launch_two_processes("predict", ["--model", str(run / "best"), "--output", str(out),
                                                     "--batch-size", "5"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text())]
    assert read_csv_ids(out) == test_ids  # 32 ids over 2 processes x batches of 5: padding never duplicates


def test_bad_model_folder_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), "--model", str(tmp_path),
                           "--output", str(tmp_path / "x.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: not a trained model folder")


@pytest.mark.parametrize("source", ["zip", "mp4"])
def test_unreadable_videos_are_counted_per_epoch_in_the_metrics(synthetic_root, tmp_path, source):
    """Every planted broken video (missing, zero-byte, truncated, member-less or non-JPEG zips; zero-byte or
    truncated mp4s) costs one sample: the run goes on and metrics.csv counts each once per epoch."""
    from mmcls.data.dataset import build_dataset
    from mmcls.data.splits import load_labelled_splits
    from mmcls.data.tokenizer import load_tokenizer
    from mmcls.engine.finetune import finetune
    from mmcls.synthetic import FAULT_SOURCES

    run = tmp_path / "run"
    cfg = build_config({}, tiny_overrides(synthetic_root, run, "train.epochs=2", "train.batch_size=1",
                                          f"data.frame_source={source}"))
    train_split, val_split, categories = load_labelled_splits(cfg.data, cfg.seed)
    faults = json.loads((synthetic_root / "faults.json").read_text(encoding="utf-8"))["labeled"]
    tokenizer = load_tokenizer(synthetic_root / "tokenizer")

    def unreadable(split) -> int:
        """The videos of ``split`` the frame loader rejects; at least every planted fault that always breaks."""
        dataset = build_dataset(cfg.data, split, tokenizer, categories, train=False)
        failed = {dataset[i]["id"] for i in range(len(dataset)) if dataset[i]["video_error"] is not None}
        # a truncated mp4 may keep a decodable head, which is then read
        certain = {r.id for r in split.records if faults.get(r.id) not in (None, "truncated_mp4")
                   and source in FAULT_SOURCES[faults[r.id]]}
        assert certain <= failed
        return len(failed)

    assert unreadable(train_split) >= 2  # planted faults that the counts below must find
    finetune(cfg)
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [int(r["train_video_failures"]) for r in rows] == [unreadable(train_split)] * 2
    assert [int(r["video_failures"]) for r in rows] == [unreadable(val_split)] * 2
    log = (run / "train.log").read_text(encoding="utf-8")
    assert f"{unreadable(train_split)} unreadable training videos" in log
