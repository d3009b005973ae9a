"""The body of run.py's @hydra.main: one job in Hydra's output folder -> one number for a sweeper.

Under Hydra's own launchers (basic, joblib, submitit) every job calls ``hydra_task``; under the
project's default launcher (hydra/launcher=fused) the launcher trains whole groups and calls
``job_result`` for each job instead. Both return the same value: the run's objective.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import time
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
_ORPHANED = threading.Event()  # the sweep that started this worker has died


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _guard_worker() -> None:
    """In a launcher's worker process (joblib/loky, submitit): SIGTERM records the run as
    interrupted like Ctrl-C does, and the run stops when the sweep's process is gone (kill -9 of
    the sweep must not leave workers training and writing for minutes)."""
    sweep_pid = int(os.environ.get(SWEEP_PID, "0") or 0)
    if threading.current_thread() is not threading.main_thread():
        return
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


def hydra_task(cfg: DictConfig) -> float:
    """Run one experiment in Hydra's output folder with the per-run engine; return its objective."""
    hc = HydraConfig.get()
    _guard_worker()
    try:
        # Imported here: a sweep's parent process under joblib/submitit never trains, so it never
        # pays for torchvision's imports.
        from .experiment import run_experiment

        record = run_experiment(
            cfg,
            out_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
            choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
            threads=cfg.threads or threads_per_job(hc),
        )
    except UserError as err:
        # SystemExit passes through Hydra's job runner: one line on stderr, exit code 2.
        raise SystemExit(f"error: {err}") from None
    except KeyboardInterrupt:
        if _ORPHANED.is_set():  # the run is recorded as interrupted; no sweep is left to report to
            os._exit(130)
        raise
    if hc.mode == RunMode.RUN:
        if record["status"] == runs.FAILED:
            raise SystemExit(f"error: the run failed: {record.get('error')} (its files: {hc.runtime.output_dir})")
        log.info("%s: %s, test accuracy %s; files in %s", record["activation"], record["status"],
                 _pct(record), hc.runtime.output_dir)  # fmt: skip
    return job_result(record, str(cfg.get("objective", "test_acc")))


def _pct(record: dict[str, Any]) -> str:
    value = (record.get("final") or {}).get("test_acc")
    return f"{100 * float(value):.2f} %" if value is not None else "n/a"
