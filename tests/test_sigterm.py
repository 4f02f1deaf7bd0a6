"""SIGTERM (schedulers, ``timeout``): the training loop saves ``checkpoints/last`` at the next update and stops with
one line; the same command resumes it to the weights of a run that was never stopped. DataLoader workers outlive a
SIGTERM sent to the whole process group."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import read_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _args(root: Path, run: Path) -> list[str]:
    # two workers: the signal goes to the whole process group, workers included, as `timeout` and SLURM send it
    return ["--config", str(ROOT / "configs" / "demo.yaml"),
            *tiny_overrides(root, run, "train.max_steps=20", "train.eval_every=5", "data.num_workers=2")]


def _metrics_steps(run: Path) -> list[int]:
    try:
        lines = (run / "metrics.csv").read_text(encoding="utf-8").splitlines()[1:]
    except OSError:
        return []
    return [int(line.split(",")[0]) for line in lines if line]


@pytest.mark.timeout(600)
def test_sigterm_saves_at_the_next_update_and_the_rerun_ends_like_an_unstopped_run(synthetic_root, tmp_path):
    from mmcls.cli import run_main
    from mmcls.commands.finetune import main

    stopped, reference = tmp_path / "stopped", tmp_path / "reference"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "mmcls", "finetune", *_args(synthetic_root, stopped)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and not seen and time.monotonic() < deadline:
            time.sleep(0.02)
            seen = _metrics_steps(stopped)
        os.killpg(process.pid, signal.SIGTERM)  # update 5 has been validated: mid-epoch (8 updates), the run goes on
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stderr = log.read_text()
    assert seen[:1] == [5], stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"error: stopped by SIGTERM at update (\d+); {re.escape(str(stopped))}/checkpoints/last "
                         r"saved: rerun the same command to resume", last)
    assert process.returncode == 143 and match, stderr[-3000:]
    update = int(match.group(1))
    state = json.loads((stopped / "checkpoints" / "last" / "trainer_state.json").read_text())["state"]
    assert state["update"] == update and max(seen) <= update < 20 and not (stopped / "result.json").exists()

    assert run_main(main, _args(synthetic_root, stopped)) == 0  # the same command: resumes where it stopped
    log_text = (stopped / "train.log").read_text()
    assert f"resumed from {stopped / 'checkpoints' / 'last'}: update {update}," in log_text
    assert "stale lock" not in log_text  # the stopped run released the folder's lock
    assert run_main(main, _args(synthetic_root, reference)) == 0
    for name in ("checkpoints/last/model.safetensors", "best/model.safetensors"):
        expected, got = load_file(reference / name), load_file(stopped / name)
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), name
    rows = [(r["step"], r["mean_f1"], r["val_loss"]) for r in read_metrics(reference)]
    assert [(r["step"], r["mean_f1"], r["val_loss"]) for r in read_metrics(stopped)] == rows


def test_the_handler_lives_only_while_the_loop_runs_and_every_process_stops_together():
    from mmcls.engine.loop import StopRequest

    class Peers:  # the accelerator of one process of three: the flags of the others are summed in
        device, num_processes = "cpu", 3

        def __init__(self, others: float) -> None:
            self.others = others

        def reduce(self, tensor, op):
            assert op == "sum"
            return tensor + self.others

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) != before
        assert not stop.requested(Peers(0.0))
        assert stop.requested(Peers(1.0))  # another process got the signal: this one stops at the same update
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the test process goes on
        time.sleep(0.01)
        assert stop.signal == signal.SIGTERM and stop.requested(Peers(0.0))
    assert signal.getsignal(signal.SIGTERM) == before


def test_dataloader_workers_ignore_a_sigterm_their_process_did_not_send():
    from torch.utils.data import DataLoader

    from mmcls.data.dataset import init_worker

    if not hasattr(signal, "sigwaitinfo"):
        pytest.skip("needs sigwaitinfo (Linux)")
    loader = DataLoader(_Pids(), batch_size=1, num_workers=2, persistent_workers=True, worker_init_fn=init_worker)
    batches = iter(loader)
    seen: set[int] = set()
    while len(seen) < 2:  # both workers have started (and run init_worker)
        seen.update(next(batches).tolist())
    subprocess.run(["kill", "-TERM", *map(str, seen)], check=True)  # from another process, as killpg sends it
    time.sleep(0.3)
    assert len([next(batches) for _ in range(6)]) == 6
    workers = batches._workers
    assert all(worker.is_alive() for worker in workers)
    for worker in workers:  # the loader's own process ending them still does
        worker.terminate()
    for worker in workers:
        worker.join(10)
    assert [worker.exitcode for worker in workers] == [0, 0]
    batches._shutdown_workers()


class _Pids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, index: int) -> int:
        return os.getpid()
