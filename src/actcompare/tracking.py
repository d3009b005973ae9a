"""Experiment tracking: TensorBoard (``tracker=tensorboard``), off by default.

Each run writes ``<run dir>/tensorboard/``: one scalar per metrics.csv column per epoch (the epoch
is the step) and, when the run ends, its HParams: the run's identity (:func:`actcompare.runs.
identity`, flattened to dotted keys) plus its status, with the final metrics. So

    tensorboard --logdir <sweep dir>

shows every run's curves side by side (SCALARS) and a table of activations x final accuracy that
can be sorted and filtered (HPARAMS). Needs ``pip install 'actcompare[tensorboard]'``.

The recorder calls :func:`open_tracker` when a run starts training, ``log_epoch`` after every
epoch's metrics.csv row and ``close`` with run.json's record at the end.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError
from .record import TRACKER_DIR
from .runs import FINAL_METRICS, ID_COLUMNS, METRIC_COLUMNS, VALIDATION_METRICS, flatten, identity

SUBDIR = TRACKER_DIR  # <run dir>/tensorboard/: record.py names a run folder's files
FINAL_TAG = "final/"  # HParams metrics: final/test_acc, ... (per-epoch scalars use the bare column name)


class Tracker(Protocol):
    def log_epoch(self, row: Mapping[str, Any]) -> None: ...

    def close(self, record: Mapping[str, Any]) -> None: ...

    def discard(self) -> None:
        """Close without a final record and remove what was written (an attempt that is redone)."""
        ...


def _number(value: Any) -> float | None:
    """A metrics value as a float, or None when it is empty (val_* without a validation split)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# Keys of the identity that say how, not what, a run computed (the same model either way): left
# out of the HParams table, where they would only add columns.
IMPLEMENTATION_KEYS = ("optimizer.fused", "optimizer.foreach", "optimizer.capturable", "optimizer.differentiable")


def hparams(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The run's identity as HParams takes it: dotted keys, scalars only (None as "null"); the
    optimizer as its class name (Adam), Hydra's own keys (_partial_, _target_ of a module) and
    implementation switches left out."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in flatten(identity(config)).items():
        parts = key.split(".")
        if parts[-1] == "_target_" and len(parts) == 2:  # optimizer._target_ -> optimizer: Adam
            out[parts[0]] = str(value).rsplit(".", 1)[-1]
        elif not any(p.startswith("_") for p in parts) and key not in IMPLEMENTATION_KEYS:
            out[key] = "null" if value is None else value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class TensorBoardTracker:
    """Per-epoch scalars and end-of-run HParams through torch.utils.tensorboard."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is absent
            raise ConfigError(
                "tracker=tensorboard needs the tensorboard package: pip install 'actcompare[tensorboard]' "
                "(or tracker=null)"
            ) from None
        self.logdir = Path(run_dir) / SUBDIR
        # A run that starts (again: resume redoes unfinished runs) starts from epoch 1: old events
        # would show as a second curve on top of the new one.
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.config = dict(config)
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.closed = False

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        step = int(row["epoch"])
        for column in METRIC_COLUMNS:
            if column in ID_COLUMNS:
                continue
            value = _number(row.get(column))
            if value is not None:
                self.writer.add_scalar(column, value, global_step=step)
        self.writer.flush()  # a run killed later keeps the epochs it finished

    def discard(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()
        shutil.rmtree(self.logdir, ignore_errors=True)

    def close(self, record: Mapping[str, Any]) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            values = hparams(self.config)
            values["status"] = str(record.get("status"))
            final = record.get("final") or {}
            metrics = {}
            for name in (*FINAL_METRICS, *VALIDATION_METRICS):
                value = _number(final.get(name))
                if value is not None and math.isfinite(value):
                    metrics[FINAL_TAG + name] = value
            # run_name=".": the HParams session is this run's own folder, next to its scalars.
            self.writer.add_hparams(values, metrics, run_name=".")
        finally:
            self.writer.close()


def open_tracker(kind: str | None, run_dir: Path, config: dict) -> Tracker | None:
    """The tracker ``kind`` (the ``tracker`` config key) for one run, or None when it is off."""
    if kind is None:
        return None
    if kind == "tensorboard":
        return TensorBoardTracker(Path(run_dir), config)
    raise ConfigError(f"tracker={kind} is not allowed: use null (off) or tensorboard")
