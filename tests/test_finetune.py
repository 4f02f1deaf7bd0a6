"""Finetuning and prediction end to end on a tiny synthetic dataset, in one and in two real processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcls.config import build_config
from mmcls.engine.optim import lr_factor

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}", "data.category_file=category_ids.txt", "data.max_frames=4", "data.frame_size=24",
        "data.resize_size=32", "data.max_text_len=32", "data.num_workers=0",
        "model.vision.overrides={width: 32, layers: 1, heads: 2, patch_size: 8, embed_dim: 32}",
        "model.text.hidden_size=32", "model.text.num_layers=1", "model.text.num_heads=2",
        "model.text.intermediate_size=64", "model.text.max_positions=64",
        "train.batch_size=8", "train.eval_batch_size=16", f"output_dir={out}", *extra,
    ]


def read_metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_csv_ids(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text(encoding="utf-8").splitlines()]


def test_finetune_writes_the_run_directory_and_predict_writes_every_id(synthetic_root, tmp_path):
    sys.path.insert(0, str(ROOT / "finetune"))
    sys.path.insert(0, str(ROOT / "tools"))
    import predict
    import train

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


def launch_two_processes(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU: two real gloo processes."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               "29517", str(ROOT / script), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_two_processes_finetune_and_predict(synthetic_root, tmp_path):
    run = tmp_path / "run2"
    proc = launch_two_processes("finetune/train.py", [
        "--config", str(ROOT / "configs" / "demo.yaml"),
        *tiny_overrides(synthetic_root, run, "train.max_steps=4", "train.eval_every=2", "train.warmup_steps=1",
                        "train.schedule=linear", "train.lr=1e-3")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "2 process(es)" in log  # really two processes, not one
    lrs = [float(r["lr"]) for r in read_metrics(run)]
    assert lrs == pytest.approx([1e-3 * lr_factor(u, 4, 1, "linear", 0.0) for u in (1, 3)], rel=1e-5)

    out = tmp_path / "result2.csv"
    proc = launch_two_processes("tools/predict.py", ["--model", str(run / "best"), "--output", str(out),
                                                     "--batch-size", "5"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text())]
    assert read_csv_ids(out) == test_ids  # 32 ids over 2 processes x batches of 5: padding never duplicates


def test_bad_model_folder_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), "--model", str(tmp_path),
                           "--output", str(tmp_path / "x.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: not a trained model folder")
