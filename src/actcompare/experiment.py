"""Configs -> groups of runs -> an engine -> one recorder per run. The only epoch loop there is.

``run_group`` trains any number of jobs: those that can share one program (same shapes, data,
recipe and optimizer class; differing in activation, seed, model.init) train stacked; the rest
one at a time. ``run_experiment`` is the one-job case that run.py's task uses under Hydra's own
launchers. Both return run.json's dicts.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import runs
from .data import MNISTTensors, load_mnist
from .engines import Recipe, Variant, make_engine
from .engines.plan import MEMORY_SHARE, free_memory, memory_cap, model_bytes, own_optimizer, plan, slots, variant_key
from .errors import ConfigError, UserError
from .executors import Executor, TaskEnded
from .recorder import RunRecorder, existing, written_here
from .schema import hidden_sizes, resolve_device, validate

log = logging.getLogger(__name__)

PROBE_SIZE = 512  # fixed test images used for diagnostics every epoch


@dataclass
class RunSpec:
    """One job: its composed config and the folder it records to."""

    cfg: DictConfig
    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    # Called once, right before the run's folder is first written (the fused launcher writes the
    # job's .hydra/ there): a batch refused before training leaves no folder behind.
    prepare: Callable[[], None] | None = None

    @property
    def label(self) -> str:
        """The job as its overrides name it (for messages)."""
        return " ".join(self.overrides) or "(no overrides)"

    @property
    def config(self) -> dict[str, Any]:
        config = OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True)
        assert isinstance(config, dict)
        return {k: v for k, v in config.items() if k != "hydra"}


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
    (recorder.existing: another config there, or any run without resume=true)."""
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
            act = runs.read_record(path)["config"].get("activation")
        except runs.BadRecord:
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
        cap = min(max_models or len(todo) or 1, executor.cap(len(todo)) if remote else len(todo) or 1)
        groups = plan([configs[i] for i in todo], cap, sorted(alone))
    else:
        alone, groups = set(), [[i] for i in range(len(todo))]
    # (job indices, engine) per group; a job that must train alone runs the per-run engine
    work = [
        ([todo[g] for g in group], "single" if engine != "stacked" or group[0] in alone else "stacked")
        for group in groups
    ]
    if remote:
        assert executor is not None
        _run_tasks(executor, specs, configs, work, threads, run_logs, results)
    else:
        progress = Progress(sum(configs[i]["epochs"] for i in todo))
        try:
            for idx, kind in work:
                records = _train([specs[i] for i in idx], [configs[i] for i in idx], kind, threads, progress, run_logs)
                for i, record in zip(idx, records, strict=True):
                    results[i] = record
        finally:
            progress.close()
    for i, (spec, config) in enumerate(zip(specs, configs, strict=True)):
        if results[i] is None:
            results[i] = results[first[(spec.out_dir.resolve(), runs.run_id(config))]]
    return [r for r in results if r is not None]


def train_task(
    groups: Sequence[tuple[Sequence[RunSpec], str]], threads: int | None, run_logs: bool, share: float = MEMORY_SHARE
) -> list[list[dict]]:
    """One executor task, in a process of its own: train its groups one after another, each recorded
    into its jobs' folders exactly as in the sweep's process; returns each group's records."""
    from .task import guard_worker

    guard_worker()  # SIGTERM (scancel, preemption) records the runs as interrupted, like Ctrl-C
    if not logging.getLogger().handlers:  # submitit's task: its log lines go to the task's stderr file
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    import socket

    import submitit

    env = submitit.JobEnvironment()
    task = {"executor": env.cluster, "job_id": env.job_id, "host": socket.gethostname()}
    progress = Progress(sum(int(spec.cfg.epochs) for specs, _ in groups for spec in specs))
    try:
        return [
            _train(list(specs), [spec.config for spec in specs], kind, threads, progress, run_logs, task, share=share)
            for specs, kind in groups
        ]
    finally:
        progress.close()


