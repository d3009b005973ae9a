"""Glue between Hydra's entry point (run.py) and the library: no training logic lives here."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .errors import UserError
from .schema import unknown_key


def _threads_per_job(hydra_cfg: DictConfig) -> int | None:
    """Torch threads for a job so parallel launchers do not oversubscribe the cores.

    joblib with n_jobs=k runs k jobs at once: each gets cores // k threads (n_jobs=-1: one
    each). submitit gives each job cpus_per_task cores. The basic launcher: torch's default.
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


def hydra_task(cfg: DictConfig) -> dict[str, Any]:
    """The body of run.py's @hydra.main: run one experiment in Hydra's output folder."""
    hc = HydraConfig.get()
    try:
        # Imported here, not at the top: the parent process of a joblib/submitit sweep never trains,
        # so it never pays for torchvision's imports.
        from .experiment import run_experiment

        record = run_experiment(
            cfg,
            out_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
            choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
            threads=cfg.threads or _threads_per_job(hc),
        )
    except UserError as err:
        # SystemExit passes through Hydra's job runner: one line on stderr, exit code 2.
        raise SystemExit(f"error: {err}") from None
    if record["status"] == "failed" and hc.mode == RunMode.RUN:
        # In a sweep the sweeper lists failed runs at the end; a single run says so itself.
        raise SystemExit(f"error: the run failed: {record['error']} (its files: {hc.runtime.output_dir})")
    return record


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def unknown_choice(args: list[str], conf_dir: Path) -> str | None:
    """A one-line error for a config-group option that does not exist (activation=relux).

    Hydra reports it too, but over twenty lines; this names the valid options in one. Overrides
    are parsed by Hydra's own parser; anything it cannot judge here is left to Hydra.
    """
    if any(a.lstrip("+~").startswith("hydra.searchpath") for a in args):
        return None  # options may come from elsewhere
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except Exception:
        return None  # a syntax error: Hydra's message is the right one
    for o in overrides:
        group = conf_dir / o.key_or_group
        if o.is_delete() or o.key_or_group.startswith("hydra") or not group.is_dir():
            continue
        if o.is_sweep_override():
            if not isinstance(o.value(), ChoiceSweep):
                continue  # glob(...) etc.
            values = list(o.sweep_string_iterator())
        else:
            values = [o.get_value_element_as_str()]
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for v in values:
            if v != "null" and v not in options:
                return (f"error: unknown {o.key_or_group} '{v}': choose one of {', '.join(options)} "
                        f"(or add conf/{o.key_or_group}/{v}.yaml)")  # fmt: skip
    return None


def config_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf config error (misspelt key, wrong type), instead of Hydra's
    five: which override, what is wrong, and for an unknown key the nearest real one."""
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else None
    first = next(iter((getattr(err, "msg", None) or str(err)).strip().splitlines()), type(err).__name__)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        siblings = cause.parent_node if isinstance(cause.parent_node, DictConfig) else []
        return "error: " + unknown_key(str(cause.full_key or cause.key), siblings)
    if cause is not None:
        what = (cause.msg or str(cause)).strip().splitlines()[0]
        return f"error: {first.removeprefix('Error merging override ').rstrip('.')}: {what}"
    raw = str(err).splitlines()
    lines = [line.strip() for line in raw if line.strip() and not line.strip().startswith("See http")]
    if isinstance(err, OverrideParseException):
        return f"error: cannot parse the override '{err.override}': {lines[-1]}"
    starts = [i for i, line in enumerate(raw) if line.startswith("Available options")]
    if starts:  # an unknown hydra/... option; the options follow, one per tab-indented line
        options = list(itertools.takewhile(lambda line: line.startswith("\t"), raw[starts[0] + 1 :]))
        return f"error: {first}: choose one of {', '.join(o.strip() for o in options)}"
    return f"error: {'; '.join(lines) or first}"


def guard(main: Callable[[], Any], conf_dir: str | os.PathLike | None = None) -> None:
    """Run Hydra's main so that bad input, Ctrl-C and SIGTERM end with one line, no traceback.

    HYDRA_FULL_ERROR=1 (set by the user) still gives the full traceback.
    """
    if conf_dir is not None:
        problem = unknown_choice(sys.argv[1:], Path(conf_dir))
        if problem:
            sys.exit(problem)
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Hydra prints config errors over 5-7 lines (and suggests `+key=` for a typo, which the typed
    # schema then rejects); this makes it raise them to us instead, to be said in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        main()
    except KeyboardInterrupt:
        if full_error:
            raise
        print(
            "interrupted: finished epochs and runs are on disk (run.json says 'interrupted'). "
            "To finish a sweep: rerun the same command with hydra.sweep.dir=<its folder> resume=true",
            file=sys.stderr,
        )
        sys.exit(130)
    except (HydraException, OmegaConfBaseException) as err:
        if full_error:
            raise
        sys.exit(config_error(err))
    except Exception as err:
        if full_error:
            raise
        first = next(iter(str(err).strip().splitlines()), "")
        sys.exit(f"error: {type(err).__name__}: {first} (set HYDRA_FULL_ERROR=1 for the traceback)")
    finally:
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)
