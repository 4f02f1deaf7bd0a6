"""The shipped accelerate launch configs load, and the CPU one really starts two finetuning processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_finetune import tiny_overrides

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
