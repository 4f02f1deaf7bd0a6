"""``call_with_timeout`` (:mod:`mmcls.data.timeout`): calls pass through; hung ones are cut off and counted."""

from __future__ import annotations

import logging
import threading

import pytest

from mmcls.data import timeout as timeout_module
from mmcls.data.timeout import MAX_ABANDONED_THREADS, call_with_timeout


def test_too_many_abandoned_threads_log_one_error_and_never_crash(monkeypatch, caplog):
    monkeypatch.setattr(timeout_module, "_abandoned", [])
    monkeypatch.setattr(timeout_module, "_alarmed_pid", None)
    release = threading.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="mmcls.data"):
            for i in range(MAX_ABANDONED_THREADS + 2):
                with pytest.raises(TimeoutError):
                    call_with_timeout(lambda: release.wait(30), 0.05)
                errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                assert len(errors) == (1 if i >= MAX_ABANDONED_THREADS else 0)
        assert "data.num_workers" in errors[0].getMessage() and timeout_module.abandoned_decode_threads() == 6
        assert call_with_timeout(lambda: 7, 5.0) == 7  # still serving
    finally:
        release.set()


def test_call_with_timeout_returns_raises_and_can_be_disabled():
    caller = threading.get_ident()
    assert call_with_timeout(lambda: threading.get_ident() != caller, 5.0) is True
    assert call_with_timeout(lambda: threading.get_ident() == caller, 0) is True  # 0 disables the watchdog
    with pytest.raises(KeyError):
        call_with_timeout(lambda: {}["x"], 5.0)
    first = call_with_timeout(threading.get_ident, 5.0)
    assert call_with_timeout(threading.get_ident, 5.0) == first  # one long-lived thread, reused

