"""Sweep folders on disk -> tidy pandas tables, checked before they are trusted.

One run folder's files are read and checked by ``actcompare.record``; this module assembles the
runs of one or more sweeps:

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

from .. import record as run_folder
from .. import runs as R
from ..errors import UserError

ACC_TARGET = 0.97  # "epochs to reach 97 %"
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
    # What the runs declared for their report (report.margin in points, report.baseline or None):
    # {"margin": {value: [runs]}, "baseline": {value: [runs]}}; a run recorded before report.* existed
    # declared the defaults (margin 0.3, baseline null). build.judge() reads it.
    declared: dict[str, dict[Any, list[str]]] = field(default_factory=dict)

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


# ---------------------------------------------------------------- identity and groups


def _activation_name(record: dict) -> str:
    act = record["config"].get("activation")
    name = act.get("name") if isinstance(act, Mapping) else None
    return str(record.get("activation") or name or "?")


def _group_cols(records: list[dict], flats: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """The keys whose values differ between runs (seed aside), activation first; and each run's values."""
    keys = sorted({k for f in flats for k in f} - {"seed"})
    varied = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    varied = [k for k in varied if not k.startswith("activation.")]  # the name stands for them (checked)
    columns = {k: R.fmt_values([f.get(k) for f in flats]) for k in varied}
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

    def bad(err: run_folder.BadRecord) -> None:
        if strict:
            raise UserError(str(err))
        problems.append(str(err))

    def nothing_left() -> UserError:
        return UserError(
            f"no readable run in {', '.join(map(str, paths))}: "
            + problems[0]
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )

    readable = []  # (folder, record) of every run.json that can be read: read once, used twice below
    for d in run_dirs:
        try:
            readable.append((d, run_folder.read_record(d / run_folder.RUN_JSON)))
        except run_folder.BadRecord as err:
            bad(err)
    kept, duplicates = _records(readable, name)
    if not kept:
        raise nothing_left()
    activations = _check_shared_names([(name(d), r) for d, r in kept])
    found = [run for d, record in kept if (run := _outcome(d, record, bad)) is not None]
    if not found:
        raise nothing_left()
    runs, results, diagnostics, group_cols = _tables(found, name)
    if len(diagnostics) and "inactive_frac" not in diagnostics.columns and "saturated_frac" in diagnostics.columns:
        diagnostics = run_folder.split_legacy_saturation(diagnostics, runs, activations)
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
        declared=declared_report(readable, name),
    )


def declared_report(readable: list[tuple[Path, dict]], name: Callable[[Path], str]) -> dict[str, dict[Any, list[str]]]:
    """report.margin (points) and report.baseline as each run's resolved config holds them:
    {"margin": {0.3: [run names]}, "baseline": {None: [...]}} (absent: the schema's defaults).
    Every readable record counts, a duplicate too (the same run in two sweeps that declared
    different margins is still two declarations)."""
    out: dict[str, dict[Any, list[str]]] = {"margin": {}, "baseline": {}}
    for d, record in readable:
        report = record["config"].get("report")
        report = report if isinstance(report, Mapping) else {}
        margin = report.get("margin", DECLARED_DEFAULTS["margin"])
        margin = float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else margin
        baseline = report.get("baseline", DECLARED_DEFAULTS["baseline"])
        out["margin"].setdefault(margin, []).append(name(d))
        out["baseline"].setdefault(baseline, []).append(name(d))
    return out


DECLARED_DEFAULTS = {"margin": 0.3, "baseline": None}  # schema.ReportConf's: what a run without report.* had


def _records(
    readable: list[tuple[Path, dict]], name: Callable[[Path], str]
) -> tuple[list[tuple[Path, dict]], list[tuple[str, str]]]:
    """One record per identity (the finished and latest wins), in folder order; and (dropped, kept)
    names of the duplicates."""
    by_id: dict[str, list[tuple[Path, dict]]] = {}
    for d, record in readable:
        by_id.setdefault(R.run_id(record["config"]), []).append((d, record))
    duplicates: list[tuple[str, str]] = []
    kept: list[tuple[Path, dict]] = []
    for found in by_id.values():
        found.sort(key=lambda dr: (_rank(dr[1]), str(dr[0])), reverse=True)
        kept.append(found[0])
        duplicates += [(name(d), name(found[0][0])) for d, _ in found[1:]]
    kept.sort(key=lambda dr: str(dr[0]))
    return kept, duplicates


def _outcome(d: Path, record: dict, bad: Callable[[run_folder.BadRecord], None]) -> _Run | None:
    """A run's files and what the report makes of it (counted, excluded, diverged, not learning,
    or its recorded status); None when its metrics.csv is malformed (a malformed diagnostics.csv
    costs only its plot)."""
    status = record["status"]
    try:
        metrics, disagree = run_folder.read_metrics(d / run_folder.METRICS, status in R.FINISHED)
    except run_folder.BadRecord as err:
        bad(err)
        return None
    try:
        diag = run_folder.read_diagnostics(d / run_folder.DIAGNOSTICS)
    except run_folder.BadRecord as err:
        bad(err)
        diag = pd.DataFrame()
    outcome, note = status, record.get("error")
    diverged_epoch = record.get("diverged_epoch")
    if status == R.COMPLETED:
        disagree = disagree or run_folder.disagreement(record, metrics)
        epoch, why = run_folder.first_diverged_epoch(metrics)
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
                "run_id": R.run_id(record["config"]),
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
            record = run_folder.read_record(d / run_folder.RUN_JSON)
        except run_folder.BadRecord as err:
            out.append((name(d), str(err)))
            continue
        key = R.run_id(record["config"])
        if key not in by_id or (_rank(record), str(d)) > (_rank(by_id[key][1]), str(by_id[key][0])):
            by_id[key] = (d, record)
    for d, record in sorted(by_id.values(), key=lambda dr: str(dr[0])):
        if record["status"] in R.UNFINISHED or record["status"] not in R.STATUSES:
            out.append((name(d), str(record.get("error") or record["status"])))
    return out
