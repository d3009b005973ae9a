"""Sweep folders on disk -> tidy pandas tables, checked before they are trusted.

- Every ``run.json`` below the given folders is one run record. A malformed file (not JSON, not an
  object, no config, a metrics.csv with a missing column or a non-number) costs only its run: it is
  skipped and named in ``Sweep.problems`` as one line ``<file>: <what is wrong>``.
- A run *is* its identity (``runs.identity`` of the resolved config): the same run found twice (the
  same folder twice, the same sweep passed twice, a re-run under another folder name) counts once,
  the finished and latest record winning; ``Sweep.duplicates`` says what was dropped.
- Groups are defined by what differs between the runs' identities (not by labels, not by which keys
  were overrides). An activation ``name`` shared by two different activation configs is an error.
- Each run gets an ``outcome``: ``counted`` (completed, its files agree, its losses pass
  ``runs.diverged``), ``diverged``, ``not_learning`` (completed below NOT_LEARNING_ACC), ``excluded``
  (completed, but metrics.csv disagrees with run.json), ``failed``, ``interrupted`` or ``running``.
  Only counted runs enter a mean.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import runs as R
from ..errors import UserError

ACC_TARGET = 0.97  # "epochs to reach 97 %"
REQUIRED_METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
OPTIONAL_METRICS = [*R.VALIDATION_METRICS, "epoch_seconds"]
COUNTED = "counted"
EXCLUDED = "excluded"
# A completed run whose final test accuracy is below 1.5 x chance (10 classes: 15 %) never learned:
# a network stuck on one digit scores at most 11.35 % (the share of 1s in MNIST's test set; depth 16
# with sigmoid), one that learned anything at all scores far above 15 % after one epoch.
NOT_LEARNING = "not_learning"
NOT_LEARNING_ACC = 0.15


def never_learned(record: Mapping[str, Any]) -> bool:
    acc = (record.get("final") or {}).get("test_acc")
    return isinstance(acc, (int, float)) and math.isfinite(acc) and acc < NOT_LEARNING_ACC


@dataclass
class Sweep:
    runs: pd.DataFrame  # one row per distinct run: run, path, status, outcome, group columns, finals
    results: pd.DataFrame  # one row per run and epoch (tidy long format)
    diagnostics: pd.DataFrame  # one row per run, epoch and layer (may be empty)
    group_cols: list[str]  # what differs between the runs (activation first), seed excluded
    problems: list[str] = field(default_factory=list)  # "<file>: <what>" for every file skipped
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped run, kept run)
    repeated_folders: int = 0  # run folders found more than once (a folder given twice)
    selected_on: str = "test"  # "val" when every counted run recorded val_acc, else "test"
    activations: dict[str, dict] = field(default_factory=dict)  # name -> activation config

    @property
    def setting_cols(self) -> list[str]:
        """The swept keys other than the activation."""
        return self.group_cols[1:]


# ---------------------------------------------------------------- files


def find_run_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise UserError(
                f"{p} does not exist or is not a folder: give a sweep folder, e.g. outputs/sweeps/<date>/<time>"
            )
        dirs += sorted(f.parent for f in p.rglob("run.json"))
    return dirs


def read_metrics(path: Path, finished: bool) -> tuple[pd.DataFrame, str | None]:
    """metrics.csv as numbers, and why it cannot be trusted for a finished run (or None).

    A file cut mid-line: for a finished run that is a disagreement (returned); for an unfinished
    one the partial last line is dropped. Missing columns and non-numbers raise R.BadRecord.
    """
    if not path.exists():
        return pd.DataFrame(columns=REQUIRED_METRICS), ("metrics.csv is missing" if finished else None)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise R.BadRecord(path, f"cannot be read ({err})") from None
    cut = None
    if text and not text.endswith("\n"):
        cut = "metrics.csv ends mid-line (cut short)"
        if not finished:
            text = text[: text.rfind("\n") + 1] if "\n" in text else ""
    if not text.strip():
        return pd.DataFrame(columns=REQUIRED_METRICS), ("metrics.csv is empty" if finished else None)
    from io import StringIO

    try:
        df = pd.read_csv(StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise R.BadRecord(path, f"is not a readable CSV: {str(err).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_METRICS if c not in df.columns]
    if missing:
        raise R.BadRecord(path, f"has no column {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})")
    for col in [*REQUIRED_METRICS, *(c for c in OPTIONAL_METRICS if c in df.columns)]:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise R.BadRecord(path, f"column {col} holds a non-number ({df[col].iloc[i]!r}) on line {i + 2}")
        df[col] = values
    return df, (cut if finished else None)


def read_diagnostics(path: Path) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise R.BadRecord(path, f"is not a readable CSV: {str(err).splitlines()[0]}") from None
    for col in ("epoch", "layer", "grad_norm"):
        if col not in df.columns:
            raise R.BadRecord(path, f"has no column {col}")
    for col in (c for c in ("epoch", "layer", *R.LAYER_COLUMNS) if c in df.columns):
        values = pd.to_numeric(df[col], errors="coerce")
        if (values.isna() & df[col].notna()).any():
            raise R.BadRecord(path, f"column {col} holds a non-number")
        df[col] = values
    return df


def check_confusion(path: Path) -> str | None:
    """Why a run's confusion.csv cannot be drawn (one line naming the file), or None (also when absent)."""
    if not path.exists():
        return None
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


