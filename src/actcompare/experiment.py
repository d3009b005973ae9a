"""Jobs -> checked, planned groups -> trained here or on an executor -> one record per job.

``run_group`` trains any number of jobs: those that can share one program (engines.plan: same shapes,
data, batch order and optimizer class) train stacked, the rest one at a time, in this process
(loop.train_group) or in an executor's tasks (train_task). ``run_experiment`` is the one-job case
that run.py's task uses under Hydra's own launchers. Both return run.json's dicts.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import runs
from .engines.plan import MEMORY_SHARE, plan
from .errors import ConfigError, UserError
from .executors import Executor, TaskEnded, TaskInterrupted
from .interrupts import guard_worker, interrupt_caught
from .loop import LOG_FORMAT, GroupJob, Progress, RunSpec, train_group
from .record import METRICS, BadRecord, existing, read_record, task_ended, written_here
from .recorder import RunRecorder
from .schema import hidden_sizes, validate

log = logging.getLogger(__name__)


def depends_on_rng(factory: Callable[[], torch.nn.Module], width: int) -> bool:
    """Whether an activation module's training-mode output depends on the random state (a random
    forward like RReLU's or dropout's, or parameters drawn at construction): two modules built and
    run under different seeds give different outputs for the same input. The caller's random
    state is left as it was. A module that fails here is not random (the pre-flight check says why)."""
    x = torch.randn(16, width, generator=torch.Generator().manual_seed(0))
    outs = []
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for seed in (1, 2):
                torch.manual_seed(seed)
                module = factory()
                module.train()
                outs.append(module(x.clone()))
        return not torch.equal(outs[0], outs[1])
    except Exception:
        return False


def random_in_training(specs: Sequence[RunSpec]) -> set[int]:
    """Indices of the jobs whose activation depends on the random state in training. In a stacked
    group its draws would interleave with the other models' (a run's numbers would depend on which
    runs share its group), so such a job trains one model at a time, drawing exactly as it would alone."""
    found: dict[str, bool] = {}
    out = set()
    for i, spec in enumerate(specs):
        key = json.dumps(OmegaConf.to_container(spec.cfg.activation, resolve=True), sort_keys=True, default=str)
        if key not in found:
            width = hidden_sizes(spec.cfg.model)[0]
            found[key] = depends_on_rng(lambda spec=spec: instantiate(spec.cfg.activation.module), width)
            if found[key]:
                log.info(
                    "activation %s depends on the random state in training (its output changes with it): "
                    "its runs train one model at a time, so that each draws its random numbers exactly as "
                    "it would alone",
                    spec.cfg.activation.name,
                )
        if found[key]:
            out.add(i)
    return out


def run_experiment(
    cfg: DictConfig,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    choices: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train one network as ``cfg`` says (the per-run engine), record it in ``out_dir``, return
    run.json's dict. Config problems raise ConfigError before anything is written; a missing
    dataset raises DataError; a failure in training is recorded as ``failed`` and returned;
    Ctrl-C is recorded as ``interrupted`` and re-raised."""
    spec = RunSpec(cfg, Path(out_dir), list(overrides), dict(choices or {}))
    return run_group([spec], engine="single", threads=threads)[0]


def check_batch(specs: Sequence[RunSpec]) -> list[tuple[str, RunSpec]]:
    """Every problem of a batch that refuses it before anything is written: (problem, its job).

    Config problems (validate), and folders that already hold a run that this batch may not touch
    (record.existing: another config there, or any run without resume=true)."""
    out: list[tuple[str, RunSpec]] = []
    for spec in specs:
        out += [(p, spec) for p in validate(spec.cfg)]
    if out:
        return out
    for spec in specs:
        config = spec.config
        try:
            existing(spec.out_dir, config, bool(config.get("resume")))
        except ConfigError as err:
            out.append((str(err), spec))
    return out


