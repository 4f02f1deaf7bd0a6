"""A finetuning run killed with SIGKILL and started again with the same command ends with the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcls.config import build_config
from mmcls.errors import ConfigError
from tests.helpers import read_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _command(root: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "finetune" / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
            *tiny_overrides(root, run, "train.max_steps=30", "train.checkpoint_every=4", "train.log_every=1",
                            "train.ema.decay=0.9", "data.num_workers=2", *extra)]


def _pretrain_command(root: Path, run: Path) -> list[str]:
    return [sys.executable, str(ROOT / "pretrain" / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
            "--config", str(ROOT / "configs" / "pretrain_demo.yaml"),
            *tiny_overrides(root, run, "pretrain.holdout=16", "train.max_steps=30", "train.checkpoint_every=4")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _kill_after_checkpoint(command: list[str], run: Path, min_update: int) -> int:
    """Start ``command``, SIGKILL it as soon as checkpoints/last holds update >= ``min_update``; that update."""
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "checkpoints" / "last" / "trainer_state.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                update = json.loads(state.read_text())["state"]["update"]
            except (OSError, ValueError, KeyError):
                update = -1
            if update >= min_update:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return update
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pytest.fail("the run finished or stalled before it could be killed")


@pytest.mark.timeout(900)
def test_killed_run_resumes_to_the_same_weights(synthetic_root, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_command(synthetic_root, reference), env=_env(), check=True, capture_output=True)

    at = _kill_after_checkpoint(_command(synthetic_root, killed), killed, min_update=12)
    assert not (killed / "result.json").exists() and at < 30  # really killed mid-run
    subprocess.run(_command(synthetic_root, killed), env=_env(), check=True, capture_output=True)
    assert f"resumed from {killed / 'checkpoints'}" in (killed / "train.log").read_text()

    for name in ("checkpoints/last/model.safetensors", "best/model.safetensors"):
        expected, got = load_file(reference / name), load_file(killed / name)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), name
    rows = [(r["step"], r["mean_f1"], r["val_loss"]) for r in read_metrics(reference)]
    assert [(r["step"], r["mean_f1"], r["val_loss"]) for r in read_metrics(killed)] == rows


@pytest.mark.slow  # the loop and checkpoint code are the finetuning test's; `make test-all` runs this one
@pytest.mark.timeout(900)
def test_killed_pretraining_resumes_to_the_same_weights(synthetic_root, tmp_path):
    """Also the per-batch masking (drawn from the batch's index in the epoch) replays after a resume."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_pretrain_command(synthetic_root, reference), env=_env(), check=True, capture_output=True)
    at = _kill_after_checkpoint(_pretrain_command(synthetic_root, killed), killed, min_update=10)
    assert at < 30
    subprocess.run(_pretrain_command(synthetic_root, killed), env=_env(), check=True, capture_output=True)
    assert "resumed from" in (killed / "train.log").read_text()
    expected = load_file(reference / "checkpoints" / "last" / "model.safetensors")
    got = load_file(killed / "checkpoints" / "last" / "model.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_checkpoint_of_other_settings_is_not_resumed(synthetic_root, tmp_path):
    from mmcls.engine.finetune import finetune

    run = tmp_path / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2")))
    with pytest.raises(ConfigError, match=r"holds a run with other settings: train\.lr"):
        finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2", "train.lr=1e-2")))
    # the finished run resumed: nothing left to train, the same best score
    again = finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2")))
    assert "resumed from" in (run / "train.log").read_text()
    fresh = finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2", "train.lr=1e-2",
                                                     "train.resume=false")))
    assert again["update"] == 2 and fresh["update"] == 2
    # a checkpoint of an older layout is refused with one line, never loaded in part
    state_file = run / "checkpoints" / "last" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({k: v for k, v in state.items() if k != "format"}))
    with pytest.raises(ConfigError, match=r"older mmcls.*train\.resume=false"):
        finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2", "train.lr=1e-2")))


