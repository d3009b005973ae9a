"""One run folder on disk: its files, how they are read, written and checked, and what is unfinished.

A run folder holds (runs.py says what a run is and what the columns mean):
- ``run.json``: the run's record (status, final metrics, resolved config, provenance), written
  atomically by :func:`write_record`, read by :func:`read_record`;
- ``metrics.csv``, ``diagnostics.csv``: one row per epoch (and layer), read by :func:`read_metrics`
  and :func:`read_diagnostics`; ``run.log``; ``tensorboard/`` (the tracker's);
- ``model.pt``, ``confusion.csv``, ``examples.npz`` (``save_model``), checked by
  :func:`check_confusion` and :func:`check_examples` before they are drawn.
run.json's final metrics are metrics.csv's last row within ONE tolerance (:func:`final_disagreement`),
whoever checks: the recorder before it reuses a run (:func:`existing`), the report before it counts one.

Used by the recorder (writes), the report loader (reads, checks), the sweep callback (statuses), the
tracker (its folder), the executor's sweep (:func:`task_ended`) and the test fixtures. No torch here;
pandas and numpy only inside the readers that need them: the sweep callback imports this module
while Hydra scans its plugins (``python run.py --help`` too).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runs
from .errors import ConfigError
from .files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the files of a run folder
RUN_JSON = "run.json"
METRICS = "metrics.csv"
DIAGNOSTICS = "diagnostics.csv"
TRACKER_DIR = "tensorboard"
# What one attempt at a run leaves besides run.json and run.log: an earlier attempt's are removed
# when the run starts again (resume, or a stacked group redone one model at a time).
RESULT_FILES = (METRICS, DIAGNOSTICS, "model.pt", "confusion.csv", "examples.npz")
REQUIRED_METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
OPTIONAL_METRICS = [*runs.VALIDATION_METRICS, "epoch_seconds"]


def clear_results(folder: Path) -> None:
    """Remove an earlier attempt's results and tracker files: only the attempt that records the run shows."""
    for name in RESULT_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / TRACKER_DIR, ignore_errors=True)


# ---------------------------------------------------------------- run.json
FINAL_TOLERANCE = 1e-9  # relative: run.json's final metrics are metrics.csv's last row, written from one float


class BadRecord(ValueError):
    """A run.json (or its metrics.csv) that cannot be trusted; the message is one line naming the file."""

    def __init__(self, path: Any, what: str) -> None:
        super().__init__(f"{path}: {what}")


def read_record(path: Any) -> dict[str, Any]:
    """run.json as a dict with a config object and a status, or BadRecord saying why not."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise BadRecord(path, f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise BadRecord(path, f"is not valid JSON (truncated?): {err.msg} at line {err.lineno}") from None
    if not isinstance(record, dict):
        raise BadRecord(path, f"holds a JSON {type(record).__name__}, not an object")
    if not isinstance(record.get("config"), dict):
        raise BadRecord(path, "has no 'config' object (the resolved config of the run)")
    if not isinstance(record.get("status"), str):
        raise BadRecord(path, "has no 'status'")
    return record


def read_or_none(path: Path) -> dict | None:
    """run.json's record, or None when it is missing or cannot be trusted."""
    try:
        return read_record(path)
    except BadRecord:
        return None