def _run_tasks(
    executor: Executor,
    specs: Sequence[RunSpec],
    configs: Sequence[dict],
    work: Sequence[tuple[list[int], str]],
    threads: int | None,
    run_logs: bool,
    results: list[dict[str, Any] | None],
) -> None:
    """Hand the groups to ``executor``'s tasks and collect their records into ``results``. A task that
    ended without returning (killed, out of memory, preempted, or raised) leaves only its own runs
    unfinished: each is recorded as interrupted with the reason, and resume=true redoes only those."""
    costs = [sum(configs[i]["epochs"] for i in idx) for idx, _ in work]
    tasks = executor.deal(costs)
    # local processes share this machine's memory: each plans its groups in its share of it
    share = MEMORY_SHARE / (len(tasks) if executor.kind == "local" else 1)
    args = [
        ([([specs[i] for i in work[g][0]], work[g][1]) for g in task], threads or executor.threads(), run_logs, share)
        for task in tasks
    ]
    jobs = [i for idx, _ in work for i in idx]
    progress = Progress(sum(costs))

    def poll() -> None:  # the tasks' progress, from the rows of their runs' metrics.csv
        done = sum(min(_rows(specs[i].out_dir / "metrics.csv"), configs[i]["epochs"]) for i in jobs)
        if done > progress.done:
            progress.update(done - progress.done, f"{len(tasks)} task(s) on {executor.kind}")

    try:
        outcomes = executor.run(train_task, args, poll)
    except KeyboardInterrupt:  # the tasks were cancelled and recorded their runs; one killed first: here
        from .task import interrupt_caught

        interrupt_caught()
        for i in jobs:
            _unfinished(specs[i], configs[i], "stacked", "the sweep was interrupted (Ctrl-C)", start=False)
        raise
    finally:
        progress.close()
    stop = next((o.user_error for o in outcomes if isinstance(o, TaskEnded) and o.user_error), None)
    for n, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True), start=1):
        if isinstance(outcome, BaseException):
            reason = str(outcome)
            if stop:  # a missing dataset, a bad config: the sweep stops with it below, as in one process
                for g in task:
                    for i in work[g][0]:
                        results[i] = _unfinished(specs[i], configs[i], work[g][1], reason, start=False)
                continue
            log.error(
                "task %d of %d ended without finishing (%s): its unfinished runs are recorded as interrupted; "
                "resume=true redoes only those",
                n,
                len(tasks),
                reason,
            )
            for g in task:
                for i in work[g][0]:
                    results[i] = _unfinished(specs[i], configs[i], work[g][1], reason)
            continue
        for g, records in zip(task, outcome, strict=True):
            for i, record in zip(work[g][0], records, strict=True):
                results[i] = record
                written_here(specs[i].out_dir)
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
    """The record of a run whose task ended: as the task left it when it recorded an end (failed,
    interrupted, or finished before the task died); a run it left running is recorded here as
    interrupted, its finished epochs kept; one it never started, too (``start``: else no folder, None)."""
    path = spec.out_dir / "run.json"
    try:
        record = runs.read_record(path)
    except runs.BadRecord:
        record = None
    if record is not None and runs.identity(record["config"]) == runs.identity(config):
        if record["status"] != runs.RUNNING:
            written_here(spec.out_dir)
            return record
        record.update(status=runs.INTERRUPTED, error=f"its task ended: {reason}")
        runs.write_record(path, record)
        written_here(spec.out_dir)
        return record
    if not start:
        return None
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


