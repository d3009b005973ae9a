"""The fused launcher: hydra/launcher=fused (actcompare's default). Hydra hands a launcher a whole
batch of jobs; this one composes each job once, checks all of them before any trains, then trains
the jobs that can share a program together (actcompare.experiment.run_group: stacked groups of
activations x seeds x inits), each recorded in its own job folder exactly as under the basic launcher.

    python run.py -m activation=relu,sigmoid,tanh,leaky_relu seed=0,1,2    # 12 models, one program
    python run.py -m hydra/launcher=basic ...                               # one model per job

Any other app (a config without actcompare's keys) is run job by job, as Hydra's basic launcher
does, so the launcher is correct for any app (tests run Hydra's LauncherTestSuite against it).
"""

# No `from __future__ import annotations`: Hydra scans plugins with exec_module outside sys.modules,
# where dataclasses cannot resolve string annotations.
import copy
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.actcompare.launcher.FusedLauncher"
    # stacked: jobs that can share a program train together; single: one model at a time, in this process
    engine: str = "stacked"
    # Most models in one stacked group; larger groups are split into whole seeds (all variants of a
    # seed together). 64 tutorial MLPs take ~0.3 GB for weights and Adam state (~1 GB with batch 64
    # activations); raise it on a GPU with memory to spare.
    max_models: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="actcompare")


def is_actcompare(cfg: DictConfig) -> bool:
    """Whether a composed job config is actcompare's (else: an app this launcher runs plainly)."""
    return all(OmegaConf.select(cfg, key, default=None) is not None
               for key in ("activation.module", "optimizer", "model", "data", "seed", "epochs"))  # fmt: skip


def _prepare(cfg: DictConfig) -> Any:
    """The 'task' run_job calls for a fused job: Hydra has made its folder and .hydra/; hand back
    what the engine needs instead of training here."""
    from actcompare.experiment import RunSpec

    hc = HydraConfig.get()
    return RunSpec(
        cfg=cfg,
        out_dir=Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
    )


class FusedLauncher(Launcher):
    def __init__(self, engine: str = "stacked", max_models: int = 64) -> None:
        super().__init__()
        if engine not in ("stacked", "single"):
            raise ValueError(f"hydra.launcher.engine={engine!r}: use stacked or single")
        self.engine, self.max_models = engine, int(max_models)
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
        return run_job(hydra_context=self.hydra_context, task_function=task_function, config=sweep_config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = self._compose(job_overrides, initial_job_idx)
        if not all(is_actcompare(c) for c in configs):
            log.info(f"Launching {len(configs)} jobs locally, one at a time")
            rets = []
            for overrides, sweep_config in zip(job_overrides, configs, strict=True):
                log.info(f"\t#{sweep_config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
                rets.append(self._run_job(sweep_config, self.task_function))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            return rets
        check_jobs(configs, job_overrides)
        rets = [self._run_job(c, _prepare) for c in configs]
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        specs = [ret.return_value for ret in rets]

        from actcompare.errors import UserError
        from actcompare.experiment import run_group
        from actcompare.task import job_result

        log.info("Launching %d jobs in this process (engine: %s)", len(specs), self.engine)
        try:
            records = run_group(specs, engine=self.engine, max_models=self.max_models)
        except UserError as err:
            raise SystemExit(f"error: {err}") from None
        for ret, spec, record in zip(rets, specs, records, strict=True):
            ret.return_value = job_result(record, str(spec.cfg.get("objective", "test_acc")))
        return rets


def _task_config(cfg: DictConfig) -> DictConfig:
    """The job's config as its task sees it (without the hydra node), as run_job makes it."""
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def check_jobs(configs: Sequence[DictConfig], job_overrides: Sequence[Sequence[str]]) -> None:
    """Every problem of every job before anything trains: one line per problem, naming its jobs.
    Also refuses sweeps whose jobs would share a folder or that sweep `experiment`."""
    from actcompare import runs
    from actcompare.schema import validate

    where: dict[str, list[str]] = defaultdict(list)
    for cfg, overrides in zip(configs, job_overrides, strict=True):
        for problem in validate(cfg):
            where[problem].append(",".join(filter_overrides(overrides)) or "(no overrides)")
    experiments = {str(OmegaConf.select(c, "hydra.runtime.choices.experiment", default=None)) for c in configs}
    if len(experiments) > 1:
        where["sweeping experiment= is not supported (each preset is a sweep of its own, with its own "
              "seeds and grid): run them one after another, e.g. for e in "
              f"{' '.join(sorted(experiments))}; do python run.py -m experiment=$e; done"] = []  # fmt: skip
    folders: dict[str, tuple[str, str]] = {}
    for cfg, overrides in zip(configs, job_overrides, strict=True):
        HydraConfig.instance().set_config(cfg)
        folder = str(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))
        rid = runs.run_id(OmegaConf.to_container(_task_config(cfg), resolve=True))
        label = " ".join(filter_overrides(overrides)) or "(no overrides)"
        if folder in folders and folders[folder][0] != rid:
            where[f"jobs '{folders[folder][1]}' and '{label}' would share the folder {folder} but are "
                  "different runs: sweep the differing key explicitly on the command line"] = []  # fmt: skip
        folders.setdefault(folder, (rid, label))
    if where:
        total = len(configs)
        lines = [
            f"error: {p}" + ("" if not j or len(j) == total else f" (in job {j[0]}" + (
                f" and {len(j) - 1} more)" if len(j) > 1 else ")"))
            for p, j in where.items()
        ]  # fmt: skip
        raise SystemExit("\n".join(lines))
