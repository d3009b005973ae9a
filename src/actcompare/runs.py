"""What a run *is*: one definition of statuses, columns, bookkeeping keys, identity and divergence.

Imported by both training engines, the recorder, the Hydra plugins and the report, so that folder
names, resume, de-duplication, grouping and the divergence rule can never disagree. How one run's
folder is read, written and checked is record.py's. No torch here: the report and the sweep's
parent process import this without paying for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# ---------------------------------------------------------------- statuses (run.json "status")
RUNNING = "running"
COMPLETED = "completed"
DIVERGED = "diverged"  # see diverged() below; never enters a mean
FAILED = "failed"  # an exception in this run (its message is in run.json "error")
INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM / a killed worker: finished epochs are kept
STATUSES = (RUNNING, COMPLETED, DIVERGED, FAILED, INTERRUPTED)
FINISHED = (COMPLETED, DIVERGED)  # outcomes that resume=true does not redo
UNFINISHED = (RUNNING, FAILED, INTERRUPTED)  # redone by resume=true

# ---------------------------------------------------------------- columns of the files a run writes
ID_COLUMNS = ["activation", "seed", "epoch"]
FINAL_METRICS = ["train_loss", "train_acc", "test_loss", "test_acc"]  # loss: mean nats; acc: fraction
# val_*: on the validation split carved from the training set (data.val_samples); empty without one.
VALIDATION_METRICS = ["val_loss", "val_acc"]
METRIC_COLUMNS = [*ID_COLUMNS, *FINAL_METRICS, *VALIDATION_METRICS, "epoch_seconds"]  # metrics.csv, per epoch
# diagnostics.csv, one row per epoch and layer (layer 1 = first hidden layer; the last = output layer):
#   inactive_frac: share of units that are off (ReLU-like output at its floor) for most probe images
#   dead_frac: share of units off for every probe image; saturated_frac: share of units whose
#   derivative is below 0.1 % of the activation's maximum derivative for most probe images (bounded
#   activations); zero_frac: share of exactly-zero outputs; grad_norm: weight gradient norm;
#   no_grad_frac / no_grad_all_frac: share of units with |f'| < 0.1 % of the activation's maximum slope
#   for most / for every probe image, whatever the cause (diagnostics.py: the one "no gradient" category).
LAYER_COLUMNS = [
    "grad_norm",
    "inactive_frac",
    "dead_frac",
    "saturated_frac",
    "zero_frac",
    "act_mean",
    "act_std",
    "no_grad_frac",
    "no_grad_all_frac",
]
DIAGNOSTIC_COLUMNS = [*ID_COLUMNS, "layer", *LAYER_COLUMNS]

# ---------------------------------------------------------------- identity
# Config keys that say how or where a run is executed or recorded, not what is trained: two runs
# that differ only in these are the same run. Folder names (conf/config.yaml's exclude_keys, which
# interpolates this list through the `actcompare.bookkeeping` resolver), resume, de-duplication and
# report grouping all use this one list.
BOOKKEEPING_KEYS = (
    "resume",
    "device",
    "threads",
    "diagnostics",
    "save_model",
    "tracker",
    "objective",
    "data.root",
    "data.download",
    "experiment",
    "hparams_search",
    "report",
    "report.margin",
    "report.baseline",
    "seeds",  # how the sweep is judged and planned
)


def without(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``config`` without the dotted ``key`` (absent keys are fine)."""
    head, _, rest = key.partition(".")
    out = dict(config)
    if head not in out:
        return out
    if rest:
        if isinstance(out[head], Mapping):
            out[head] = without(out[head], rest)
    else:
        del out[head]
    return out


