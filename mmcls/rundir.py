"""The run directory (docs/ARCHITECTURE.md): config.yaml, metrics.csv, train.log, TensorBoard, best/ and checkpoints/.

Only the main process writes. Every file that readers may see half-written is written atomically: the config and
portable weights go to a temporary sibling first and are renamed into place. A write the disk refuses is one line
naming the file and the free space (:class:`mmcls.io.WriteError`).

A training run holds the folder's lock (:class:`RunLock`, ``RUN/.lock``) for its whole life, so that a second run
started on the same ``output_dir`` stops with one line instead of overwriting the first one's checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcls.config import Config, save_config
from mmcls.errors import UserError
from mmcls.io import atomic_open, atomic_write_text, writing

METRIC_COLUMNS = ("step", "epoch", "train_loss", "lr", "val_loss", "lv1_micro_f1", "lv1_macro_f1", "lv2_micro_f1",
                  "lv2_macro_f1", "mean_f1", "video_failures", "train_video_failures", "elapsed_s", "weights")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VAL_LOGITS = "val_logits.npy"  # logits bundle (mmcls.logits) of the best weights on the validation split
VAL_TRUTH = "val_truth.csv"  # id,category_id of the labelled validation videos (a truth file for tools/evaluate.py)
RESULT_FILE = "result.json"  # the best scores, written when a run has finished
TEMPORAL_FILE = "temporal.json"  # the temporal diagnostic of best/ (tools/time_diagnostic.py), if run
LOCK_FILE = ".lock"  # held by the training run writing into the folder: its pid, host, start time and command


class RunInUse(UserError):
    """Another live training run holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (POSIX; elsewhere assumed alive)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    """``fd`` is still the file at ``path`` (a run that released the lock meanwhile removed it)."""
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _os_lock(fd: int) -> bool | None:
    """Try the exclusive OS lock on ``fd`` without waiting: True (taken), False (another process holds it), None (no
    OS locks here: not POSIX, or a file system without lock support).

    A POSIX record lock (``lockf``), not ``flock``: it belongs to this process only, so DataLoader workers forked
    from it do not hold it after a ``kill -9`` of the run, and the kernel drops it when the process dies. It also
    works across machines on NFS. Its one trap: closing ANY descriptor of the lock file in this process drops it, so
    the file is only ever opened through :class:`RunLock`.
    """
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    """The record in the lock file (empty when there is none or it is unreadable; no "pid" unless it is one)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(holder, dict):
        return {}
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        holder.pop("pid", None)
    return holder


def _describe(holder: Mapping[str, Any]) -> str:
    if not holder.get("pid"):
        return "a run that is starting or did not record itself"
    return f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


_HELD: dict[Path, RunLock] = {}  # the run folder locks this process holds, by lock file


class RunLock:
    """The lock of one run folder: ``RUN/.lock``, held by an OS lock on an open descriptor for the run's life, with
    the holder's pid, host, start time and command as JSON (for the message a second run prints).

    A lock file whose OS lock nobody holds (its run was killed, the machine rebooted) is stale and taken over with a
    warning; where the file system has no OS locks, the recorded pid decides (a pid that is gone on this host is
    stale; a run on another host cannot be checked, so it blocks until the file is removed). The file is removed on
    release (:meth:`RunDir.close`, the end of the process, or an error in the training loop).
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.fd: int | None = None
        self.pid = os.getpid()

    def acquire(self) -> str | None:
        """Take the lock, or raise :class:`RunInUse` naming the live run that holds it; returns a warning when a
        stale lock was taken over."""
        key = Path(os.path.abspath(self.path))
        earlier = _HELD.get(key)
        if earlier is not None:  # an earlier run of this process on the folder that ended with an error
            earlier.release()
        for _ in range(10):  # only repeats when a releasing run removed the file between our open and lock
            with writing(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                note = self._take(fd)
            except BaseException:
                os.close(fd)
                raise
            if note is not False:
                break
            os.close(fd)
        else:
            raise RunInUse(f"output_dir: could not take the lock {self.path}: other runs keep taking and releasing it")
        record = {"pid": self.pid, "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                  "command": " ".join(sys.argv)}
        with writing(self.path):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
            os.fsync(fd)
        self.fd = fd
        _HELD[key] = self
        return note or None

    def _take(self, fd: int) -> str | bool:
        """Lock ``fd``: a warning text for a stale lock taken over, "" for a fresh one, False to start again (the
        file was removed meanwhile); raises :class:`RunInUse`."""
        locked = _os_lock(fd)
        holder = _read_holder(fd)
        folder = self.path.parent
        in_use = (f"output_dir: {folder} is in use by another run ({_describe(holder)}); wait for it to end or use "
                  "another output_dir")
        if locked is False:
            raise RunInUse(in_use)
        if locked and not _same_file(fd, self.path):
            return False
        if not holder.get("pid"):
            return ""
        if locked is None:  # no OS lock: the recorded pid decides
            here = holder.get("host") == socket.gethostname()
            if not here:
                raise RunInUse(f"{in_use} (this file system has no locks: if that run has ended, delete {self.path})")
            if holder["pid"] != self.pid and _pid_alive(holder["pid"]):
                raise RunInUse(in_use)
        return (f"output_dir: took over the stale lock {self.path} of a run that ended without releasing it "
                f"({_describe(holder)})")

    def release(self) -> None:
        """Remove the lock file and drop the OS lock (a no-op when not held, and in a forked child)."""
        if self.fd is None or os.getpid() != self.pid:
            return
        _HELD.pop(Path(os.path.abspath(self.path)), None)
        with contextlib.suppress(OSError):
            if _same_file(self.fd, self.path):
                self.path.unlink()  # while still locked: a waiting run then finds the file gone and starts again
        os.close(self.fd)
        self.fd = None


@atexit.register
def _release_all() -> None:
    """The process ends (also after a one-line error): its run folders' locks go (the OS drops the locks anyway)."""
    for held in list(_HELD.values()):
        held.release()


class RunDir:
    """Paths and writers of one run; every writer is a no-op off the main process."""

    def __init__(self, output_dir: str | Path, is_main: bool, columns: tuple[str, ...] = METRIC_COLUMNS) -> None:
        self.path = Path(output_dir)
        self.is_main = is_main
        self.columns = columns
        self._tensorboard = None
        self._lock: RunLock | None = None
        self._notes: list[str] = []  # warnings for train.log, logged once logging is set up
        if is_main:
            with writing(self.path):
                self.path.mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Take the folder's :class:`RunLock` (main process; before anything is written): a second live run stops
        here with :class:`RunInUse`. Released by :meth:`close` (or :meth:`unlock`)."""
        if self.is_main and self._lock is None:
            lock = RunLock(self.path)
            note = lock.acquire()
            self._lock = lock
            if note:
                self._notes.append(note)

    def unlock(self) -> None:
        """Release the folder's lock if this run holds it."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def result_json(self) -> Path:
        return self.path / RESULT_FILE

    def start_fresh(self) -> None:
        """Forget the metrics and result of an earlier run in the same folder (its best/ and validation logits stay
        until better ones replace them)."""
        if self.is_main:
            self.metrics_csv.unlink(missing_ok=True)
            self.result_json.unlink(missing_ok=True)

    def truncate_metrics(self, update: int) -> None:
        """Drop metrics.csv rows logged after ``update`` (a resumed run logs them again)."""
        if not self.is_main or not self.metrics_csv.exists():
            return
        with self.metrics_csv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        kept = [row for row in rows if row.get("step", "") == "" or int(float(row["step"])) <= update]
        if len(kept) == len(rows):
            return
        with atomic_open(self.metrics_csv, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(kept)

    def save_result(self, summary: Mapping[str, Any]) -> None:
        """``result.json``: the run's best scores; its presence marks a finished run (drivers skip those)."""
        if self.is_main:
            atomic_write_text(self.result_json, json.dumps(dict(summary), indent=1, sort_keys=True) + "\n")

    def save_config(self, cfg: Config) -> None:
        if self.is_main:
            save_config(cfg, self.path / "config.yaml")

    def setup_logging(self) -> logging.Logger:
        """Log ``mmcls.*`` to ``train.log`` and stderr on the main process (warnings only elsewhere)."""
        logger = logging.getLogger("mmcls")
        logger.setLevel(logging.INFO if self.is_main else logging.WARNING)
        for handler in list(logger.handlers):
            if getattr(handler, "_mmcls_run", False):
                logger.removeHandler(handler)
                handler.close()
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if self.is_main:
            with writing(self.path / "train.log"):
                handlers.append(logging.FileHandler(self.path / "train.log", encoding="utf-8"))
        for handler in handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            handler._mmcls_run = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.propagate = False
        for note in self._notes:
            logger.warning(note)
        self._notes.clear()
        return logger

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """One row of metrics.csv (header written with the first row); also sent to TensorBoard."""
        if not self.is_main:
            return
        new = not self.metrics_csv.exists()
        with writing(self.metrics_csv), self.metrics_csv.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        step = int(row.get("step", 0))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.scalar(f"val/{key}" if key not in ("train_loss", "lr") else f"train/{key}", value, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A TensorBoard scalar (the writer is created on first use, main process only)."""
        if not self.is_main:
            return
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            with writing(self.path / "tensorboard"):
                self._tensorboard = SummaryWriter(str(self.path / "tensorboard"))
        self._tensorboard.add_scalar(tag, value, step)

    def close(self) -> None:
        """Close the TensorBoard writer and release the folder's lock."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        self.unlock()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
