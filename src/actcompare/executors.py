"""Where a sweep's planned groups train (``hydra.launcher.executor``).

- ``inprocess`` (default): one group after another, in the sweep's own process.
- ``local``: N processes on this machine (submitit's LocalExecutor), the cores split between them:
  the groups are cut so that there are at least N, then dealt out to the N processes by their
  model-epochs (largest first, each to the least loaded process). On a machine with GPUs, process k
  sees GPU k mod (number of GPUs).
- ``slurm``: one Slurm array task per group (submitit's SlurmExecutor); ``hydra.launcher.slurm`` holds
  submitit's Slurm parameters as they are (partition, time, gpus_per_task, cpus_per_task, mem, ...).

This module knows nothing about runs: it deals groups out to tasks and runs one picklable function per
task somewhere, returning each task's value or the exception that ended it. What a task trains and how
a dead task's runs are recorded is ``experiment``'s job.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib.util
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("inprocess", "local", "slurm")
# The line of a Python traceback that names the exception: "package.module.SomeError: what happened"
_RAISED = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt(?:ed)?|Exit)): (?P<message>.*)$", re.M)
POLL_SECONDS = 2.0  # how often the sweep looks at its tasks (and their metrics.csv, for the progress)


class TaskEnded(Exception):
    """A task that ended without returning its value; the message is one line saying why.
    ``user_error``: the message of actcompare's own error (a missing dataset, a bad config) that ended
    it, which every task would meet alike: the sweep stops with it, as it would in one process."""

    def __init__(self, message: str, user_error: str | None = None) -> None:
        super().__init__(message)
        self.user_error = user_error


class TaskInterrupted(Exception):
    """A task stopped by a signal (SIGTERM from scancel, preemption or a time limit; Ctrl-C), its runs
    recorded as interrupted. An Exception, not a KeyboardInterrupt: submitit then keeps it as the
    task's result, so the sweep learns at once that the task ended, without asking the scheduler."""


