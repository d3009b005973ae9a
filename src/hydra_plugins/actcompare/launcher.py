"""The fused launcher: hydra/launcher=fused (actcompare's default). Hydra hands a launcher a whole
batch of jobs; this one composes each job once (the configs Hydra's sweeper composed to check the
batch are reused: KeptConfigs), checks all of them before any trains or any folder is made, then
trains the jobs that can share a program together (actcompare.experiment.run_group: stacked groups
of activations x seeds x inits), each recorded in its own job folder exactly as under the basic
launcher.

Hydra's job contract, and the one compromise its API forces: Hydra's ``run_job`` runs one job from
``on_job_start`` through the task to ``on_job_end``; jobs that train together cannot each be inside
their own ``run_job`` while they train. So each job's ``run_job`` comes after its group has trained:
``on_job_start``, a task that returns the job's recorded result, then ``on_job_end`` with the
finished job (run.json, metrics.csv, model.pt on disk) and its real return value (the objective).
Jobs are handed to ``run_job`` in their order; ``on_job_start`` is therefore called after training,
not before. Each job's ``.hydra/`` is written just before it starts training, and its ``run.log``
holds its own lines as it trains (its epochs, its group's progress, its end state), as under Hydra's
own launchers.

    python run.py -m activation=relu,sigmoid,tanh,leaky_relu seed=0,1,2    # 12 models, one program
    python run.py -m hydra/launcher=basic ...                               # one model per job

Any other app (a config without actcompare's keys) is run job by job, as Hydra's basic launcher
does, so the launcher is correct for any app (tests run Hydra's LauncherTestSuite against it).
"""

# No `from __future__ import annotations`: Hydra scans plugins with exec_module outside sys.modules,
# where dataclasses cannot resolve string annotations.
import copy
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from actcompare import runs
from actcompare.errors import ConfigError, UserError
from actcompare.executors import Executor
from actcompare.task import job_result
from hydra_plugins.actcompare.callback import refused

log = logging.getLogger(__name__)


def _slurm_defaults() -> dict[str, Any]:
    """submitit.SlurmExecutor's parameters for executor=slurm: one GPU per group; null = Slurm's default."""
    return {
        "partition": None,
        "account": None,
        "qos": None,
        "constraint": None,
        "time": 60,  # minutes per task (one group)
        "gpus_per_task": 1,
        "cpus_per_task": 4,
        "mem": None,  # e.g. 16GB
        "array_parallelism": 64,  # tasks running at once
        "setup": [],  # shell lines before the task, e.g. ["source ~/venv/bin/activate"]
        "additional_parameters": {},  # any other sbatch option, e.g. {"exclude": "node1"}
    }


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.actcompare.launcher.FusedLauncher"
    # stacked: jobs that can share a program train together; single: one model at a time
    engine: str = "stacked"
    # Most models in one stacked group (larger groups are split into whole seeds: all variants of a
    # seed together); null: as many as the device's free memory holds (engines.plan.memory_cap).
    max_models: Optional[int] = None
    # Where the groups train: inprocess (this process), local (N processes on this machine, the
    # cores split between them), slurm (one array task per group, through submitit)
    executor: str = "inprocess"
    processes: Optional[int] = None  # executor=local: processes at once (null: one per core)
    timeout_min: int = 7 * 24 * 60  # executor=local: a task still running after this long is stopped
    submitit_folder: str = "${hydra.sweep.dir}/.submitit"  # each task's pickles, stdout and stderr (<job id>_*)
    slurm: dict[str, Any] = field(default_factory=_slurm_defaults)


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="actcompare")


def is_actcompare(cfg: DictConfig) -> bool:
    """Whether a composed job config is actcompare's (else: an app this launcher runs plainly). By
    its keys, not their values: a job whose activation config is broken (no module) is still
    actcompare's, checked with the others and named."""
    return all(key in cfg for key in ("activation", "optimizer", "model", "data", "seed", "epochs"))


def _job_folder(cfg: DictConfig) -> Path:
    """The folder run_job would give this job (hydra.sweep.dir / hydra.sweep.subdir, absolute)."""
    HydraConfig.instance().set_config(cfg)
    return Path(os.path.abspath(os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))))


