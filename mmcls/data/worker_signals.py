"""DataLoader workers and SIGTERM: a worker keeps serving when a SIGTERM meant for the whole run arrives.

``timeout``, SLURM and terminals signal a whole process group, DataLoader workers included. torch's workers die of
any SIGTERM that their parent did not send, and their parent then fails with "DataLoader worker ... is killed by
signal" wherever it is: the training loop could not finish its update and save (:mod:`mmcls.engine.loop` stops at
the next update boundary on SIGTERM). With :func:`serve_through_sigterm` (called by the workers' init function) a
worker ignores a SIGTERM from anyone but the process that owns the DataLoader, and still exits at once when that
process ends it (``terminate()``, also when the interpreter exits). It also ends, as every torch worker does, when
its parent is gone. Linux only (``sigwaitinfo``, which tells who sent a signal); elsewhere torch's behaviour stays.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading


def serve_through_sigterm() -> bool:
    """In a DataLoader worker: block SIGTERM and wait for it in a thread that exits the worker only when the
    DataLoader's process sent it (a signal to the process group is ignored). Returns whether it was set up."""
    if not hasattr(signal, "sigwaitinfo") or threading.current_thread() is not threading.main_thread():
        return False
    parent = multiprocessing.parent_process()  # the process that made the worker, also for forkserver workers
    owner = parent.pid if parent is not None else os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit the mask

    def wait() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == owner:
                os._exit(0)  # what torch's own handler does for its parent's SIGTERM

    threading.Thread(target=wait, name="mmcls-sigterm", daemon=True).start()
    return True