@dataclass
class Executor:
    kind: str = "inprocess"
    processes: int | None = None  # local: how many at once (default: one per core)
    folder: str = ".submitit"  # submitit's pickles and each task's stdout/stderr (<job id>_0_log.out)
    timeout_min: int = 7 * 24 * 60  # local: a task still running after this long is stopped
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit.SlurmExecutor's parameters

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"hydra.launcher.executor={self.kind!r} is not allowed: use {', '.join(KINDS)}")
        if self.processes is not None and (isinstance(self.processes, bool) or int(self.processes) < 1):
            raise ConfigError(f"hydra.launcher.processes={self.processes} is not allowed: use a number >= 1")
        if self.kind != "inprocess" and importlib.util.find_spec("submitit") is None:
            raise ConfigError(
                f"hydra.launcher.executor={self.kind} needs submitit: pip install 'submitit>=1.5' (or reinstall "
                "actcompare, which depends on it)"
            )

    @property
    def parallel(self) -> int:
        """Tasks running at once: the number of groups a sweep should at least have."""
        if self.kind == "local":
            return int(self.processes or os.cpu_count() or 1)
        return 1  # in-process: one; Slurm: as many as the cluster gives, so groups are not cut for it

    def threads(self) -> int | None:
        """Torch threads per task: the cores split between the local processes (None: torch's default)."""
        if self.kind == "local":
            return max(1, (os.cpu_count() or 1) // self.parallel)
        if self.kind == "slurm" and self.slurm.get("cpus_per_task"):
            return int(self.slurm["cpus_per_task"])
        return None

    def cap(self, models: int) -> int:
        """The most models per group so that every task has work: ceil(models / parallel)."""
        return max(1, math.ceil(models / self.parallel))

    def deal(self, costs: Sequence[float]) -> list[list[int]]:
        """Groups (by their cost, e.g. model-epochs) -> tasks, each a list of group indices."""
        if self.kind == "slurm":
            return [[g] for g in range(len(costs))]
        bins = [(0.0, k, []) for k in range(min(self.parallel, len(costs)) if self.kind == "local" else 1)]
        heapq.heapify(bins)
        for g in sorted(range(len(costs)), key=lambda g: -costs[g]):
            load, k, members = heapq.heappop(bins)
            heapq.heappush(bins, (load + costs[g], k, [*members, g]))
        return [sorted(members) for _, _, members in sorted(bins, key=lambda b: b[1]) if members]

    def run(self, fn: Callable[..., Any], args: Sequence[tuple], poll: Callable[[], None]) -> list[Any]:
        """``fn(*a)`` for every ``a`` in ``args``, each as its own submitit job; wait for all (calling
        ``poll`` meanwhile) and return each job's value, or a TaskEnded saying why there is none. Ctrl-C cancels
        every job (each records its runs as interrupted) and is raised again."""
        import submitit

        jobs = self._submit(submitit, fn, args)
        log.info(
            "%d task(s) submitted to %s (%s): each task's output in %s",
            len(jobs),
            self.kind,
            ", ".join(str(j.job_id) for j in jobs),
            self.folder.replace("%j", "<job id>"),
        )
        try:
            while not all(job.done() for job in jobs):
                poll()
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            for job in jobs:
                self._cancel(job)
            deadline = time.monotonic() + 30
            while self.kind == "local" and not all(j.done() for j in jobs) and time.monotonic() < deadline:
                time.sleep(0.2)  # the tasks record their runs as interrupted, then end
            raise
        poll()
        out: list[Any] = []
        for job in jobs:
            try:
                out.append(job.result())
            except submitit.core.utils.FailedJobError as err:  # the task raised: the exception's own line
                raised = list(_RAISED.finditer(str(err)))
                name, message = (raised[-1]["name"], raised[-1]["message"]) if raised else ("an error", "")
                mine = name.startswith("actcompare.errors.")
                what = f"{name.rsplit('.', 1)[-1]}: {message}" if raised else name
                out.append(
                    TaskEnded(
                        f"job {job.job_id} raised {what} (its output: {job.paths.stderr})", (mine and message) or None
                    )
                )
            except Exception:  # no result at all: the process was killed, ran out of memory, timed out
                out.append(
                    TaskEnded(
                        f"job {job.job_id} ended without a result ({job.state}: killed, out of memory, "
                        f"preempted or timed out); its output: {job.paths.stderr}"
                    )
                )
        return out

    def _submit(self, submitit: Any, fn: Callable[..., Any], args: Sequence[tuple]) -> list[Any]:
        if self.kind == "slurm":
            try:
                executor = submitit.SlurmExecutor(folder=self.folder)
            except RuntimeError:
                raise ConfigError(
                    "hydra.launcher.executor=slurm needs a Slurm cluster (no srun/sbatch on this machine): "
                    "run the sweep on a login node, or use hydra.launcher.executor=local"
                ) from None
            try:
                executor.update_parameters(**self.slurm)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"hydra.launcher.slurm: {str(err).splitlines()[0]}") from None
            with executor.batch():  # one array job, a task per group
                jobs = [executor.submit(fn, *a) for a in args]
            return jobs
        executor = submitit.LocalExecutor(folder=self.folder)
        gpus = _gpus()
        jobs = []
        for k, a in enumerate(args):
            # submitit hides every GPU from a local job unless told which it may see
            where = {"gpus_per_node": 1, "visible_gpus": [gpus[k % len(gpus)]]} if gpus else {}
            executor.update_parameters(timeout_min=self.timeout_min, **where)
            with _sigint_ignored():
                jobs.append(executor.submit(fn, *a))
        return jobs

    def _cancel(self, job: Any) -> None:
        """Stop a job: its tasks record their runs as interrupted (SIGTERM, see interrupts.guard_worker)."""
        if self.kind != "local":
            job.cancel(check=False)  # scancel
            return
        # A local job's id is its controller's pid; the controller forwards SIGTERM to its task.
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(job.job_id), signal.SIGTERM)


@contextlib.contextmanager
def _sigint_ignored():
    """Start local jobs with SIGINT ignored (inherited through exec): a Ctrl-C on the terminal reaches
    the whole process group, and submitit's controller would die of it with a traceback. The sweep's
    process alone takes the Ctrl-C and stops its jobs with SIGTERM instead (Executor._cancel)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _gpus() -> list[int]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES numbers them for a child process."""
    import torch

    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(visible) >= n and all(v.isdigit() for v in visible):
        return [int(v) for v in visible[:n]]
    return list(range(n))
