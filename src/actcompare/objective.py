"""The one number a run returns to a sweeper (Optuna, Nevergrad, Ax, ...): its ``objective``.

The full record stays on disk (run.json, metrics.csv); a sweeper only needs a float to rank trials.
Completed runs return the final value of the metric. Runs that did not complete (diverged, failed,
interrupted, or a metric that is missing or not finite) return the metric's *worst* value, chosen
so that every optimiser ranks them last without crashing:

- accuracies (``*_acc``, maximised): ``0.0``, the floor of an accuracy. Not ``-inf``: Optuna stores
  ``-inf`` as a completed trial in memory, but older RDB storages and its plots choke on infinities;
  not ``nan``: Optuna fails a trial told ``nan`` (2.x raised, and the sweeper built on it then
  stopped the sweep), so a diverged run would not even rank last.
- losses (``*_loss``, minimised): :func:`actcompare.runs.divergence_threshold` (10 x ln 10 = 23.0
  nats), finite, and above the final loss of every run that did not diverge (a loss beyond it *is*
  divergence), so a bad run never beats a real one.

Direction: accuracies are maximised, losses minimised (:func:`direction`; the Optuna preset reads it
through the ``actcompare.direction`` resolver).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .runs import COMPLETED, FINAL_METRICS, VALIDATION_METRICS, divergence_threshold

METRICS = (*FINAL_METRICS, *VALIDATION_METRICS)


def direction(metric: str) -> str:
    """``"maximize"`` for accuracies, ``"minimize"`` for losses."""
    _check(metric)
    return "minimize" if metric.endswith("_loss") else "maximize"


def worst_value(metric: str) -> float:
    """What a run that did not complete scores: ranked below every completed run (see above)."""
    return divergence_threshold() if direction(metric) == "minimize" else 0.0


def objective_value(record: Mapping[str, Any], metric: str) -> float:
    """The final ``metric`` of a completed run (run.json's dict), else the metric's worst value."""
    _check(metric)
    if record.get("status") != COMPLETED:
        return worst_value(metric)
    value = (record.get("final") or {}).get(metric)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return worst_value(metric)
    if not math.isfinite(number):
        return worst_value(metric)
    return number


def _check(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"objective={metric} is not allowed: use one of {', '.join(METRICS)}")
