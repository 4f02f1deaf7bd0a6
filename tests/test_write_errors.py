"""A disk that refuses a write (full, read-only, over quota) while a run saves: one line naming the path and the free
space, and the previous copy intact."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
from safetensors import SafetensorError

from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
FREE = r"\([\d.]+ [KMGT]?B free on /[^)]*\)"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_the_previous_checkpoint_stays(
        synthetic_root, tmp_path, monkeypatch, capsys):
    from accelerate import Accelerator

    from mmcls.cli import run_main
    from mmcls.commands.finetune import main

    run = tmp_path / "run"
    last = run / "checkpoints" / "last"
    real_save_state = Accelerator.save_state
    before: dict[str, bytes] = {}

    def save_state(self, output_dir=None, **kwargs):
        if not last.is_dir():
            return real_save_state(self, output_dir, **kwargs)
        before.update(_files(last))  # the second checkpoint runs out of space half-way
        real_save_state(self, output_dir, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(output_dir) / "optimizer.bin"))

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    code = run_main(main, ["--config", str(ROOT / "configs" / "demo.yaml"),
                           *tiny_overrides(synthetic_root, run, "train.max_steps=4", "train.checkpoint_every=2")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    target = re.escape(str(run / "checkpoints" / "last.tmp" / "optimizer.bin"))
    assert re.fullmatch(rf"error: cannot write {target}: No space left on device {FREE}", err.strip().splitlines()[-1])
    assert before and _files(last) == before
    assert json.loads((last / "trainer_state.json").read_text())["state"]["update"] == 2
    assert not (run / ".lock").exists()  # the failed run released the folder


def test_refused_writes_of_every_writer_are_recognised_and_other_errors_pass(tmp_path):
    from mmcls.io import WriteError, write_error, writing

    path = tmp_path / "best.tmp"
    cases = {
        OSError(errno.ENOSPC, "No space left on device"): f"{path}: No space left on device",
        OSError(errno.EROFS, "Read-only file system", str(path / "model.safetensors")):
            f"{path / 'model.safetensors'}: Read-only file system",
        # safetensors (Rust) and torch.save's zip writer, as they report a full disk
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"):
            f"{path}: No space left on device",
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"):
            f"{path}: the write failed ([enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534)",
    }
    for exc, shown in cases.items():
        error = write_error(exc, path)
        assert isinstance(error, WriteError) and re.fullmatch(rf"cannot write {re.escape(shown)} {FREE}", str(error))
    try:
        raise RuntimeError("saving failed") from OSError(errno.EDQUOT, "Disk quota exceeded")
    except RuntimeError as exc:
        assert "Disk quota exceeded" in str(write_error(exc, path))
    for exc in (OSError(errno.ENOENT, "No such file or directory"), ValueError("not a write"),
                OSError(errno.EACCES, "Permission denied", "/elsewhere/annotations.json")):  # read of another file
        assert write_error(exc, path) is None
    with pytest.raises(ValueError), writing(path):
        raise ValueError("passes through")


def test_a_refused_folder_or_file_leaves_the_previous_one(tmp_path, monkeypatch):
    from mmcls.io import WriteError, atomic_dir, atomic_write_text
    from mmcls.rundir import RunDir

    best = tmp_path / "best"
    best.mkdir()
    (best / "model.safetensors").write_bytes(b"old weights")
    with pytest.raises(WriteError, match=rf"cannot write {re.escape(str(best))}\.tmp/model\.safetensors: Disk quota "
                                         rf"exceeded {FREE}"), atomic_dir(best) as tmp:
        (tmp / "model.safetensors").write_bytes(b"new")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(tmp / "model.safetensors"))
    assert _files(best) == {"model.safetensors": b"old weights"} and not (tmp_path / "best.tmp").exists()

    result = tmp_path / "result.json"
    result.write_text("old")
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        with pytest.raises(WriteError, match=rf"cannot write {re.escape(str(result))}: No space left on device"):
            atomic_write_text(result, "new")
    assert result.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == sorted(["best", "result.json"])

    run = RunDir(tmp_path / "run", is_main=True)
    with monkeypatch.context() as patch:
        patch.setattr(Path, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS,
                                                                                   "Read-only file system")))
        with pytest.raises(WriteError, match=rf"cannot write {re.escape(str(run.metrics_csv))}: Read-only file system"):
            run.append_metrics({"step": 1, "mean_f1": 0.5})