class Progress:
    """Models x epochs done with an ETA: a tqdm bar on a terminal, a log line per epoch otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.bar = None
        if total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="model-epoch", dynamic_ncols=True, leave=False)

    def update(self, n: int, text: str) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)
        else:
            rate = (time.perf_counter() - self.t0) / max(self.done, 1)
            eta = rate * (self.total - self.done)
            log.info("%s [%d/%d model-epochs, ETA %.0f s]", text, self.done, self.total, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_data(cfg: DictConfig, device: torch.device) -> tuple[MNISTTensors, tuple[torch.Tensor, torch.Tensor] | None]:
    """MNIST on the device, and the validation split (the last data.val_samples training images,
    which are then not trained on) or None."""
    d = cfg.data
    data = load_mnist(d.root, device, d.normalize, d.train_samples, d.test_samples, d.download)
    n_val = d.get("val_samples") or 0
    if not n_val:
        return data, None
    if n_val >= len(data.train):
        raise ConfigError(f"data.val_samples={n_val} leaves no training images (the split has {len(data.train)})")
    train = type(data.train)(data.train.x[:-n_val], data.train.y[:-n_val])
    return type(data)(train=train, test=data.test), (data.train.x[-n_val:], data.train.y[-n_val:])


def _preflight(variant: Variant, width: int, device: torch.device) -> str | None:
    """Why an activation module fails on a tiny batch (forward and backward), or None."""
    try:
        module = variant.activation().to(device)
        leaf = torch.randn(4, width, device=device, requires_grad=True)
        module(leaf * 1.0).sum().backward()  # not the leaf itself: in-place modules (inplace=true) are fine
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job_logging format


def run_extra(rec: RunRecorder) -> dict[str, str]:
    """``extra=`` of a log line about one run: RunLogs puts it in that run's run.log only."""
    return {"run_dir": str(rec.out)}


class RunLogs(logging.Handler):
    """While a group trains under the fused launcher: every line of actcompare's loggers goes to the
    run.log of the run it is about (``extra=run_extra(rec)``), or, a line about the whole group
    (its progress), to the run.log of every run of the group."""

    def __init__(self, recorders: Sequence[RunRecorder]) -> None:
        super().__init__(logging.INFO)
        self.recorders = list(recorders)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(record, "run_dir", None)
        try:
            line = self.format(record)
            for rec in self.recorders:
                if target is None or target == str(rec.out):
                    rec.log_line(line)
        except Exception:
            self.handleError(record)


def _end_line(rec: RunRecorder) -> None:
    final = (rec.record.get("final") or {}).get("test_acc")
    acc = f", final test accuracy {100 * float(final):.2f} %" if final is not None else ""
    log.info(
        "%s seed %s: %s after %s epoch(s)%s; files in %s",
        *rec.ident.values(),
        rec.record["status"],
        rec.record.get("epochs_completed", 0),
        acc,
        rec.out,
        extra=run_extra(rec),
    )


def _train(
    specs: Sequence[RunSpec],
    configs: Sequence[dict],
    kind: str,
    threads: int | None,
    progress: Progress,
    run_logs: bool = False,
    task: dict[str, Any] | None = None,
    loaded: tuple[MNISTTensors, tuple[torch.Tensor, torch.Tensor] | None] | None = None,
    share: float = MEMORY_SHARE,
) -> list[dict[str, Any]]:
    """Train one group (all configs share group_key) with engine ``kind``; record every run
    (``task``: which executor task trained it, for run.json). A stacked group larger than the
    device's free memory holds (engines.plan.memory_cap) trains as several, one after another.

    The data is loaded before any run folder is written: a missing dataset leaves none behind."""
    from .task import interrupt_caught

    cfg = specs[0].cfg
    device = resolve_device(cfg.device)
    if threads or cfg.threads:
        torch.set_num_threads(int(threads or cfg.threads))
    data, val = loaded or load_data(cfg, device)
    if kind == "stacked" and len(specs) > 1:
        sizes, free = hidden_sizes(cfg.model), free_memory(device)
        cap = memory_cap(free, sizes, int(cfg.batch_size), share)
        if len(specs) > cap:
            parts = plan(configs, cap)
            log.info(
                "a group of %d models needs ~%.1f GiB, %.1f GiB is free on %s: it trains as %d groups of at most "
                "%d (%.0f %% of the free memory; hydra.launcher.max_models caps it lower)",
                len(specs),
                len(specs) * model_bytes(sizes, int(cfg.batch_size)) / 2**30,
                free / 2**30,
                device,
                len(parts),
                cap,
                100 * share,
            )
            out: dict[int, dict[str, Any]] = {}
            for part in parts:
                records = _train(
                    [specs[i] for i in part],
                    [configs[i] for i in part],
                    kind,
                    threads,
                    progress,
                    run_logs,
                    task,
                    (data, val),
                    share,
                )
                out.update(zip(part, records, strict=True))
            return [out[i] for i in range(len(specs))]
    group = {"size": len(specs)} if kind == "stacked" else None
    recorders = [
        RunRecorder(
            spec.out_dir,
            config,
            overrides=spec.overrides,
            choices=spec.choices,
            engine=kind,
            device=str(device),
            threads=torch.get_num_threads(),
            group=group,
            run_log=run_logs,
        )
        for spec, config in zip(specs, configs, strict=True)
    ]
    images = {"train": len(data.train), "val": len(val[1]) if val is not None else 0, "test": len(data.test)}
    for rec in recorders:  # what was really trained on: the report's setup block reads it
        rec.record["images"] = images
        if task:
            rec.record["task"] = task
    handler = RunLogs(recorders) if run_logs else None
    if handler is not None:
        logging.getLogger("actcompare").addHandler(handler)
    try:
        for spec, rec in zip(specs, recorders, strict=True):
            if spec.prepare is not None:
                spec.prepare()
            rec.start()
        _fit(specs, recorders, kind, device, progress, data, val)
    except KeyboardInterrupt:
        interrupt_caught()
        for rec in recorders:
            if rec.status == runs.RUNNING:
                rec.end(runs.INTERRUPTED)
        raise
    except UserError as err:  # bad data folder, full disk: every run would fail, so stop the sweep
        for rec in recorders:
            if rec.status == runs.RUNNING:
                rec.end(runs.FAILED, error=str(err))
        raise
    finally:
        for rec in recorders:
            if not rec.started:
                continue
            try:
                rec.finish()
            except UserError as err:  # the disk is full: say so once, keep what is there
                log.error("%s", err)
            _end_line(rec)
        if handler is not None:
            logging.getLogger("actcompare").removeHandler(handler)
        for rec in recorders:
            rec.close_log()
    return [rec.record for rec in recorders]


