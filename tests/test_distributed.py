"""The shipped accelerate launch configs load, and the CPU one really starts two finetuning processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"multi_gpu": ("MULTI_GPU", 8, 1), "multi_node": ("MULTI_GPU", 16, 2),
            "deepspeed_zero2": ("DEEPSPEED", 8, 1), "fsdp": ("FSDP", 8, 1), "cpu_2proc": ("MULTI_GPU", 2, 1)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert (str(config.distributed_type).split(".")[-1], config.num_processes, config.num_machines) == EXPECTED[name]
    assert (ROOT / "docs" / "DISTRIBUTED.md").read_text().count(f"{name}.yaml") >= 1


def test_cpu_launch_config_starts_two_processes(synthetic_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"), str(ROOT / "finetune" / "train.py"),
               "--config", str(ROOT / "configs" / "demo.yaml"),
               *tiny_overrides(synthetic_root, run, "train.max_steps=2")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "2 process(es)" in log and "weights identical on all 2 processes" in log


# Everything that draws random numbers per process is off: dropout (heads, BERT, frames), mixup, R-Drop and the
# adversarial attack. Data augmentation is a function of (seed, epoch, index) only, and the shuffle is one
# permutation cut into global batches, so both runs see the same videos in the same global batches. Class weights
# and the video loss (over the videos with frames) make the per-process shares unequal: the criterion normalises
# over the global batch. What is left is float summation order, measured at ~2e-7 in the logits.
DETERMINISTIC = ("model.dropout=0.0", "model.text.dropout=0.0", "train.epochs=3", "train.eval_batch_size=12",
                 "train.loss.class_weights=inverse", "train.loss.label_smoothing=0.1")
LOSS_RTOL = 1e-5
LOGITS_ATOL = 1e-4  # measured 2e-7 here; Adam can amplify float noise in near-zero gradients on other CPUs/builds
F1_ATOL = 1e-9  # the same predictions give the same scores (checked below: no prediction flips between the runs)


def _launch(run: Path, synthetic_root: Path, batch_size: int, processes: int) -> list[dict[str, str]]:
    from tests.helpers import read_metrics

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                 str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml")] if processes == 2 else [sys.executable])
    command = [*launcher, str(ROOT / "finetune" / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
               *tiny_overrides(synthetic_root, run, *DETERMINISTIC, f"train.batch_size={batch_size}")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=run.parent, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{processes} process(es), global batch 8" in (run / "train.log").read_text(encoding="utf-8")
    return read_metrics(run)


@pytest.mark.timeout(900)
def test_two_processes_match_one_process_with_the_same_global_batch(synthetic_root, tmp_path):
    one = _launch(tmp_path / "one", synthetic_root, batch_size=8, processes=1)
    two = _launch(tmp_path / "two", synthetic_root, batch_size=4, processes=2)
    assert [(r["step"], r["epoch"]) for r in one] == [(r["step"], r["epoch"]) for r in two]
    assert len(one) == 3  # one validation per epoch: the later epochs' reshuffles matched too
    for a, b in zip(one, two, strict=True):
        for key in ("train_loss", "val_loss", "lr"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=LOSS_RTOL), key
        for key in ("lv1_micro_f1", "lv1_macro_f1", "lv2_micro_f1", "lv2_macro_f1", "mean_f1"):
            assert abs(float(b[key]) - float(a[key])) <= F1_ATOL, key
        # every validation video counted once: the unreadable ones too (no duplicated tail samples)
        assert a["video_failures"] == b["video_failures"] and a["train_video_failures"] == b["train_video_failures"]
    from mmcls.logits import load_logits

    val_one, val_two = (load_logits(tmp_path / name / "val_logits.npy") for name in ("one", "two"))
    assert val_one.ids == val_two.ids  # gathered in sample order without repeats
    np.testing.assert_allclose(val_two.logits, val_one.logits, atol=LOGITS_ATOL)
    top2 = np.sort(val_one.logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * LOGITS_ATOL  # a near-tie may flip within the tolerance
    assert (val_one.logits.argmax(1) == val_two.logits.argmax(1))[clear].all()