def shared_labels(specs: Sequence[Any], sweep: Path) -> list[str]:
    """An activation name given to two different activation configs (two jobs of the batch, or a
    job and a run already in the sweep folder): every table and plot would pool them under one label."""
    seen: dict[str, tuple[str, str]] = {}
    found = []
    for path in sorted(sweep.glob("**/run.json")) if sweep.is_dir() else []:
        try:
            act = read_record(path)["config"].get("activation")
        except BadRecord:
            continue
        if isinstance(act, dict) and isinstance(act.get("name"), str):
            spec = json.dumps(runs.canonical({k: v for k, v in act.items() if k != "name"}), sort_keys=True)
            seen.setdefault(act["name"], (spec, str(path.parent)))
    for spec in specs:
        act = spec.config.get("activation") or {}
        name = str(act.get("name"))
        text = json.dumps(runs.canonical({k: v for k, v in act.items() if k != "name"}), sort_keys=True)
        if name in seen and seen[name][0] != text:
            found.append(
                f"activation name '{name}' is shared by two different activation configs: {seen[name][0]} "
                f"({seen[name][1]}) and {text} (job '{spec.label}'); give one of them another name "
                "(activation.name=...)"
            )
            break
        seen.setdefault(name, (text, f"job '{spec.label}'"))
    return found


def run_group(
    specs: Sequence[RunSpec],
    engine: str = "stacked",
    threads: int | None = None,
    max_models: int | None = None,
    run_logs: bool = False,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Train every job in ``specs`` (stacked where they can share a program), one record each.

    ``max_models``: the most models in one group (None: no cap). ``executor``: where the groups
    train (executors.Executor; None: one after another in this process). ``run_logs``: each run also
    writes its own log lines to ``<run>/run.log`` (the fused launcher; under Hydra's own launchers,
    Hydra's job logging writes that file)."""
    problems = [p for spec in specs for p in validate(spec.cfg)]
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))
    configs = [spec.config for spec in specs]
    results: list[dict[str, Any] | None] = [None] * len(specs)
    todo, first = [], {}  # first: (folder, run id) -> the job that records it
    for i, (spec, config) in enumerate(zip(specs, configs, strict=True)):
        where = (spec.out_dir.resolve(), runs.run_id(config))
        if where in first:  # the same run twice in one batch (a sweeper repeating a trial): train once
            continue
        first[where] = i
        results[i] = existing(spec.out_dir, config, bool(config.get("resume")))
        if results[i] is None:
            todo.append(i)
    remote = executor is not None and executor.kind != "inprocess"
    if engine == "stacked":
        alone = random_in_training([specs[i] for i in todo])
        cap = max_models or max(len(todo), 1)
        if remote:  # every task gets work
            cap = min(cap, executor.cap(len(todo)))
        groups = plan([configs[i] for i in todo], cap, sorted(alone))
    else:
        alone, groups = set(), [[i] for i in range(len(todo))]
    # (job indices, the group) per group; a job that must train alone runs the per-run engine
    work = []
    for group in groups:
        idx = [todo[g] for g in group]
        kind = "single" if engine != "stacked" or group[0] in alone else "stacked"
        job = GroupJob([specs[i] for i in idx], kind, threads, run_logs, configs=[configs[i] for i in idx])
        work.append((idx, job))
    if work:  # a progress line (and a timestamp for benchmarks/overhead.py)
        sizes = sorted({len(idx) for idx, _ in work}, reverse=True)
        log.info(
            "planning: %d group(s) of %s model(s) (%s)%s",
            len(work),
            " or ".join(map(str, sizes)),
            "/".join(sorted({job.kind for _, job in work})),
            f"; {len(specs) - len(todo)} job(s) already recorded" if len(todo) < len(specs) else "",
        )
    if remote and work:  # (nothing left to train, e.g. a resumed finished sweep: no task at all)
        assert executor is not None
        _run_tasks(executor, work, results)
    else:
        progress = Progress(sum(configs[i]["epochs"] for i in todo))
        try:
            for idx, job in work:
                for i, record in zip(idx, train_group(job, progress), strict=True):
                    results[i] = record
        finally:
            progress.close()
    for i, (spec, config) in enumerate(zip(specs, configs, strict=True)):
        if results[i] is None:
            results[i] = results[first[(spec.out_dir.resolve(), runs.run_id(config))]]
    return [r for r in results if r is not None]