def _fit(
    specs: Sequence[RunSpec],
    recorders: list[RunRecorder],
    kind: str,
    device: torch.device,
    progress: Progress,
    data: MNISTTensors,
    val: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """Train one group and record every run. In a stacked group, an activation that fails a tiny
    batch fails alone before training; a group that raises later (which model's code raised is
    unknown) redoes its unfinished runs one at a time (same results), so only the run that raises fails."""
    if kind == "stacked":
        specs, recorders = _drop_broken(specs, recorders, device)
    if not specs:
        return
    reason = _attempt(specs, recorders, kind, device, progress, data, val)
    if reason is None:
        return
    if kind == "stacked" and len(specs) > 1:
        log.warning("stacked group of %d failed (%s): training its unfinished runs one at a time", len(specs), reason)
        for spec, rec in zip(specs, recorders, strict=True):
            if rec.status == runs.RUNNING:
                rec.restart(engine="single")
                _fail(rec, _attempt([spec], [rec], "single", device, progress, data, val))
    else:
        for rec in recorders:
            _fail(rec, reason)


def _fail(rec: RunRecorder, reason: str | None) -> None:
    if reason is not None and rec.status == runs.RUNNING:
        rec.end(runs.FAILED, error=reason)
        log.error("%s seed %s failed: %s", *rec.ident.values(), reason, extra=run_extra(rec))


def _variants(specs: Sequence[RunSpec], recorders: Sequence[RunRecorder]) -> tuple[list[str], dict[str, Variant]]:
    """Each run's variant key, and each distinct variant (activation, init, own optimizer values)."""
    keys = [variant_key(rec.config) for rec in recorders]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    variants = {
        k: Variant(
            instantiate(specs[i].cfg.activation.module, _partial_=True),
            specs[i].cfg.model.init.value,
            own_optimizer(recorders[i].config),
        )
        for k, i in sorted(first.items(), key=lambda item: item[1])
    }
    return keys, variants


def _drop_broken(
    specs: Sequence[RunSpec], recorders: Sequence[RunRecorder], device: torch.device
) -> tuple[list[RunSpec], list[RunRecorder]]:
    """Fail the runs whose activation fails a tiny batch (the pre-flight check); the rest train together."""
    width = hidden_sizes(specs[0].cfg.model)[0]
    keys, variants = _variants(specs, recorders)
    broken = {k: why for k, v in variants.items() if (why := _preflight(v, width, device))}
    for rec, k in zip(recorders, keys, strict=True):
        _fail(rec, broken.get(k))
    keep = [i for i, k in enumerate(keys) if k not in broken]
    return [specs[i] for i in keep], [recorders[i] for i in keep]


def _attempt(
    specs: Sequence[RunSpec],
    recorders: list[RunRecorder],
    kind: str,
    device: torch.device,
    progress: Progress,
    data: MNISTTensors,
    val: tuple[torch.Tensor, torch.Tensor] | None,
) -> str | None:
    """Build the engine for these runs and train them through the epoch loop; why it raised, or None."""
    cfg = specs[0].cfg
    seeds = list(dict.fromkeys(int(s.cfg.seed) for s in specs))
    keys, variants = _variants(specs, recorders)
    slot = slots(seeds, list(variants), [(int(s.cfg.seed), k) for s, k in zip(specs, keys, strict=True)])
    recipe = Recipe(tuple(hidden_sizes(cfg.model)), instantiate(cfg.optimizer), cfg.batch_size)
    try:
        engine = make_engine(kind, list(variants.values()), seeds, recipe, data.train.x, data.train.y)
        _loop(engine, specs, recorders, slot, data, val, progress)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


def _loop(engine, specs, recorders, slot, data, val, progress: Progress) -> None:
    from . import diagnostics as diag

    cfg = specs[0].cfg
    probe_x, probe_y = data.test.x[:PROBE_SIZE], data.test.y[:PROBE_SIZE]
    alive = [i for i, rec in enumerate(recorders) if rec.status == runs.RUNNING]
    for epoch in range(1, cfg.epochs + 1):
        tic, trained = time.perf_counter(), len(alive)
        train_loss, train_acc = engine.train_epoch()
        test_loss, test_acc = engine.evaluate(data.test.x, data.test.y)
        val_loss, val_acc = engine.evaluate(*val) if val is not None else (None, None)
        if data.test.x.device.type == "cuda":
            torch.cuda.synchronize()
        share = (time.perf_counter() - tic) / len(alive)  # this model's share of the group's epoch
        for i in list(alive):
            m, rec = slot[i], recorders[i]
            row = {
                "epoch": epoch,
                "train_loss": train_loss[m],
                "train_acc": train_acc[m],
                "test_loss": test_loss[m],
                "test_acc": test_acc[m],
                "val_loss": val_loss[m] if val_loss else None,
                "val_acc": val_acc[m] if val_acc else None,
                "epoch_seconds": round(share, 4),
            }
            rec.epoch(row)
            rec.note(
                f"epoch {epoch}/{cfg.epochs}: train loss {train_loss[m]:.4f}, test loss {test_loss[m]:.4f}, "
                f"test accuracy {100 * test_acc[m]:.2f} %"
            )
            why = runs.diverged(train_loss[m], test_loss[m])
            if why:
                rec.end(runs.DIVERGED, diverged_epoch=epoch, diverged_reason=why)
                log.warning(
                    "%s seed %s diverged in epoch %d (%s): stopped",
                    *rec.ident.values(),
                    epoch,
                    why,
                    extra=run_extra(rec),
                )
                alive.remove(i)  # its columns keep training in a stacked group, but touch no other model
            elif specs[i].cfg.diagnostics:
                rec.layers(epoch, diag.probe(engine.module(m), probe_x, probe_y))
        mean_acc = sum(test_acc[slot[i]] for i in alive) / max(len(alive), 1)
        # One model (per-run engine, a joblib/submitit job): name it, so interleaved jobs' lines read apart.
        who = "{} seed {}: ".format(*recorders[alive[0]].ident.values()) if len(alive) == 1 else ""
        progress.update(
            trained,
            f"{who}epoch {epoch}/{cfg.epochs}: {len(alive)} model(s), mean test acc "
            f"{100 * mean_acc:.2f} %, {share * len(alive):.2f} s",
        )
        if not alive:
            return
    for i in alive:
        rec = recorders[i]
        rec.end(runs.COMPLETED)
        if specs[i].cfg.save_model:
            rec.save_model(engine.module(slot[i]), data.test.x, data.test.y)