def test_the_last_n_checkpoints_are_kept_and_a_resume_finds_one(synthetic_root, tmp_path):
    from mmcls.engine.finetune import finetune
    from mmcls.engine.last_checkpoint import find_checkpoint

    run = tmp_path / "run"
    overrides = tiny_overrides(synthetic_root, run, "train.max_steps=12", "train.checkpoint_every=2",
                               "train.keep_checkpoints=3")
    finetune(build_config({}, overrides))
    checkpoints = run / "checkpoints"
    kept = sorted(p.name for p in checkpoints.glob("update-*"))
    assert len(kept) == 2 and not (checkpoints / "last.tmp").exists()
    last_update = json.loads((checkpoints / "last" / "trainer_state.json").read_text())["state"]["update"]
    assert last_update == 12 and all(int(name.split("-")[1]) < 12 for name in kept)
    # a kill between the two renames of a save leaves no `last`: the newest kept checkpoint is found
    (checkpoints / "last").rename(checkpoints / "gone")
    assert find_checkpoint(checkpoints) == checkpoints / kept[-1]
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        build_config({}, ["train.keep_checkpoints=0"])


class _TwoProcesses:
    """A stand-in accelerator for process ``index`` of two whose peer holds ``peer`` (sums, as gloo would)."""

    device = "cpu"

    def __init__(self, index: int, peer: list[float]) -> None:
        self.process_index, self.peer = index, peer

    def reduce(self, tensor, op):
        assert op == "sum"
        import torch

        return tensor + torch.tensor(self.peer, dtype=tensor.dtype)


def test_checkpoints_store_epoch_sums_of_all_processes_and_resume_them_once():
    from mmcls.engine.last_checkpoint import EpochPosition, global_position, local_share

    mine = EpochPosition.start(("loss", "loss_mlm"))
    mine.batches, mine.failures = 5, 2
    for loss, mlm in ((2.0, 1.0), (2.0, 1.0), (2.0, 1.0), (2.0, 0.5), (2.0, float("nan"))):
        mine.record({"loss": loss, "loss_mlm": mlm, "not_recorded": 1.0})
    assert mine.counts == {"loss": 5, "loss_mlm": 4}  # a non-finite figure is left out of its own mean only
    # the peer's [failures, sums (loss, loss_mlm), counts (loss, loss_mlm)]
    summed = global_position(_TwoProcesses(0, [1.0, 6.0, 6.5, 5.0, 4.0]), mine)
    assert (summed.failures, summed.batches) == (3, 5)
    assert summed.sums == {"loss": 16.0, "loss_mlm": 10.0} and summed.counts == {"loss": 10, "loss_mlm": 8}
    assert summed.mean("loss") == 1.6 and summed.mean("loss_mlm") == 1.25
    # on resume the main process carries the totals and the other starts from zero: a later reduce adds them once
    assert local_share(_TwoProcesses(0, []), summed) == summed
    other = local_share(_TwoProcesses(1, []), summed)
    assert (other.failures, other.batches) == (0, 5)
    assert other.sums == {"loss": 0.0, "loss_mlm": 0.0} and other.counts == {"loss": 0, "loss_mlm": 0}


class _Payload:
    """What an attacker plants: unpickling it calls ``open(marker, "w")``, i.e. runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_resume_runs_no_code_from_the_run_folder_and_every_state_file_must_load(synthetic_root, tmp_path):
    """A run folder on a shared disk is not trusted input: a pickle planted in (or next to) any state file that a
    resume reads stops the rerun with one line naming the file, and nothing runs; a corrupt file is never skipped
    (accelerate alone would resume with fresh random states)."""
    import shutil

    from mmcls.engine.finetune import finetune

    run = tmp_path / "run"
    overrides = tiny_overrides(synthetic_root, run, "train.max_steps=2", "train.ema.decay=0.9")
    finetune(build_config({}, overrides))
    last = run / "checkpoints" / "last"
    pristine = tmp_path / "pristine"
    shutil.copytree(last, pristine)
    marker = tmp_path / "pwned"
    cases = {"random_states_0.pkl": "payload", "optimizer.bin": "payload", "custom_checkpoint_0.pkl": "payload",
             "random_states_0.pkl ": "junk", "parts.safetensors": "junk", "model.safetensors": "junk"}
    for name, kind in cases.items():
        name = name.strip()
        shutil.rmtree(last)
        shutil.copytree(pristine, last)
        if kind == "payload":
            torch.save({"state": _Payload(marker)}, last / name)
        else:
            (last / name).write_bytes(b"junk\n")
        with pytest.raises(ConfigError, match=rf"^output_dir: cannot resume from .*last: .*{name.split('.')[0]}.*"
                                              r"train\.resume=false") as error:
            finetune(build_config({}, overrides))
        assert "\n" not in str(error.value) and not marker.exists(), name
    shutil.rmtree(last)
    shutil.copytree(pristine, last)
    assert finetune(build_config({}, overrides))["update"] == 2  # the untouched checkpoint resumes
    assert "resumed from" in (run / "train.log").read_text()
