"""A time limit on decoding: :func:`call_with_timeout` runs each call on a long-lived decode thread and gives up on it.

A broken video can hang a decoder inside C code (decord, zlib, libjpeg); the run must carry on. Each (process,
calling thread) has one daemon decode thread; a call that overruns its timeout raises :class:`TimeoutError` and its
thread is abandoned (left running the hung call, never joined) and replaced. Abandoned threads still running are
counted, and an error is logged once per process when more than :data:`MAX_ABANDONED_THREADS` of them pile up.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

logger = logging.getLogger("mmcls.data")
T = TypeVar("T")


class _DecodeThread:
    """A daemon thread that runs submitted calls one at a time; abandoned (never joined) when a call hangs."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="mmcls-decode", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (task := self.tasks.get()) is not None:
            fn, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the waiting caller
                future.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.tasks.put((fn, future))
        return future

    def abandon(self) -> None:
        """Let the thread exit once its hung call returns (if ever); it is a daemon, so it never blocks exit."""
        self.tasks.put(None)


_local = threading.local()
_abandoned: list[threading.Thread] = []
MAX_ABANDONED_THREADS = 4
_alarmed_pid: int | None = None  # the process that already logged the too-many-abandoned-threads error


def _decode_thread() -> _DecodeThread:
    """This (process, thread)'s decode thread, created on first use and again after a fork or an abandon."""
    runner: _DecodeThread | None = getattr(_local, "runner", None)
    if runner is None or runner.pid != os.getpid() or not runner.thread.is_alive():
        runner = _local.runner = _DecodeThread()
    return runner


def abandoned_decode_threads() -> int:
    """How many abandoned decode threads of this process are still running (stuck in a hung call)."""
    return sum(t.is_alive() for t in _abandoned)


def call_with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` on this thread's decode thread, raising :class:`TimeoutError` after ``timeout`` seconds.

    On timeout the thread is abandoned (it keeps running the hung call as a daemon) and replaced for the next call;
    once more than :data:`MAX_ABANDONED_THREADS` of them still run, an error is logged (once per process).
    ``timeout <= 0`` calls ``fn`` directly. This works for hangs inside C code that releases the GIL (decord and
    zlib via ctypes/C, libjpeg via PIL and torchvision); a hang that holds the GIL can only be caught by the
    DataLoader's own ``timeout``.
    """
    if timeout <= 0:
        return fn()
    runner = _decode_thread()
    future = runner.submit(fn)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        runner.abandon()
        _local.runner = None
        _abandoned.append(runner.thread)
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        logger.warning("abandoned a decode thread that hung for %.1fs (%d abandoned threads still running)",
                       timeout, len(_abandoned))
        _alarm_if_too_many_abandoned()
        raise TimeoutError(f"decode did not finish within {timeout:g}s") from None


def _alarm_if_too_many_abandoned() -> None:
    """Log an error, once per process, when more than :data:`MAX_ABANDONED_THREADS` hung threads still run."""
    global _alarmed_pid
    if len(_abandoned) <= MAX_ABANDONED_THREADS or _alarmed_pid == os.getpid():
        return
    _alarmed_pid = os.getpid()
    logger.error("%d hung decode threads are still running in process %d, each holding memory and CPU; check the "
                 "videos named in the timeout warnings (e.g. with tools/check_data.py) or restart with a lower "
                 "data.num_workers", len(_abandoned), os.getpid())
