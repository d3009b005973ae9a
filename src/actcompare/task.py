"""The body of run.py's @hydra.main: one job in Hydra's output folder -> one number for a sweeper.

Under Hydra's own launchers (basic, joblib, submitit) every job calls ``hydra_task``; under the
project's default launcher (hydra/launcher=fused) the launcher trains whole groups and calls
``job_result`` for each job instead. Both return the same value: the run's objective.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import runs
from .errors import UserError
from .interrupts import ORPHANED, guard_worker

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
        if ORPHANED.is_set():  # the run is recorded as interrupted; no sweep is left to report to
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
