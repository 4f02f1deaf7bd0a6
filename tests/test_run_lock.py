"""One training run per output_dir: a second live run stops with one line before writing anything; a lock left by
a run that died does not block."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]

# what a running mmcls training holds (mmcls.rundir.RunLock): a POSIX lock on RUN/.lock, its pid, host and start time
HOLD = """
import fcntl, json, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-02 03:04:05 +0000",
                         "command": "finetune/train.py"}).encode())
print("held", flush=True)
sys.stdin.read()
"""


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_a_second_live_run_on_the_same_output_dir_stops_before_writing_anything(tmp_path, capsys):
    from mmcls.cli import run_main
    from mmcls.commands.finetune import main

    run = tmp_path / "run"  # the first run's folder, early on: no complete checkpoint yet
    (run / "checkpoints" / "last.tmp").mkdir(parents=True)
    for name, text in (("config.yaml", "seed: 1\n"), ("metrics.csv", "step,mean_f1\n4,0.5\n"), ("train.log", "x\n"),
                       ("checkpoints/last.tmp/model.safetensors", "being written")):
        (run / name).write_text(text)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(run)
        code = run_main(main, ["--config", str(ROOT / "configs" / "demo.yaml"),
                               *tiny_overrides(tmp_path / "data", run, "train.max_steps=2")])
        err = capsys.readouterr().err.strip().splitlines()
        assert _snapshot(run) == before  # nothing written, not even train.log
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert code == 2 and len(err) == 1, err
    assert re.fullmatch(rf"error: output_dir: {re.escape(str(run))} is in use by another run \(pid {holder.pid} on "
                        rf"{re.escape(socket.gethostname())}, started 2026-01-02 03:04:05 \+0000\); wait for it to end "
                        r"or use another output_dir", err[0]), err[0]


def test_a_stale_lock_is_taken_over_and_a_finished_run_releases_its_lock(synthetic_root, tmp_path):
    from mmcls.cli import run_main
    from mmcls.commands.finetune import main

    run = tmp_path / "run"
    run.mkdir()
    pid = _dead_pid()  # a run killed with -9: its lock file stays, its OS lock went with it
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "yesterday"}))
    assert run_main(main, ["--config", str(ROOT / "configs" / "demo.yaml"),
                           *tiny_overrides(synthetic_root, run, "train.max_steps=1")]) == 0
    assert (f"took over the stale lock {run / '.lock'} of a run that ended without releasing it (pid {pid} on "
            f"{socket.gethostname()}, started yesterday)") in (run / "train.log").read_text()
    assert not (run / ".lock").exists()


def test_without_os_locks_the_recorded_pid_decides(tmp_path, monkeypatch):
    from mmcls import rundir
    from mmcls.rundir import RunInUse, RunLock

    monkeypatch.setattr(rundir, "_os_lock", lambda fd: None)  # a file system without locks
    lock_file = tmp_path / ".lock"
    here = socket.gethostname()
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": here, "started": "now"}))  # alive on this host
    with pytest.raises(RunInUse, match=rf"in use by another run \(pid {os.getppid()} on "):
        RunLock(tmp_path).acquire()
    lock_file.write_text(json.dumps({"pid": 1234, "host": "elsewhere", "started": "now"}))  # cannot be checked
    with pytest.raises(RunInUse, match=rf"if that run has ended, delete {re.escape(str(lock_file))}"):
        RunLock(tmp_path).acquire()
    lock_file.write_text(json.dumps({"pid": _dead_pid(), "host": here, "started": "now"}))
    lock = RunLock(tmp_path)
    assert "took over the stale lock" in lock.acquire()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_file.exists()


def test_a_lock_left_by_an_earlier_failed_run_of_this_process_is_taken_back(tmp_path):
    from mmcls.rundir import RunDir

    first = RunDir(tmp_path, is_main=True)
    first.lock()  # ... and the run failed without closing
    second = RunDir(tmp_path, is_main=True)
    second.lock()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    first.close()  # the earlier run's handle no longer holds anything
    assert (tmp_path / ".lock").exists()
    second.close()
    assert not (tmp_path / ".lock").exists()
    RunDir(tmp_path, is_main=False).lock()  # only the main process of a run takes it
    assert not (tmp_path / ".lock").exists()
