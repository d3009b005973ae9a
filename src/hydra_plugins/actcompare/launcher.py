"""The fused launcher: hydra/launcher=fused (actcompare's default). Hydra hands a launcher a whole
batch of jobs; this one composes each job once, checks all of them before any trains or any folder
is made, then trains the jobs that can share a program together (actcompare.experiment.run_group:
stacked groups of activations x seeds x inits), each recorded in its own job folder exactly as under
the basic launcher.

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
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

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


def _save_job_config(cfg: DictConfig, folder: Path) -> None:
    """The job's .hydra/ (config.yaml, hydra.yaml, overrides.yaml), as Hydra's run_job writes it."""
    cfg = copy.deepcopy(cfg)
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(folder)
    if cfg.hydra.output_subdir is None:
        return
    out = folder / str(cfg.hydra.output_subdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (
        ("config.yaml", _task_config(cfg)),
        ("hydra.yaml", OmegaConf.masked_copy(cfg, "hydra")),
        ("overrides.yaml", cfg.hydra.overrides.task),
    ):
        (out / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


def _spec(cfg: DictConfig, folder: Path) -> Any:
    """What the engine needs for one job; its .hydra/ is written when it starts training."""
    from actcompare.experiment import RunSpec

    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    return RunSpec(
        cfg=_task_config(cfg),
        out_dir=folder,
        overrides=[str(o) for o in cfg.hydra.overrides.task],
        choices={str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra/") and v is not None},
        prepare=partial(_save_job_config, cfg, folder),  # picklable: an executor's task calls it
    )


def refuse(message: str) -> SystemExit:
    """A batch refused before anything trains: the sweep callback then leaves no folder behind and
    prints nothing more (no report, no "Sweep finished")."""
    from hydra_plugins.actcompare.callback import refused

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
        from actcompare.errors import ConfigError
        from actcompare.executors import Executor

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

    def _compose(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[DictConfig]:
        assert self.hydra_context is not None and self.config is not None
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
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
        specs = check_jobs(configs, job_overrides)

        from actcompare.errors import UserError
        from actcompare.experiment import run_group
        from actcompare.task import job_result

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
        rets = []
        for cfg, spec, record in zip(configs, specs, records, strict=True):
            value = job_result(record, str(spec.cfg.get("objective", "test_acc")))
            rets.append(self._run_job(cfg, lambda _cfg, value=value: value))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
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
    from actcompare import runs
    from actcompare.experiment import check_batch, shared_labels

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
        try:
            rid = runs.run_id(OmegaConf.to_container(_task_config(cfg), resolve=True))
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
        specs.append(_spec(cfg, folder))
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
