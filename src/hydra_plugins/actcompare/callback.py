"""The sweep callback (conf/config.yaml: hydra.callbacks.actcompare), for any sweeper and launcher:

- on_multirun_start: takes the sweep folder's lock (.actcompare.lock: pid, host, start time), so a
  second sweep into the same hydra.sweep.dir is refused with one line naming the holder; a lock
  whose process is gone is stale and taken over.
- on_multirun_end: builds the sweep report from the files on disk and exits non-zero listing the
  runs that failed or were interrupted, with the resume command.
- if the sweep ends abnormally (a job raised, so Hydra skips on_multirun_end), the report is still
  built at exit, unless runs were interrupted (then resume=true finishes them and reports).
- if the sweep was refused before anything trained (a bad value, a folder holding another sweep's
  runs: :func:`refused`, called by the launcher and by the command's error handling), nothing more
  is printed and the folders it made (the sweep folder, job folders holding only ``.hydra/``) are
  removed: a refused sweep leaves nothing behind.
For an app that is not actcompare the folder holds no run.json files and the report is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from actcompare import record, runs
from actcompare.errors import UserError
from actcompare.files import atomic_write

log = logging.getLogger(__name__)

LOCK_NAME = ".actcompare.lock"
_REFUSED: list[bool] = []  # set by refused(): this process's sweep was refused before it trained
_CRASHED: list[bool] = []  # set by crashed(): this process's sweep stopped on an unexpected error


def refused() -> None:
    """The sweep is refused (its one-line error is on its way): no report, no summary, and the
    folders it made are removed at exit."""
    _REFUSED.append(True)


def crashed() -> None:
    """The sweep stopped on an unexpected error: what it made that holds no run is removed at exit
    (a sweep that failed before training leaves no folder); the runs it wrote stay and are named."""
    _CRASHED.append(True)


def _bare(folder: Path) -> bool:
    """A folder holding nothing of a run: only Hydra's .hydra/, an empty or log-only run.log, a lock."""
    if not folder.is_dir():
        return False
    for entry in folder.rglob("*"):
        rel = entry.relative_to(folder)
        if rel.parts[0] in (".hydra", LOCK_NAME, "multirun.yaml") or entry.suffix == ".log" or entry.is_dir():
            continue
        return False
    return not any(folder.rglob("run.json"))


class SweepLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _alive(holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return True  # another machine's process: cannot check, so respect it
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError, OverflowError):
            return True
        return True

    def acquire(self) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and self._alive(holder):
                    raise SystemExit(
                        f"error: {self.path.parent} is in use by another sweep (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('started')}): wait for it to end, or choose "
                        "another hydra.sweep.dir"
                    ) from None
                log.warning("%s: taking over a stale lock (%s)", self.path, holder or "unreadable")
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise SystemExit(f"error: could not take the lock {self.path}: another sweep is starting there")

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is None or holder.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False