def write_record(path: Any, record: Mapping[str, Any]) -> None:
    """run.json, atomically (a reader never sees half a record)."""
    atomic_write(path, json.dumps(record, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- run.json against metrics.csv


def final_disagreement(record: Mapping[str, Any], rows: int, last: Mapping[str, Any]) -> str | None:
    """Why a finished run's metrics.csv (``rows`` epoch rows, the ``last`` one) disagrees with its
    run.json (epochs_completed, final), or None when they agree."""
    n = record.get("epochs_completed")
    if isinstance(n, int) and rows != n:
        return f"metrics.csv has {rows} epoch row(s), run.json says {n} epoch(s) completed"
    if not rows:
        return "metrics.csv has no epoch rows"
    final = record.get("final") if isinstance(record.get("final"), Mapping) else {}
    for key in runs.FINAL_METRICS:
        want = final.get(key)
        if want is None:
            continue
        try:
            a, b = float(last.get(key)), float(want)
        except (TypeError, ValueError):
            return f"metrics.csv's last {key} is not a number"
        if not (a == b or math.isclose(a, b, rel_tol=FINAL_TOLERANCE) or (math.isnan(a) and math.isnan(b))):
            return f"final {key} in metrics.csv ({a:.6g}) differs from run.json ({b:.6g})"
    return None


def consistent(out_dir: Path, record: dict) -> str | None:
    """Why the folder's metrics.csv disagrees with run.json (None when they agree): final_disagreement."""
    try:
        with (out_dir / METRICS).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error) as err:
        return f"metrics.csv unreadable ({err})"
    return final_disagreement(record, len(rows), rows[-1] if rows else {})


def disagreement(record: dict, df: pd.DataFrame) -> str | None:
    """Why a completed run's metrics.csv (as read_metrics read it) and run.json disagree, or None."""
    if len(df) and not df["epoch"].is_monotonic_increasing:
        return "metrics.csv epochs are out of order (two writers?)"
    return final_disagreement(record, len(df), df.iloc[-1].to_dict() if len(df) else {})


def first_diverged_epoch(df: pd.DataFrame) -> tuple[int | None, str | None]:
    """The first epoch of metrics.csv whose losses runs.diverged rejects, and why; (None, None) if none."""
    import pandas as pd  # the readers alone need pandas (see the module's docstring)

    cols = [c for c in ("train_loss", "test_loss", "val_loss") if c in df.columns]
    for _, row in df.iterrows():
        losses = [float(row[c]) for c in cols if not (c == "val_loss" and pd.isna(row[c]))]
        why = runs.diverged(*losses)
        if why:
            return int(row["epoch"]), why
    return None, None


# ---------------------------------------------------------------- a folder that may already hold a run
_WRITTEN: set[Path] = set()  # run folders this process has recorded (repeated Optuna trials)


def written_here(out_dir: str | os.PathLike) -> None:
    """A run folder recorded for this sweep by this process, or by another (an executor's task) as
    if this process had written it: a sweeper repeating that trial reuses it."""
    _WRITTEN.add(Path(out_dir).resolve())


def existing(out_dir: Path, config: dict, resume: bool) -> dict | None:
    """What to do with a folder that may already hold a run: its record to reuse, or None to train.

    - resume=true and the same run finished there, with metrics.csv agreeing: reuse it;
    - the same run recorded by this very process (a sweeper repeating a trial): reuse it;
    - anything else already there without resume=true: refuse (nothing is silently overwritten);
    - with resume=true, a run of another identity there (another sweep's): refuse, naming a key that differs.
    """
    record = read_or_none(out_dir / RUN_JSON)
    if record is None:
        if (out_dir / RUN_JSON).exists() and not resume:
            raise ConfigError(f"{out_dir}/run.json exists but is unreadable: pass resume=true to redo that run")
        return None
    same = runs.identity(record.get("config") or {}) == runs.identity(config)
    if (
        same
        and out_dir.resolve() in _WRITTEN
        and record.get("status") in runs.FINISHED
        and not consistent(out_dir, record)
    ):
        log.info("%s: this sweep already trained this exact run; its result is reused", out_dir)
        return record
    if not resume:
        raise ConfigError(
            f"{out_dir} already holds a run ({record.get('status')}); refusing to overwrite it: pass resume=true "
            "to continue that sweep, or choose a new hydra.sweep.dir"
        )
    if not same:  # another sweep's run (another seed, a changed key): never replaced by this one
        what = runs.difference(record.get("config") or {}, config)
        raise ConfigError(
            f"{out_dir} holds a {record.get('status')} run of another config ({what}); resume=true "
            "continues only the same runs: choose another hydra.sweep.dir (or delete that folder)"
        )
    if record.get("status") not in runs.FINISHED:
        return None
    problem = consistent(out_dir, record)
    if problem:
        log.warning("resume: %s is %s but %s: redoing it", out_dir, record.get("status"), problem)
        return None
    log.info("resume: %s already %s, skipped", out_dir, record["status"])
    return record


def task_ended(out_dir: Path, config: dict, reason: str) -> dict | None:
    """The record of a run whose executor task ended: as the task left it when it recorded an end
    (failed, interrupted, or finished before the task died); a run it left running is recorded as
    interrupted here, its finished epochs kept. None when the folder holds no record of this run."""
    path = out_dir / RUN_JSON
    record = read_or_none(path)
    if record is None or runs.identity(record["config"]) != runs.identity(config):
        return None
    if record["status"] == runs.RUNNING:
        record.update(status=runs.INTERRUPTED, error=f"its task ended: {reason}")
        write_record(path, record)
    written_here(out_dir)
    return record


# ---------------------------------------------------------------- the per-epoch files, as numbers


def read_metrics(path: Path, finished: bool) -> tuple[pd.DataFrame, str | None]:
    """metrics.csv as numbers, and why it cannot be trusted for a finished run (or None).

    A file cut mid-line: for a finished run that is a disagreement (returned); for an unfinished
    one the partial last line is dropped. Missing columns and non-numbers raise BadRecord.
    """
    from io import StringIO

    import numpy as np
    import pandas as pd

    if not path.exists():
        return pd.DataFrame(columns=REQUIRED_METRICS), ("metrics.csv is missing" if finished else None)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise BadRecord(path, f"cannot be read ({err})") from None
    cut = None
    if text and not text.endswith("\n"):
        cut = "metrics.csv ends mid-line (cut short)"
        if not finished:
            text = text[: text.rfind("\n") + 1] if "\n" in text else ""
    if not text.strip():
        return pd.DataFrame(columns=REQUIRED_METRICS), ("metrics.csv is empty" if finished else None)
    try:
        df = pd.read_csv(StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise BadRecord(path, f"is not a readable CSV: {str(err).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_METRICS if c not in df.columns]
    if missing:
        raise BadRecord(path, f"has no column {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})")
    for col in [*REQUIRED_METRICS, *(c for c in OPTIONAL_METRICS if c in df.columns)]:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise BadRecord(path, f"column {col} holds a non-number ({df[col].iloc[i]!r}) on line {i + 2}")
        df[col] = values
    return df, (cut if finished else None)


def read_diagnostics(path: Path) -> pd.DataFrame:
    """diagnostics.csv as numbers (empty when absent); a missing column or a non-number raises BadRecord."""
    import pandas as pd  # the readers alone need pandas (see the module's docstring)

    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise BadRecord(path, f"is not a readable CSV: {str(err).splitlines()[0]}") from None
    for col in ("epoch", "layer", "grad_norm"):
        if col not in df.columns:
            raise BadRecord(path, f"has no column {col}")
    for col in (c for c in ("epoch", "layer", *runs.LAYER_COLUMNS) if c in df.columns):
        values = pd.to_numeric(df[col], errors="coerce")
        if (values.isna() & df[col].notna()).any():
            raise BadRecord(path, f"column {col} holds a non-number")
        df[col] = values
    return df


def split_legacy_saturation(diag: pd.DataFrame, table: pd.DataFrame, activations: dict[str, dict]) -> pd.DataFrame:
    """diagnostics.csv written before inactive and saturated were told apart (no inactive_frac).

    Its saturated_frac counted every unit whose derivative was below 1 % of the maximum for most
    probe images: off ReLU units and saturated sigmoid units alike. Where the activation's shape
    says which one it can be, the old number is moved to the right column: an activation with an
    exact-zero region and no flat tail (relu, hardswish) -> inactive; one without an exact-zero
    region (sigmoid, tanh, elu...) -> saturated. Where it can be both (relu6) both become NaN.
    """
    import numpy as np  # the readers alone need numpy (see the module's docstring)

    diag = diag.copy()
    diag["inactive_frac"] = np.nan
    kinds: dict[str, str] = {}
    try:
        from hydra.utils import instantiate

        from .diagnostics import shape  # torch: only for a sweep recorded before inactive_frac

        for name, spec in activations.items():
            try:
                s = shape(instantiate(spec["module"]))
            except Exception:  # a user's activation that cannot be built here: leave it unknown
                continue
            kinds[name] = "inactive" if s.has_off and not s.has_tail else "saturated" if not s.has_off else "both"
    except ImportError:
        pass
    act = diag["run"].map(table.set_index("run")["activation"])
    kind = act.map(kinds)
    old = diag["saturated_frac"].copy()
    hidden = diag["saturated_frac"].notna()
    diag.loc[hidden & (kind == "inactive"), "inactive_frac"] = old
    diag.loc[hidden & (kind == "inactive"), "saturated_frac"] = 0.0
    diag.loc[hidden & (kind == "saturated"), "inactive_frac"] = 0.0
    diag.loc[hidden & ~kind.isin(["inactive", "saturated"]), "saturated_frac"] = np.nan
    diag.attrs["legacy"] = True
    return diag


# ---------------------------------------------------------------- the saved predictions


def check_confusion(path: Path) -> str | None:
    """Why a run's confusion.csv cannot be drawn (one line naming the file), or None (also when absent)."""
    if not path.exists():
        return None
    import numpy as np  # the readers alone need numpy and pandas (see the module's docstring)
    import pandas as pd

    try:
        frame = pd.read_csv(path, index_col=0)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        return f"{path}: is not a readable CSV ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    values = frame.apply(pd.to_numeric, errors="coerce")
    if values.shape != (10, 10):
        return f"{path}: holds a {values.shape[0]} x {values.shape[1]} table, not the 10 x 10 confusion matrix"
    if values.isna().to_numpy().any():
        row, col = (int(i[0]) for i in np.nonzero(values.isna().to_numpy()))
        return f"{path}: the cell in row {row + 2}, column {col + 2} is empty or not a number"
    if (values.to_numpy() < 0).any():
        return f"{path}: holds a negative count"
    return None


def check_examples(path: Path) -> str | None:
    """Why a run's examples.npz cannot be drawn (one line naming the file), or None (also when absent)."""
    if not path.exists():
        return None
    import zipfile

    import numpy as np  # the readers alone need numpy (see the module's docstring)

    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, Mapping) and not hasattr(data, "files"):  # a .npy saved under that name
            return f"{path}: is a single array (.npy), not the .npz archive of image, prob and label"
        with data:
            arrays = {k: data[k] for k in ("image", "prob", "label")}
    except KeyError as err:
        return f"{path}: has no array {err}"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        return f"{path}: is not a readable .npz archive (truncated or empty?): {type(err).__name__}: {err}"
    n = len(arrays["label"])
    if arrays["image"].shape[:1] != (n,) or arrays["prob"].shape != (n, 10) or arrays["image"].shape[1:] != (28, 28):
        return (
            f"{path}: arrays of mismatched shapes (image {arrays['image'].shape}, prob {arrays['prob'].shape}, "
            f"label {arrays['label'].shape})"
        )
    return None