def train_task(groups: Sequence[GroupJob]) -> list[list[dict]]:
    """One executor task, in a process of its own: train its groups one after another, each recorded
    into its jobs' folders exactly as in the sweep's process (the configs resolved here, in the task);
    returns each group's records."""
    guard_worker()  # SIGTERM (scancel, preemption) records the runs as interrupted, like Ctrl-C
    if not logging.getLogger().handlers:  # submitit's task: its log lines go to the task's stderr file
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    import submitit  # here: only an executor's task needs it, an in-process sweep never loads it

    env = submitit.JobEnvironment()
    task = {"executor": env.cluster, "job_id": env.job_id, "host": socket.gethostname()}
    progress = Progress(sum(int(spec.cfg.epochs) for job in groups for spec in job.specs))
    try:
        return [train_group(replace(job, task=task, configs=[]), progress) for job in groups]
    except KeyboardInterrupt:  # the runs are recorded as interrupted (train_group); say so as a result
        raise TaskInterrupted("stopped by a signal (scancel, preemption, a time limit, Ctrl-C)") from None
    finally:
        progress.close()


def _run_tasks(
    executor: Executor, work: Sequence[tuple[list[int], GroupJob]], results: list[dict[str, Any] | None]
) -> None:
    """Hand the groups to ``executor``'s tasks and collect their records into ``results`` (at the
    groups' job indices). A task that ended without returning (killed, out of memory, preempted, or
    raised) leaves only its own runs unfinished: each is recorded as interrupted with the reason, and
    resume=true redoes only those."""
    costs = [sum(config["epochs"] for config in job.configs) for _, job in work]
    tasks = executor.deal(costs)
    # local processes share this machine's memory: each plans its groups in its share of it
    share = MEMORY_SHARE / (len(tasks) if executor.kind == "local" else 1)
    args = [
        ([replace(work[g][1], threads=work[g][1].threads or executor.threads(), share=share) for g in task],)
        for task in tasks
    ]
    runs_of = {i: (job.specs[n], job.configs[n], job.kind) for idx, job in work for n, i in enumerate(idx)}
    progress = Progress(sum(costs))
    rows = dict.fromkeys(runs_of, 0)  # epochs seen on disk per run; a run seen finished is not read again

    def poll() -> None:  # the tasks' progress, from the rows of their runs' metrics.csv
        for i in [i for i, n in rows.items() if n < runs_of[i][1]["epochs"]]:
            rows[i] = min(_rows(runs_of[i][0].out_dir / METRICS), runs_of[i][1]["epochs"])
        if sum(rows.values()) > progress.done:
            progress.update(sum(rows.values()) - progress.done, f"{len(tasks)} task(s) on {executor.kind}")

    try:
        outcomes = executor.run(train_task, args, poll)
    except KeyboardInterrupt:  # the tasks were cancelled and recorded their runs; one killed first: here
        interrupt_caught()
        for spec, config, _ in runs_of.values():
            _unfinished(spec, config, "stacked", "the sweep was interrupted (Ctrl-C)", start=False)
        raise
    finally:
        progress.close()
    stop = next((o.user_error for o in outcomes if isinstance(o, TaskEnded) and o.user_error), None)
    for n, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True), start=1):
        if isinstance(outcome, BaseException):
            if not stop:  # (a missing dataset, a bad config: the sweep stops with it below, as in one process)
                log.error(
                    "task %d of %d ended without finishing (%s): its unfinished runs are recorded as interrupted; "
                    "resume=true redoes only those",
                    n,
                    len(tasks),
                    outcome,
                )
            for i in (i for g in task for i in work[g][0]):
                results[i] = _unfinished(*runs_of[i], str(outcome), start=not stop)
            continue
        for g, records in zip(task, outcome, strict=True):
            for i, record in zip(work[g][0], records, strict=True):
                results[i] = record
                written_here(runs_of[i][0].out_dir)
    if stop:
        raise UserError(stop)


def _rows(path: Path) -> int:
    """Epochs recorded in a metrics.csv so far (its lines but the header)."""
    try:
        with path.open("rb") as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return 0


def _unfinished(spec: RunSpec, config: dict, kind: str, reason: str, start: bool = True) -> dict[str, Any] | None:
    """The record of a run whose task ended (record.task_ended: as the task left it, a run left
    running recorded as interrupted); one the task never started is recorded here as interrupted too
    (``start``: else no folder, None)."""
    record = task_ended(spec.out_dir, config, reason)
    if record is not None or not start:
        return record
    rec = RunRecorder(
        spec.out_dir,
        config,
        overrides=spec.overrides,
        choices=spec.choices,
        engine=kind,
        device=str(config.get("device")),
        threads=0,
    )
    if spec.prepare is not None:
        spec.prepare()
    rec.start()
    rec.end(runs.INTERRUPTED, error=f"its task ended before the run started: {reason}")
    rec.finish()
    return rec.record
