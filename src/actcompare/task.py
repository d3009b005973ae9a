"""The body of run.py's @hydra.main: one job in Hydra's output folder -> one number for a sweeper.

Under Hydra's own launchers (basic, joblib, submitit) every job calls ``hydra_task``; under the
project's default launcher (hydra/launcher=fused) the launcher trains whole groups and calls
``job_result`` for each job instead. Both return the same value: the run's objective.
"""

from __future__ import annotations

import _thread
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import runs
from .errors import UserError

log = logging.getLogger(__name__)


def threads_per_job(hydra_cfg: DictConfig) -> int | None:
    """Torch threads for a job so parallel launchers do not oversubscribe the cores.

    joblib with n_jobs=k runs k jobs at once: each gets cores // k threads (n_jobs=-1: one
    each). submitit gives each job cpus_per_task cores. Other launchers: torch's default.
    """
    launcher = OmegaConf.select(hydra_cfg, "launcher", default={}) or {}
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1))
        parallel = cores if n_jobs < 0 else min(n_jobs, cores)
        return max(1, cores // max(parallel, 1))
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def job_result(record: dict[str, Any], metric: str) -> float:
    """What a job returns to the sweeper: the run's objective (see actcompare.objective)."""
    from .objective import objective_value

    return objective_value(record, metric)


SWEEP_PID = "ACTCOMPARE_SWEEP_PID"  # set by the sweep callback; inherited by launcher workers
SWEEP_HOST = "ACTCOMPARE_SWEEP_HOST"  # ... with the machine it runs on: a pid means nothing elsewhere
_ORPHANED = threading.Event()  # the sweep that started this worker has died


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
                _ORPHANED.set()
                _thread.interrupt_main()
                time.sleep(30.0)  # hydra_task ends the process once the run is recorded; if not, do it here
                os._exit(130)
            except OSError:
                pass

    threading.Thread(target=watch, name="sweep-watchdog", daemon=True).start()


def _remove_if_bare(folder: Path) -> None:
    """Remove a run folder that holds nothing of a run (only Hydra's .hydra/ and run.log): a run
    refused before it trained leaves no folder behind."""
    if not folder.is_dir() or (folder / "run.json").exists():
        return
    if all(p.name in (".hydra", "run.log") or p.suffix == ".log" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def _check_job(cfg: DictConfig, hc: Any) -> None:
    """Under Hydra's own launchers (one job per call): what the fused launcher checks for a whole
    batch before it trains, for this job: its folder lies inside the sweep folder, and its
    activation name is not another activation config's in the same sweep."""
    if hc.mode != RunMode.MULTIRUN:
        return
    from .experiment import RunSpec, shared_labels

    sweep, out = Path(os.path.abspath(hc.sweep.dir)), Path(os.path.abspath(hc.runtime.output_dir))
    if out == sweep or not out.is_relative_to(sweep):
        raise UserError(
            f"this job would be recorded in {out}, outside the sweep folder {sweep}: a value that names a "
            f"folder may not hold '..' ({hc.sweep.subdir})"
        )
    problems = shared_labels([RunSpec(cfg, out, list(hc.overrides.task))], sweep)
    if problems:
        raise UserError(problems[0])


def hydra_task(cfg: DictConfig) -> float:
    """Run one experiment in Hydra's output folder with the per-run engine; return its objective."""
    hc = HydraConfig.get()
    guard_worker()
    try:
        # Imported here: a sweep's parent process under joblib/submitit never trains, so it never
        # pays for torchvision's imports.
        from .experiment import run_experiment

        _check_job(cfg, hc)
        record = run_experiment(
            cfg,
            out_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
            choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
            threads=cfg.threads or threads_per_job(hc),
        )
    except UserError as err:
        # SystemExit passes through Hydra's job runner: one line on stderr, exit code 2. Refused
        # before it trained (bad config, no data): no folder is left behind.
        _remove_if_bare(Path(hc.runtime.output_dir))
        raise SystemExit(f"error: {err}") from None
    except KeyboardInterrupt:
        if _ORPHANED.is_set():  # the run is recorded as interrupted; no sweep is left to report to
            os._exit(130)
        raise
    if hc.mode == RunMode.RUN:
        if record["status"] == runs.FAILED:
            raise SystemExit(f"error: the run failed: {record.get('error')} (its files: {hc.runtime.output_dir})")
        log.info(
            "%s: %s, test accuracy %s; files in %s",
            record["activation"],
            record["status"],
            _pct(record),
            hc.runtime.output_dir,
        )
    return job_result(record, str(cfg.get("objective", "test_acc")))


def _pct(record: dict[str, Any]) -> str:
    value = (record.get("final") or {}).get("test_acc")
    return f"{100 * float(value):.2f} %" if value is not None else "n/a"