def canonical(node: Any) -> Any:
    """``node`` with every number in one form: a float with an integer value becomes that int
    (``0.0`` -> ``0``, ``1e3`` -> ``1000``), so that values equal as numbers are one value; other
    floats keep every digit (``1e-3`` and ``1.0000001e-3`` stay two values). Booleans stay booleans,
    lists and mappings are canonical throughout, and a key set to null counts as absent."""
    if isinstance(node, Mapping):
        return {k: canonical(v) for k, v in node.items() if v is not None}
    if isinstance(node, (list, tuple)):
        return [canonical(v) for v in node]
    if isinstance(node, float) and math.isfinite(node) and node.is_integer():
        return int(node)
    return node


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's resolved config minus the bookkeeping keys: what was trained, and nothing else, in
    canonical form (:func:`canonical`: numbers compare by value, ``0`` is ``0.0``). A key set to
    null counts as absent, so a run recorded before an optional key existed (e.g. data.val_samples)
    keeps its identity."""
    out = {k: v for k, v in config.items() if k != "hydra"}
    for key in BOOKKEEPING_KEYS:
        out = without(out, key)
    return canonical(out)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {"a.b": leaf}; lists become JSON text, so that they compare and print.
    The one flattening of a config: the report's grouping and the tracker's HParams both use it."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(node, (list, tuple)):
        return {prefix[:-1]: json.dumps(node)}
    return {prefix[:-1]: node}


def difference(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> str:
    """The first key whose value differs between two runs' identities, as 'key: A there, B here'."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}{key}.").items()}
        return {prefix[:-1]: node}

    fa, fb = flat(identity(theirs)), flat(identity(ours))
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{key}: {json.dumps(fa.get(key))} there, {json.dumps(fb.get(key))} here"
    return "a different config"


def run_id(config: Mapping[str, Any]) -> str:
    """A short stable hash of identity(config): equal for the same run wherever it was recorded."""
    text = json.dumps(identity(config), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- divergence (one rule, every engine)
# An untrained classifier that guesses uniformly has a cross-entropy of ln(C) nats (2.30 for MNIST's
# 10 classes). A loss more than DIVERGENCE_FACTOR times that is not "learning slowly" but exploding
# (SGD at lr 10 reaches ~1e7): such a run is diverged even while its loss is still finite.
DIVERGENCE_FACTOR = 10.0


def divergence_threshold(num_classes: int = 10) -> float:
    return DIVERGENCE_FACTOR * math.log(num_classes)


def diverged(*losses: float, num_classes: int = 10) -> str | None:
    """Why a run with these epoch losses (nats) has diverged, or None when it has not."""
    limit = divergence_threshold(num_classes)
    for loss in losses:
        if not math.isfinite(loss):
            return f"loss is {loss}"
        if loss > limit:
            return f"loss {loss:.4g} exceeds {limit:.1f} nats ({DIVERGENCE_FACTOR:g} x the untrained ln({num_classes}))"
    return None


# ---------------------------------------------------------------- names that become paths
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]")


def safe_label(label: str) -> str | None:
    """Why ``label`` cannot be used in a file or folder name, or None when it can."""
    if not label or label in (".", "..") or _UNSAFE.search(label):
        return (
            f"'{label}' may only hold letters, digits and . _ + = , @ - "
            "(no slashes, spaces or '..'), since it names files and folders"
        )
    return None


# ---------------------------------------------------------------- seeds
SEED_MAX = 2**32 - 1  # torch and numpy generators keep 32 bits of larger seeds: refuse, don't wrap


# ---------------------------------------------------------------- identity values as labels


def fmt_value(v: Any, digits: int = 6) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def fmt_values(values: Sequence[Any]) -> list[str]:
    """Labels for the values of one key: 6 significant digits, or as many more as it takes to tell
    every distinct number apart (``1e-3`` and ``1.0000001e-3`` -> ``0.001`` and ``0.0010000001``)."""
    distinct = {json.dumps(v, default=str) for v in values}
    for digits in range(6, 18):
        labels = [fmt_value(v, digits) for v in values]
        if len(set(labels)) >= len(distinct):
            return labels
    return [repr(v) if isinstance(v, float) else fmt_value(v) for v in values]