# ---------------------------------------------------------------- identity and groups


def identity_key(config: Mapping[str, Any]) -> str:
    """runs.run_id: a key set to null counts as absent, so that a record written before a new
    (null by default) config key existed matches a re-run of the same config after it."""
    return R.run_id(config)


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


def _activation_name(record: dict) -> str:
    act = record["config"].get("activation")
    name = act.get("name") if isinstance(act, Mapping) else None
    return str(record.get("activation") or name or "?")


def _group_cols(records: list[dict], flats: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """The keys whose values differ between runs (seed aside), activation first; and each run's values."""
    keys = sorted({k for f in flats for k in f} - {"seed"})
    varied = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    varied = [k for k in varied if not k.startswith("activation.")]  # the name stands for them (checked)
    columns = {k: fmt_values([f.get(k) for f in flats]) for k in varied}
    values = [{k: columns[k][i] for k in varied} for i in range(len(flats))]
    # A config group chosen by name (optimizer=sgd): its name, not the keys that come with it.
    for group in sorted({g for r in records for g in (r.get("choices") or {})} - {"activation", "experiment"}):
        names = [str((r.get("choices") or {}).get(group)) for r in records]
        if len(set(names)) < 2 or "None" in names or any(k == group for k in varied):
            continue
        under = [k for k in varied if k.startswith(f"{group}.")]
        implied = [
            k
            for k in under
            if all(len({v[k] for v, n in zip(values, names, strict=True) if n == name}) == 1 for name in set(names))
        ]
        varied = [group, *(k for k in varied if k not in implied)]
        for v, n in zip(values, names, strict=True):
            v[group] = n
    # Keys that were overrides come first, in the order they were given.
    order: list[str] = []
    for r in records:
        for o in r.get("overrides") or []:
            key = str(o).lstrip("+~").partition("=")[0]
            if key in varied and key not in order:
                order.append(key)
    varied = order + [k for k in varied if k not in order]
    return ["activation", *varied], [{k: v[k] for k in varied} for v in values]


def group_label(activation: str, settings: Mapping[str, str]) -> str:
    return ", ".join([activation, *(f"{k}={v}" for k, v in settings.items())])


def _check_shared_names(kept: list[tuple[str, dict]]) -> dict[str, dict]:
    seen: dict[str, tuple[str, str, dict]] = {}
    for name, record in kept:
        act = record["config"].get("activation") or {}
        spec = R.canonical({k: v for k, v in act.items() if k != "name"}) if isinstance(act, Mapping) else {}
        text = json.dumps(spec, sort_keys=True, default=str)
        label = _activation_name(record)
        if label in seen and seen[label][1] != text:
            other_run, other_text, _ = seen[label]
            raise UserError(
                f"activation name '{label}' is shared by two different activation configs: {other_text} "
                f"(in {other_run}) and {text} (in {name}); give one of them another name "
                "(activation.name=...)"
            )
        seen.setdefault(label, (name, text, spec))
    return {label: v[2] for label, v in seen.items()}


def _check_labels(table: list[dict], records: list[dict]) -> None:
    """Two groups that differ (other than in the seed) but print as one label would be pooled
    into one row of every table: an error naming both."""
    seen: dict[str, tuple[str, str]] = {}
    for row, record in zip(table, records, strict=True):
        what = json.dumps(R.without(R.identity(record["config"]), "seed"), sort_keys=True, default=str)
        label = row["group"]
        if label in seen and seen[label][0] != what:
            raise UserError(
                f"runs {seen[label][1]} and {row['run']} are different settings but both print as "
                f"'{label}' (a value that is text in one run and a number in the other?): "
                "rebuild the report from runs whose settings print apart"
            )
        seen.setdefault(label, (what, row["run"]))


# ---------------------------------------------------------------- checks of a finished run


def _disagreement(record: dict, df: pd.DataFrame) -> str | None:
    """Why a completed run's metrics.csv and run.json disagree, or None (runs.final_disagreement)."""
    if len(df) and not df["epoch"].is_monotonic_increasing:
        return "metrics.csv epochs are out of order (two writers?)"
    return R.final_disagreement(record, len(df), df.iloc[-1].to_dict() if len(df) else {})


def _first_diverged_epoch(df: pd.DataFrame) -> tuple[int | None, str | None]:
    cols = [c for c in ("train_loss", "test_loss", "val_loss") if c in df.columns]
    for _, row in df.iterrows():
        losses = [float(row[c]) for c in cols if not (c == "val_loss" and pd.isna(row[c]))]
        why = R.diverged(*losses)
        if why:
            return int(row["epoch"]), why
    return None, None


def _rank(record: dict) -> tuple:
    """Which record of a run found twice to keep: finished first, then the latest."""
    return (record.get("status") in R.FINISHED, str(record.get("finished") or record.get("started") or ""))


# ---------------------------------------------------------------- the sweep


def run_namer(paths: Sequence[str | os.PathLike], run_dirs: Sequence[Path]) -> Callable[[Path], str]:
    """How a run folder is named in the tables: its path below the folder it was found in; with
    several folders, prefixed by as many of that folder's trailing path parts as it takes to tell
    the folders apart (two sweeps both called ``sweep``: ``a/sweep/...`` and ``b/sweep/...``). Every
    run folder gets its own name: runs are told apart by their folder, never by a base name."""
    roots = list(dict.fromkeys(Path(p).resolve() for p in paths))
    prefixes = {root: "" for root in roots}
    if len(roots) > 1:
        for depth in range(1, max(len(r.parts) for r in roots) + 1):
            tails = {root: "/".join(root.parts[-depth:]).lstrip("/") for root in roots}
            prefixes = {root: tail + "/" for root, tail in tails.items()}
            if len(set(tails.values())) == len(roots):
                break

    def base(d: Path) -> str:
        for root in roots:
            if d.is_relative_to(root):
                rel = d.relative_to(root).as_posix()
                if rel == ".":  # a run folder given itself
                    return prefixes[root].rstrip("/") or root.name
                return prefixes[root] + rel
        return d.as_posix()

    names: dict[Path, str] = {}
    taken: dict[str, Path] = {}
    for d in run_dirs:
        label = base(d)
        if label in taken and taken[label] != d:  # a folder given inside another one: its full path
            label = d.as_posix()
        names[d] = label
        taken.setdefault(label, d)
    return lambda d: names.get(d) or base(d)


@dataclass
class _Run:
    """One run on its way into the tables: its folder, record, files and what the report makes of it."""

    folder: Path
    record: dict
    outcome: str
    note: str | None
    diverged_epoch: int | None
    metrics: pd.DataFrame
    diagnostics: pd.DataFrame


def load_sweep(paths: Sequence[str | os.PathLike], strict: bool = False) -> Sweep:
    """Read every run below ``paths`` (sweep folders or run folders): the records (one per
    identity), each run's outcome from its files, then the tables.

    Raises UserError when there is nothing usable (no folder, no runs, every run unreadable) or
    when two activation configs share a name; with ``strict`` also on the first malformed file.
    """
    all_dirs = find_run_dirs(paths)
    if not all_dirs:
        raise UserError(
            f"no runs (run.json files) found in {', '.join(map(str, paths))}: "
            "give a folder written by 'actcompare -m ...'"
        )
    run_dirs = list(dict.fromkeys(d.resolve() for d in all_dirs))
    name = run_namer(paths, run_dirs)
    problems: list[str] = []

    def bad(err: R.BadRecord) -> None:
        if strict:
            raise UserError(str(err))
        problems.append(str(err))

    def nothing_left() -> UserError:
        return UserError(
            f"no readable run in {', '.join(map(str, paths))}: "
            + problems[0]
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )

    kept, duplicates = _records(run_dirs, name, bad)
    if not kept:
        raise nothing_left()
    activations = _check_shared_names([(name(d), r) for d, r in kept])
    found = [run for d, record in kept if (run := _outcome(d, record, bad)) is not None]
    if not found:
        raise nothing_left()
    runs, results, diagnostics, group_cols = _tables(found, name)
    if len(diagnostics) and "inactive_frac" not in diagnostics.columns and "saturated_frac" in diagnostics.columns:
        diagnostics = split_legacy_saturation(diagnostics, runs, activations)
    selected_on = _per_run_metrics(runs, results)
    return Sweep(
        runs=runs,
        results=results,
        diagnostics=diagnostics,
        group_cols=group_cols,
        problems=problems,
        duplicates=duplicates,
        repeated_folders=len(all_dirs) - len(run_dirs),
        selected_on=selected_on,
        activations=activations,
    )


def _records(
    run_dirs: list[Path], name: Callable[[Path], str], bad: Callable[[R.BadRecord], None]
) -> tuple[list[tuple[Path, dict]], list[tuple[str, str]]]:
    """run.json of every folder, one record per identity (the finished and latest wins), in
    folder order; and (dropped, kept) names of the duplicates."""
    by_id: dict[str, list[tuple[Path, dict]]] = {}
    for d in run_dirs:
        try:
            record = R.read_record(d / "run.json")
        except R.BadRecord as err:
            bad(err)
            continue
        by_id.setdefault(identity_key(record["config"]), []).append((d, record))
    duplicates: list[tuple[str, str]] = []
    kept: list[tuple[Path, dict]] = []
    for found in by_id.values():
        found.sort(key=lambda dr: (_rank(dr[1]), str(dr[0])), reverse=True)
        kept.append(found[0])
        duplicates += [(name(d), name(found[0][0])) for d, _ in found[1:]]
    kept.sort(key=lambda dr: str(dr[0]))
    return kept, duplicates


def _outcome(d: Path, record: dict, bad: Callable[[R.BadRecord], None]) -> _Run | None:
    """A run's files and what the report makes of it (counted, excluded, diverged, not learning,
    or its recorded status); None when its metrics.csv is malformed (a malformed diagnostics.csv
    costs only its plot)."""
    status = record["status"]
    try:
        metrics, disagree = read_metrics(d / "metrics.csv", status in R.FINISHED)
    except R.BadRecord as err:
        bad(err)
        return None
    try:
        diag = read_diagnostics(d / "diagnostics.csv")
    except R.BadRecord as err:
        bad(err)
        diag = pd.DataFrame()
    outcome, note = status, record.get("error")
    diverged_epoch = record.get("diverged_epoch")
    if status == R.COMPLETED:
        disagree = disagree or _disagreement(record, metrics)
        epoch, why = _first_diverged_epoch(metrics)
        if disagree:
            outcome, note = EXCLUDED, disagree
        elif why:
            outcome, note, diverged_epoch = R.DIVERGED, f"recorded completed, but {why}", epoch
        elif never_learned(record):
            outcome, note = (
                NOT_LEARNING,
                (
                    f"final test accuracy {record['final']['test_acc']:.2%}, below "
                    f"{NOT_LEARNING_ACC:.0%}: it never learned (e.g. one class always)"
                ),
            )
        else:
            outcome = COUNTED
    elif status == R.DIVERGED and disagree:
        note = f"{note + '; ' if note else ''}{disagree}"
    return _Run(d, record, outcome, note, diverged_epoch, metrics, diag)


def _tables(
    found: list[_Run], name: Callable[[Path], str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """runs (one row per run), results and diagnostics (tidy, with the group columns), group_cols."""
    records = [r.record for r in found]
    group_cols, settings = _group_cols(records, [R.flatten(R.identity(r["config"])) for r in records])
    table, metric_frames, diag_frames = [], [], []
    for run, setting in zip(found, settings, strict=True):
        record, act = run.record, _activation_name(run.record)
        seed = record.get("seed", record["config"].get("seed"))
        table.append(
            {
                "run": name(run.folder),
                "path": str(run.folder),
                "status": record["status"],
                "outcome": run.outcome,
                "activation": act,
                **setting,
                "group": group_label(act, setting),
                "seed": seed,
                "epochs_completed": record.get("epochs_completed", len(run.metrics)),
                "diverged_epoch": run.diverged_epoch,
                "note": run.note,
                "wall_seconds": record.get("wall_seconds"),
                "git_commit": record.get("git_commit"),
                "torch": record.get("torch"),
                "device": record.get("device"),
                "run_id": identity_key(record["config"]),
            }
        )
        for frames, df in ((metric_frames, run.metrics), (diag_frames, run.diagnostics)):
            if len(df):
                df = df.copy()
                df.insert(0, "run", table[-1]["run"])
                df.insert(1, "status", record["status"])
                df.insert(2, "outcome", run.outcome)
                for k, v in setting.items():
                    df[k] = v
                df["group"] = table[-1]["group"]
                frames.append(df)
    _check_labels(table, records)
    results = pd.concat(metric_frames, ignore_index=True) if metric_frames else pd.DataFrame()
    diagnostics = pd.concat(diag_frames, ignore_index=True) if diag_frames else pd.DataFrame()
    return pd.DataFrame(table), results, diagnostics, group_cols


def _per_run_metrics(runs: pd.DataFrame, results: pd.DataFrame) -> str:
    """Add final_*, best_epoch, selected_test_acc, epochs_to_97, epoch_seconds to ``runs``.

    Model selection (the best epoch, the first epoch at 97 %) uses val_acc when every counted run
    recorded one; then selected_test_acc is the test accuracy of the epoch chosen on validation.
    Without a validation split they are chosen on test accuracy itself (optimistic). Returns "val"
    or "test".
    """
    for col in (
        "final_train_loss",
        "final_test_loss",
        "final_test_acc",
        "final_val_acc",
        "best_epoch",
        "selected_test_acc",
        "epochs_to_97",
        "epoch_seconds",
    ):
        runs[col] = np.nan
    if results.empty:
        return "test"
    counted = set(runs.loc[runs["outcome"] == COUNTED, "run"])
    has_val = (
        "val_acc" in results
        and bool(counted)
        and all(results.loc[results["run"] == r, "val_acc"].notna().all() for r in counted)
    )
    key = "val_acc" if has_val else "test_acc"
    for i, run in runs["run"].items():
        df = results[results["run"] == run].sort_values("epoch")
        if df.empty:
            continue
        last = df.iloc[-1]
        runs.loc[i, ["final_train_loss", "final_test_loss", "final_test_acc"]] = [
            last["train_loss"],
            last["test_loss"],
            last["test_acc"],
        ]
        if "val_acc" in df:
            runs.loc[i, "final_val_acc"] = last["val_acc"]
        score = df[key]
        if score.notna().any():
            best = df.loc[score.idxmax()]
            runs.loc[i, ["best_epoch", "selected_test_acc"]] = [best["epoch"], best["test_acc"]]
            reached = df.loc[score >= ACC_TARGET, "epoch"]
            runs.loc[i, "epochs_to_97"] = reached.min() if len(reached) else np.nan
        if "epoch_seconds" in df:
            runs.loc[i, "epoch_seconds"] = df["epoch_seconds"].mean()
    return "val" if has_val else "test"


def split_legacy_saturation(diag: pd.DataFrame, runs: pd.DataFrame, activations: dict[str, dict]) -> pd.DataFrame:
    """diagnostics.csv written before inactive and saturated were told apart (no inactive_frac).

    Its saturated_frac counted every unit whose derivative was below 1 % of the maximum for most
    probe images: off ReLU units and saturated sigmoid units alike. Where the activation's shape
    says which one it can be, the old number is moved to the right column: an activation with an
    exact-zero region and no flat tail (relu, hardswish) -> inactive; one without an exact-zero
    region (sigmoid, tanh, elu...) -> saturated. Where it can be both (relu6) both become NaN.
    """
    diag = diag.copy()
    diag["inactive_frac"] = np.nan
    kinds: dict[str, str] = {}
    try:
        from hydra.utils import instantiate

        from ..diagnostics import shape

        for name, spec in activations.items():
            try:
                s = shape(instantiate(spec["module"]))
            except Exception:  # a user's activation that cannot be built here: leave it unknown
                continue
            kinds[name] = "inactive" if s.has_off and not s.has_tail else "saturated" if not s.has_off else "both"
    except ImportError:
        pass
    act = diag["run"].map(runs.set_index("run")["activation"])
    kind = act.map(kinds)
    old = diag["saturated_frac"].copy()
    hidden = diag["saturated_frac"].notna()
    diag.loc[hidden & (kind == "inactive"), "inactive_frac"] = old
    diag.loc[hidden & (kind == "inactive"), "saturated_frac"] = 0.0
    diag.loc[hidden & (kind == "saturated"), "inactive_frac"] = 0.0
    diag.loc[hidden & ~kind.isin(["inactive", "saturated"]), "saturated_frac"] = np.nan
    diag.attrs["legacy"] = True
    return diag


def failed_runs(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(run, error or status) for every run below ``paths`` that failed, was interrupted or is
    still marked running, and for every run whose run.json cannot be read. Never raises."""
    try:
        all_dirs = find_run_dirs(paths)
    except UserError:
        return []
    name = run_namer(paths, list(dict.fromkeys(d.resolve() for d in all_dirs)))
    by_id: dict[str, tuple[Path, dict]] = {}
    out: list[tuple[str, str]] = []
    for d in dict.fromkeys(d.resolve() for d in all_dirs):
        try:
            record = R.read_record(d / "run.json")
        except R.BadRecord as err:
            out.append((name(d), str(err)))
            continue
        key = identity_key(record["config"])
        if key not in by_id or (_rank(record), str(d)) > (_rank(by_id[key][1]), str(by_id[key][0])):
            by_id[key] = (d, record)
    for d, record in sorted(by_id.values(), key=lambda dr: str(dr[0])):
        if record["status"] in R.UNFINISHED or record["status"] not in R.STATUSES:
            out.append((name(d), str(record.get("error") or record["status"])))
    return out
