"""actcompare: compare activation functions on MNIST with Hydra sweeps, tidy CSVs and plots.

The public names below are imported on first use (PEP 562), so ``import actcompare.report`` or
the sweep's parent process does not pay for torchvision (about 1.5 s of imports on 2 cores).
"""

import atexit
import gc
import importlib
from typing import Any

from omegaconf import OmegaConf

# Registers the typed config schema (config_schema) in Hydra's ConfigStore, which conf/config.yaml
# names in its defaults: any compose() after `import actcompare...` then finds it.
from . import (
    helptext,  # noqa: F401  (the resolvers conf/ names: actcompare.help, .env, .direction)
    schema,  # noqa: F401
)
from .runs import BOOKKEEPING_KEYS

# conf/config.yaml's folder names leave out the bookkeeping keys: one list, from runs.py.
if not OmegaConf.has_resolver("actcompare.bookkeeping"):
    OmegaConf.register_new_resolver("actcompare.bookkeeping", lambda: list(BOOKKEEPING_KEYS))

# At exit, move every live object into the permanent generation first, so the interpreter's final
# garbage collection skips the ~10^6 objects torch and torchvision create: exit takes ~0.2 s
# instead of ~1.1 s, in run.py, its joblib/submitit workers and scripts/report.py alike.
atexit.register(gc.freeze)

_EXPORTS = {
    "ConfigError": "errors",
    "DataError": "errors",
    "UserError": "errors",
    "NeuralNetwork": "model",
    "load_mnist": "data",
    "run_experiment": "experiment",
    "build_report": "report",
    "load_sweep": "report",
    "summarize": "report",
    "test": "train",
    "train": "train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'actcompare' has no attribute {name!r}")