def report_options(config: DictConfig) -> dict[str, Any]:
    """build_report's margin (a fraction; report.margin is in points), baseline and pdf from a sweep's config."""
    margin = OmegaConf.select(config, "report.margin", default=None)
    baseline = OmegaConf.select(config, "report.baseline", default=None)
    pdf = bool(OmegaConf.select(config, "report.pdf", default=False))
    return {"margin": None if margin is None else float(margin) / 100, "baseline": baseline, "pdf": pdf}


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.lock: SweepLock | None = None
        self.ended = False
        self.multirun_yaml: bytes | None = None  # the sweep folder's multirun.yaml before this sweep
        self.before: set[str] | None = None  # the sweep folder's entries before this sweep (None: it is new)
        self.judge: dict[str, Any] = {}  # report.margin (as a fraction) and report.baseline, for build_report

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        if "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            _quiet_optuna()
        self.judge = report_options(config)
        self.before = {p.name for p in self.sweep_dir.iterdir()} if self.sweep_dir.is_dir() else None
        # The sweeper rewrites multirun.yaml next; a refused sweep puts the earlier one back.
        earlier = self.sweep_dir / "multirun.yaml"
        self.multirun_yaml = earlier.read_bytes() if earlier.is_file() else None
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.lock = SweepLock(self.sweep_dir)
        self.lock.acquire()
        # Launcher workers on this machine (joblib, submitit_local, executor=local) inherit these and
        # stop when this process dies; a Slurm task on another node carries on (interrupts.guard_worker).
        os.environ["ACTCOMPARE_SWEEP_PID"] = str(os.getpid())
        os.environ["ACTCOMPARE_SWEEP_HOST"] = socket.gethostname()
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.ended = True
        try:
            failed, problem = self._report(summary=True)
        finally:
            if self.lock is not None:
                self.lock.release()
        lines = [self._unfinished_message(failed)] if failed else []
        lines += [f"error: no sweep report: {problem}"] if problem else []
        if lines:
            raise SystemExit("\n".join(lines))

    def _unfinished_message(self, failed: list[tuple[str, str]]) -> str:
        where = self.sweep_dir
        return (
            f"error: {len(failed)} run(s) did not complete; the others and the report are in {where}:\n"
            + "\n".join(f"  {run}: {error}" for run, error in failed)
            + f"\nTo redo them: rerun the same command with hydra.sweep.dir={where} resume=true"
        )

    def _report(self, summary: bool) -> tuple[list[tuple[str, str]], str | None]:
        """Build the sweep's report: (runs that did not finish, why there is no report or None)."""
        assert self.sweep_dir is not None
        if not any(self.sweep_dir.rglob("run.json")):
            return [], None  # not actcompare's runs (or none ran): nothing to report
        log.info("writing the sweep report ...")  # a few seconds of statistics and figures: never silence
        from actcompare.report import build_report, failed_runs  # here: pandas, matplotlib: the sweep's end only

        problem = None
        try:
            paths = build_report([self.sweep_dir], missing_ok=True, **self.judge)
            if paths:
                log.info("Sweep report: %s", paths["report"])
                if summary:
                    _print_summary(self.sweep_dir)
        except UserError as err:
            problem = str(err)
        return failed_runs([self.sweep_dir]), problem

    def _clean_up(self) -> None:
        """After a refusal: remove what this sweep made that holds no run."""
        assert self.sweep_dir is not None
        if self.lock is not None:
            self.lock.release()
        if not self.sweep_dir.is_dir():
            return
        if self.multirun_yaml is not None:
            atomic_write(self.sweep_dir / "multirun.yaml", self.multirun_yaml)
        new = [e for e in self.sweep_dir.iterdir() if self.before is None or e.name not in self.before]
        # A sweep that failed after some runs were written keeps its multirun.yaml beside them.
        trained = any(e.is_dir() and not _bare(e) for e in new)
        for entry in new:
            if (entry.name == "multirun.yaml" and not trained) or (entry.is_dir() and _bare(entry)):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        if self.before is None and not any(self.sweep_dir.iterdir()):
            self.sweep_dir.rmdir()

    def _at_exit(self) -> None:
        if self.ended or self.sweep_dir is None:
            return
        if _REFUSED:  # the one-line error says it all; leave nothing behind
            with contextlib.suppress(OSError):
                self._clean_up()
            return
        if _CRASHED:
            with contextlib.suppress(OSError):
                self._clean_up()
        try:
            statuses = []
            for path in self.sweep_dir.rglob("run.json"):
                with contextlib.suppress(record.BadRecord):  # the report names a malformed one
                    statuses.append(record.read_record(path)["status"])
            if statuses and runs.INTERRUPTED not in statuses and runs.RUNNING not in statuses:
                failed, problem = self._report(summary=False)
                if problem:
                    print(f"error: no sweep report: {problem}", file=sys.stderr)
            elif statuses:  # name every run that did not finish (a killed worker leaves 'running') and how to redo it
                from actcompare.report import failed_runs  # here: pandas, at the sweep's end only

                failed = failed_runs([self.sweep_dir])
                if failed:
                    print(self._unfinished_message(failed), file=sys.stderr)
        except KeyboardInterrupt:
            pass
        except Exception as err:  # exiting already: one line, never a traceback
            print(f"error: no sweep report ({type(err).__name__}: {err})", file=sys.stderr)
        finally:
            if self.lock is not None:
                self.lock.release()


def _quiet_optuna() -> None:
    """Optuna's own INFO lines and its 'experimental feature' warning repeat what the sweeper logs:
    warnings and errors only (each trial's result is in its run folder and the report)."""
    try:
        import optuna  # an optional extra ('actcompare[optuna]'), and slow to import
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _print_summary(sweep_dir: Path) -> None:
    """Where the files are and a short table: each group's runs, accuracy in percent (mean ± sd; no
    sd from one seed) and its verdict against the baseline. The report says how it was reached."""
    import pandas as pd  # here: slow to import, and only the sweep's end needs it

    try:
        summary = pd.read_csv(sweep_dir / "summary.csv")
    except (OSError, ValueError):
        return

    def pct(row: Any) -> str:
        mean, sd = row.get("final_test_acc_mean"), row.get("final_test_acc_std")
        if not isinstance(mean, float) or math.isnan(mean):
            return "–"
        return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if isinstance(sd, float) and not math.isnan(sd) else "")

    def versus(row: Any) -> str:
        if row.get("group") == row.get("baseline"):
            return "baseline"
        diff = row.get("diff")
        if not isinstance(diff, float) or math.isnan(diff):
            return "–"
        lo, hi = row.get("decision_low"), row.get("decision_high")  # the interval the verdict used
        ci = f" [{100 * lo:+.2f}, {100 * hi:+.2f}]" if isinstance(lo, float) and not math.isnan(lo) else ""
        return f"{100 * diff:+.2f}{ci}"

    rows = [
        {
            "group": r.get("group", r.get("activation")),
            "runs counted": r.get("completed"),
            "test acc %": pct(r),
            "vs baseline, points": versus(r),
            "verdict": (r["verdict"] + (" (within margin)" if r.get("within_margin") is True else ""))
            if isinstance(r.get("verdict"), str)
            else "",
        }
        for r in summary.to_dict("records")
    ]
    table = pd.DataFrame(rows).to_string(index=False) if rows else ""
    print(f"\nSweep finished: {sweep_dir}\n{table}\nreport: {sweep_dir / 'report.md'}", flush=True)
