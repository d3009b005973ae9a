"""What conf/ asks of Python besides the schema: ``python run.py --help``, generated from the schema's
fields, and the resolvers the YAML files name (``actcompare.help``, ``actcompare.env``,
``actcompare.direction``). Imported by ``actcompare/__init__.py``, so any compose() finds them.

Every key's meaning lives in ONE place: the ``help`` metadata of its dataclass field in schema.py
(plus :data:`GROUP_KEYS` below for keys that come from a config group's YAML).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import fields
from enum import Enum

from omegaconf import MISSING, OmegaConf

from .objective import METRICS, direction
from .schema import ActivationConf, Config

# Keys that come from a config group's YAML rather than the schema: {key: (default, meaning)}.
GROUP_KEYS = {
    "optimizer.lr": ("1e-3 (sgd: 0.05)", "learning rate"),
    "optimizer.<kwarg>": (
        "per option",
        "any keyword of the optimizer class: optimizer.weight_decay=0.01, "
        "+optimizer.amsgrad=true (checked against the class)",
    ),
}

# Launchers and presets, for --help: {override: meaning}.
LAUNCHERS = {
    "hydra/launcher=fused": "the default: a sweep's models (activations x seeds x inits x optimizer values) "
    "trained together, in groups as large as free memory allows",
    "hydra/launcher=fused_local": "the same groups in N local processes, cores split (hydra.launcher.processes=N)",
    "hydra/launcher=fused_slurm": "the same groups as one Slurm array, a task per group "
    "(hydra.launcher.slurm.partition=...)",
    "hydra/launcher=basic": "one run after another in this process, one model per job",
    "hydra/launcher=parallel": "2 jobs at once in local processes (joblib), 1 torch thread each",
    "hydra/launcher=joblib": "one job per core (joblib)",
    "hydra/launcher=local_processes": "submitit on this machine, every job at once, 1 core each",
    "hydra/launcher=submitit_local": "submitit on this machine, every job at once (cpus_per_task unset)",
    "hydra/launcher=slurm": "one Slurm job per run (hydra.launcher.partition=...)",
}
PRESETS = {
    "-m experiment=<name>": "a ready-made study (tutorial, all_activations, depth, lr_sweep)",
    "-m activation=relu,tanh seeds=auto": "the sweep plans its seed count: a pilot, then the seeds that decide "
    "+/- report.margin (hydra.sweeper.max_seeds caps it)",
    "-m hparams_search=lr_optuna": "Optuna (TPE) searches optimizer.lr per activation "
    "(pip install 'actcompare[optuna]')",
}


def _shown(f: dataclasses.Field) -> str:
    if f.metadata.get("shown"):
        return str(f.metadata["shown"])
    if f.default is not dataclasses.MISSING and f.default is not MISSING:
        value = f.default.value if isinstance(f.default, Enum) else f.default
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return str(value).replace(" ", "") if isinstance(value, list) else ""
    return ""


def documented_keys() -> Iterator[tuple[str, str, str]]:
    """(dotted key, default as shown, meaning) for every key of the schema, in order."""

    def walk(schema: type, prefix: str) -> Iterator[tuple[str, str, str]]:
        for f in fields(schema):
            key = prefix + f.name
            sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(sub) and f.name != "activation":
                yield from walk(type(sub), key + ".")
                continue
            yield key, _shown(f), f.metadata.get("help", "")
            if f.name == "activation":
                yield from walk(ActivationConf, "activation.")
            if f.name == "optimizer":
                yield from ((k, d, h) for k, (d, h) in GROUP_KEYS.items())

    yield from walk(Config, "")


def help_text() -> str:
    """The template of ``python run.py --help`` (Hydra fills $APP_CONFIG_GROUPS and $CONFIG)."""
    rows = list(documented_keys())
    width = max(len(k) for k, _, _ in rows) + 2
    dwidth = min(24, max(len(d) for _, d, _ in rows)) + 2
    keys = "\n".join(f"  {k:<{width}}{d:<{dwidth}}{h}" for k, d, h in rows)
    launchers = "\n".join(f"  {k:<34}{v}" for k, v in LAUNCHERS.items())
    presets = "\n".join(f"  {k:<34}{v}" for k, v in PRESETS.items())
    text = f"""actcompare: train an MLP on MNIST with each activation function and compare them.

Usage:
  actcompare [key=value ...]              one run (also: python run.py, python -m actcompare)
  actcompare -m activation=relu,tanh ...  a sweep: one run per combination, then a report
  actcompare-report <sweep dir> ...       rebuild or merge reports from disk
  actcompare-plot-activations [name ...]  draw the activations and their derivatives

Keys (key, default, meaning). Set one with key=value, sweep it with key=a,b,c under -m:
  {"key":<{width}}{"default":<{dwidth}}meaning
{keys}

Config groups (group=option; add your own with --config-dir=<dir> holding <group>/<name>.yaml):
$APP_CONFIG_GROUPS

Launchers (how a sweep's runs are executed):
{launchers}

Presets:
{presets}

The composed config (with your overrides):
$CONFIG
Full tracebacks: HYDRA_FULL_ERROR=1. Files: outputs/runs/<date>/<time>/ and outputs/sweeps/<date>/<time>/.
"""
    return text


def _env_or(name: str, default: str = "") -> str:
    """${actcompare.env:NAME,default}: like oc.env, but a variable set to '' counts as unset."""
    return os.environ.get(name) or default


def _direction(metric: str) -> str:
    """${actcompare.direction:${objective}}: Optuna's direction (an unknown metric: validate says)."""
    return direction(metric) if metric in METRICS else "maximize"


for _name, _fn in (("actcompare.help", help_text), ("actcompare.env", _env_or), ("actcompare.direction", _direction)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
