"""Ctrl-C and SIGTERM that are never lost, and workers that stop with their sweep.

``cli.guard`` installs ``on_interrupt`` for the command; code that records runs calls ``interrupt_caught``
once it has handled the KeyboardInterrupt. A launcher's or an executor's worker calls ``guard_worker``.
Imported by the command, the task, the epoch loop and the executors' tasks alike: it imports nothing of
actcompare's.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

SWEEP_PID = "ACTCOMPARE_SWEEP_PID"  # set by the sweep callback; inherited by launcher workers
SWEEP_HOST = "ACTCOMPARE_SWEEP_HOST"  # ... with the machine it runs on: a pid means nothing elsewhere
ORPHANED = threading.Event()  # the sweep that started this worker has died


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---------------------------------------------------------------- Ctrl-C that cannot be lost
# Where the start-up Ctrl-C went: the SIGINT handler raises KeyboardInterrupt in whatever Python code
# the main thread runs at that moment, and at start-up that is often code that torch's C++ module
# initialisation (torch._C) calls back into while `import torch` runs. Raised there, the exception
# is swallowed or garbled by the C code (seen: the run trained on, or "ImportError: cannot load
# module more than once per process"). Other C code that calls back into Python clears exceptions
# too (PyObject_HasAttr and friends). So the handler (1) holds a press that lands inside an import
# until that import is done, and (2) remembers the press: a watcher raises it again until
# actcompare's own code has caught it (interrupt_caught()).
INTERRUPT_REPEAT_SECONDS = 0.5  # a raised interrupt not caught within this long is raised again
IMPORT_HOLD_SECONDS = 60.0  # an import that takes longer than this (stuck) is interrupted anyway
_PRESSED = threading.Event()  # SIGINT (or SIGTERM) received
_CAUGHT = threading.Event()  # the KeyboardInterrupt reached code that records the run and exits
_HELD = threading.Event()  # the last press landed inside an import and was not raised
_IMPORT_CODE = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_pressed_at = [0.0]


def _importing(frame: Any) -> bool:
    """Whether the main thread is inside an import (importlib's frames on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_CODE:
            return True
        frame = frame.f_back
    return False


def on_interrupt(signum: int, frame: Any) -> None:
    """The SIGINT/SIGTERM handler of the command (installed by cli.guard): raise KeyboardInterrupt,
    held while a module imports, and raised again until it is caught where it is handled."""
    if not _PRESSED.is_set():
        _PRESSED.set()
        _pressed_at[0] = time.monotonic()
        threading.Thread(target=_insist, name="interrupt-watcher", daemon=True).start()
    if _importing(frame) and time.monotonic() - _pressed_at[0] < IMPORT_HOLD_SECONDS:
        _HELD.set()  # the watcher asks again in a moment
        return
    _HELD.clear()
    raise KeyboardInterrupt


def interrupt_caught() -> None:
    """Called where a KeyboardInterrupt is handled (the runs recorded, the process exiting)."""
    _CAUGHT.set()


def _insist() -> None:
    last = time.monotonic()
    while not _CAUGHT.wait(0.1):
        if signal.getsignal(signal.SIGINT) is not on_interrupt:
            return  # the process is exiting (SIGINT ignored) or someone else handles it now
        if _HELD.is_set() or time.monotonic() - last >= INTERRUPT_REPEAT_SECONDS:
            last = time.monotonic()
            _thread.interrupt_main()  # runs on_interrupt in the main thread


def guard_worker() -> None:
    """In a launcher's worker process (joblib/loky, submitit, an executor's task): SIGTERM records the
    run as interrupted like Ctrl-C does, and, on the sweep's own machine, the run stops when the
    sweep's process is gone (kill -9 of the sweep must not leave workers training and writing for
    minutes). A Slurm task on another node has no such process to watch: it trains on."""
    import socket

    sweep_pid = int(os.environ.get(SWEEP_PID, "0") or 0)
    if os.environ.get(SWEEP_HOST, socket.gethostname()) != socket.gethostname():
        sweep_pid = 0
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not on_interrupt:  # a worker; the command's own handler stays
        signal.signal(signal.SIGTERM, _raise_interrupt)
    if not sweep_pid or sweep_pid == os.getpid():
        return

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(sweep_pid, 0)
            except ProcessLookupError:
                log.error("the sweep (pid %d) is gone: stopping this run", sweep_pid)
                ORPHANED.set()
                _thread.interrupt_main()
                time.sleep(30.0)  # hydra_task ends the process once the run is recorded; if not, do it here
                os._exit(130)
            except OSError:
                pass

    threading.Thread(target=watch, name="sweep-watchdog", daemon=True).start()