def _save_job_config(cfg: DictConfig, folder: Path, task: Optional[DictConfig] = None) -> None:
    """The job's .hydra/ (config.yaml, hydra.yaml, overrides.yaml), as Hydra's run_job writes it.
    ``task``: the job's config without the hydra node (_task_config), if already made."""
    if cfg.hydra.output_subdir is None:
        return
    hydra = OmegaConf.masked_copy(cfg, "hydra")  # a copy of the hydra node alone: cfg stays as it is
    with read_write(hydra.hydra.runtime), open_dict(hydra.hydra.runtime):
        hydra.hydra.runtime.output_dir = str(folder)
    out = folder / str(cfg.hydra.output_subdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (
        ("config.yaml", _task_config(cfg) if task is None else task),
        ("hydra.yaml", hydra),
        ("overrides.yaml", cfg.hydra.overrides.task),
    ):
        (out / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


# ---------------------------------------------------------------- each job's config composed once

# Hydra's Sweeper.validate_batch_is_legal (BasicSweeper, seeds=auto) composes every job of a batch to
# fail early, and throws the configs away; a launcher then composes each job again (~0.1-0.8 s each,
# twice the composing of a sweep). ConfigLoader.load_sweep_config has no cache (every call builds a
# new CachingConfigRepository), so the configs that check composed are kept here, on the loader,
# and the launcher takes each of them once instead of composing it again: the same call, the same
# process, the same master config (its resolver cache is copied into each), the same cwd and
# environment. Only calls from that check are kept: its caller provably discards the result, so no
# one else holds the object the launcher is handed.
_VALIDATE = Sweeper.validate_batch_is_legal.__code__


class KeptConfigs:
    """Wraps one ConfigLoader's load_sweep_config (an instance attribute, so picklable with it):
    keeps what Hydra's batch check composes, by the job's overrides, until a launcher takes it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.kept: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}
        self.batch: Any = None  # the batch being checked (to say "composing N jobs" once per batch)
        self.seconds = 0.0  # spent composing in the check since a launcher last took configs

    @classmethod
    def install(cls, loader: Any) -> "KeptConfigs":
        kept = loader.__dict__.get("load_sweep_config")
        if not isinstance(kept, cls):
            kept = cls(loader)
            loader.load_sweep_config = kept
        return kept

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        caller = sys._getframe(1)
        checking = caller.f_code is _VALIDATE
        if checking:
            batch = caller.f_locals.get("batch")
            if batch is not self.batch:
                self.batch = batch
                log.info("composing %s ...", _jobs(len(batch)) if isinstance(batch, Sequence) else "the jobs")
        tic = time.perf_counter()
        cfg = type(self.loader).load_sweep_config(self.loader, master_config, sweep_overrides)
        if checking:
            self.seconds += time.perf_counter() - tic
            self.kept[tuple(sweep_overrides)] = (master_config, cfg)
        return cfg

    def take(self, master_config: DictConfig, overrides: Sequence[str]) -> Optional[DictConfig]:
        """The config Hydra's check composed for this job (handed out once), or None."""
        master, cfg = self.kept.pop(tuple(overrides), (None, None))
        return cfg if master is master_config else None


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _spec(cfg: DictConfig, folder: Path, task: Optional[DictConfig] = None) -> Any:
    """What the engine needs for one job; its .hydra/ is written when it starts training. ``task``:
    the job's config without the hydra node (_task_config), if already made."""
    from actcompare.experiment import RunSpec  # here: torch, ~2 s, not at Hydra's plugin scan (--help)

    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    task = _task_config(cfg) if task is None else task
    return RunSpec(
        cfg=task,
        out_dir=folder,
        overrides=[str(o) for o in cfg.hydra.overrides.task],
        choices={str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra/") and v is not None},
        prepare=partial(_save_job_config, cfg, folder, task),  # picklable: an executor's task calls it
    )


def refuse(message: str) -> SystemExit:
    """A batch refused before anything trains: the sweep callback then leaves no folder behind and
    prints nothing more (no report, no "Sweep finished")."""
    refused()
    return SystemExit(message)


class FusedLauncher(Launcher):
    def __init__(
        self,
        engine: str = "stacked",
        max_models: Optional[int] = None,
        executor: str = "inprocess",
        processes: Optional[int] = None,
        timeout_min: int = 7 * 24 * 60,
        submitit_folder: str = ".submitit",
        slurm: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if engine not in ("stacked", "single"):
            raise refuse(f"error: hydra.launcher.engine={engine!r} is not allowed: use stacked or single")
        if max_models is not None and (
            not isinstance(max_models, int) or isinstance(max_models, bool) or max_models < 1
        ):
            raise refuse(
                f"error: hydra.launcher.max_models={max_models} is not allowed: use a number >= 1 "
                "(the most models trained together in one program) or null (as many as fit in memory)"
            )
        slurm_params = {
            k: v
            for k, v in (
                OmegaConf.to_container(slurm, resolve=True) if isinstance(slurm, DictConfig) else slurm or {}
            ).items()
            if v not in (None, [], {})
        }
        try:
            self.executor = Executor(executor, processes, str(submitit_folder), int(timeout_min), slurm_params)
        except ConfigError as err:
            raise refuse(f"error: {err}") from None
        self.engine, self.max_models = engine, max_models
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        # Before the sweeper's batch check (a sweeper calls it after setup): keep what it composes.
        loader = hydra_context.config_loader
        self.kept = KeptConfigs.install(loader) if hasattr(loader, "__dict__") else None

    def _compose(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[DictConfig]:
        """Each job's config: the one Hydra's batch check composed (KeptConfigs), else composed here."""
        assert self.hydra_context is not None and self.config is not None
        kept: Optional[KeptConfigs] = getattr(self, "kept", None)
        checked = kept.seconds if kept is not None else 0.0
        tic, reused, configs = time.perf_counter(), 0, []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = kept.take(self.config, overrides) if kept is not None else None
            if sweep_config is not None:
                reused += 1
            else:
                if len(configs) == reused:  # the first job composed here
                    log.info("composing %s ...", _jobs(len(job_overrides) - reused))
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        if kept is not None:
            kept.seconds = 0.0
        log.debug(
            "composed %d jobs: %d in the sweeper's batch check (%.2f s), %d here (%.2f s)",
            len(configs),
            reused,
            checked,
            len(configs) - reused,
            time.perf_counter() - tic,
        )
        return configs

    def _run_job(self, sweep_config: DictConfig, task_function: TaskFunction) -> JobReturn:
        assert self.hydra_context is not None
        return run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configs = self._compose(job_overrides, initial_job_idx)
        if not any(is_actcompare(c) for c in configs):
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            log.info(f"Launching {len(configs)} jobs locally, one at a time")
            rets = []
            for overrides, sweep_config in zip(job_overrides, configs, strict=True):
                log.info(f"\t#{sweep_config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
                rets.append(self._run_job(sweep_config, self.task_function))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            return rets
        tic = time.perf_counter()
        specs = check_jobs(configs, job_overrides)
        log.debug("checked %d jobs in %.2f s", len(specs), time.perf_counter() - tic)

        from actcompare.experiment import run_group  # here: torch, ~2 s, not at Hydra's plugin scan (--help)

        where = "in this process" if self.executor.kind == "inprocess" else f"on executor {self.executor.kind}"
        log.info("Launching %d jobs %s (engine: %s)", len(specs), where, self.engine)
        try:
            records = run_group(
                specs, engine=self.engine, max_models=self.max_models, run_logs=True, executor=self.executor
            )
        except UserError as err:
            raise SystemExit(f"error: {err}") from None
        finally:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        # Hydra's job contract, once each job has trained: on_job_start, the task (returning the
        # recorded result), on_job_end with the finished job and its real return value.
        tic, rets = time.perf_counter(), []
        for cfg, spec, record in zip(configs, specs, records, strict=True):
            value = job_result(record, str(spec.cfg.get("objective", "test_acc")))
            rets.append(self._run_job(cfg, lambda _cfg, value=value: value))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        log.debug("Hydra's job contract for %d jobs in %.2f s", len(rets), time.perf_counter() - tic)
        return rets


def _task_config(cfg: DictConfig) -> DictConfig:
    """The job's config as its task sees it (without the hydra node), as run_job makes it."""
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def check_jobs(configs: Sequence[DictConfig], job_overrides: Sequence[Sequence[str]]) -> list[Any]:
    """Every problem of every job before anything trains or any folder is made: one line per
    problem, naming its jobs; a refused batch raises SystemExit (see refuse). The problems: a config
    that does not validate; sweeping `experiment`; a job folder outside the sweep folder (a value
    with '..'); two jobs in one folder, or one run in two folders (0 and 0.0); an activation name
    given to two different activation configs (here or in the sweep folder's runs); a folder that
    already holds a run this batch may not touch (recorder.existing). Returns the jobs' RunSpecs."""
    from actcompare.experiment import check_batch, shared_labels  # here: torch, not at Hydra's plugin scan

    where: dict[str, list[str]] = defaultdict(list)
    labels = [",".join(filter_overrides(o)) or "(no overrides)" for o in job_overrides]
    experiments = {str(OmegaConf.select(c, "hydra.runtime.choices.experiment", default=None)) for c in configs}
    if len(experiments) > 1:
        # Alone: the presets' jobs share one folder name (experiment is bookkeeping), so nothing else
        # said about them would help.
        raise refuse(
            "error: sweeping experiment= is not supported (each preset is a sweep of its own, with its "
            "own seeds and grid): run them one after another, e.g. for e in "
            f"{' '.join(sorted(experiments))}; do actcompare -m experiment=$e; done"
        )
    sweep = Path(os.path.abspath(str(configs[0].hydra.sweep.dir))) if configs else Path()
    folders: dict[Path, tuple[str, str]] = {}
    ids: dict[str, tuple[Path, str]] = {}
    specs = []
    for cfg, label in zip(configs, labels, strict=True):
        folder = _job_folder(cfg)
        if folder == sweep or not folder.is_relative_to(sweep) or ".." in Path(str(cfg.hydra.sweep.subdir)).parts:
            bad = [o for o in filter_overrides(cfg.hydra.overrides.task) if ".." in o or "/" in o.partition("=")[2]]
            where[
                f"the job '{label}' would be recorded in {folder}, outside the sweep folder {sweep}: a value that "
                f"names a folder may not hold '..' ({', '.join(bad) or cfg.hydra.sweep.subdir})"
            ] = []
            continue
        task = _task_config(cfg)
        try:
            rid = runs.run_id(OmegaConf.to_container(task, resolve=True))
        except Exception:  # a config that does not resolve: validate() says why
            rid = f"unresolved-{label}"
        if folder in folders and folders[folder][0] != rid:
            where[
                f"jobs '{folders[folder][1]}' and '{label}' would share the folder {folder} but are "
                "different runs: sweep the differing key explicitly on the command line"
            ] = []
        elif rid in ids and ids[rid][0] != folder:
            where[
                f"jobs '{ids[rid][1]}' and '{label}' are the same run (their values are equal as numbers, "
                "e.g. 0 and 0.0): give each value once"
            ] = []
        folders.setdefault(folder, (rid, label))
        ids.setdefault(rid, (folder, label))
        specs.append(_spec(cfg, folder, task))
    if not where:
        by_job = {id(spec): label for spec, label in zip(specs, labels, strict=True)}
        for problem, spec in check_batch(specs):
            where[problem].append(by_job[id(spec)])
    if not where:
        for problem in shared_labels(specs, sweep):
            where[problem] = []
    if where:
        total = len(configs)
        lines = [
            f"error: {p}"
            + (
                ""
                if not j or len(j) == total
                else f" (in job {j[0]}" + (f" and {len(j) - 1} more)" if len(j) > 1 else ")")
            )
            for p, j in where.items()
        ]
        raise refuse("\n".join(_one_per_kind(lines)))
    return specs


def _one_per_kind(lines: list[str]) -> list[str]:
    """Folders holding another sweep's runs: one line naming the first, and how many more."""
    other = [line for line in lines if "run of another config" in line]
    if len(other) <= 1:
        return lines
    rest = [line for line in lines if "run of another config" not in line]
    return [*rest, f"{other[0]} (and {len(other) - 1} more job folder(s) like it)"]
