"""build_report: every table, figure and report.md of a sweep, written atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..files import atomic_path, atomic_write
from . import figures as F
from .facts import read_facts
from .load import COUNTED, check_confusion, check_examples, load_sweep
from .markdown import render
from .stats import best_settings, summarize
from .verdicts import DEFAULT_MARGIN

log = logging.getLogger("actcompare.report")


def build_report(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    missing_ok: bool = False,
    *,
    baseline: str | None = None,
    all_pairs: bool = False,
    margin: float | None = None,
    warn: Callable[[str], None] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write results.csv, runs.csv, summary.csv, comparisons.csv, figures (PNG + PDF) and report.md
    for the runs below ``paths``; return {name: path} of what was written (key "report": report.md).

    ``out`` defaults to the (first) folder. With ``missing_ok``, {} when there are no runs. A
    malformed file skips its run (or its figure) and is passed to ``warn`` (default: a logged
    warning) as one line naming the file; UserError (one line) when nothing can be reported.

    A report never writes into its inputs and a folder holds one report: ``out`` may not be (or lie
    in) a run folder; it is a sweep folder given as input (the sweep's own report), or a folder
    that is new, empty or holds an earlier report only (``MANIFEST`` lists a report's files). The
    earlier report's files that this one does not write again are removed.
    """
    import matplotlib

    matplotlib.use("Agg")
    warn = warn or log.warning
    out = out if out is not None else out_dir
    target = Path(out) if out is not None else Path(paths[0])
    previous = check_out(target, paths)  # before anything is read: a refused folder costs nothing
    try:
        sweep = load_sweep(paths)
    except UserError as err:
        if missing_ok and ("no runs" in str(err) or "does not exist" in str(err)):
            return {}
        raise
    for problem in sweep.problems:
        warn(f"{problem}; that run is left out of the report")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the report folder {target}: {err.strerror or err}") from None
    try:
        written = _write(
            sweep,
            [str(p) for p in paths],
            target,
            baseline,
            all_pairs,
            DEFAULT_MARGIN if margin is None else margin,
            warn=warn,
        )
        mine = {p.name for p in written.values()}
        for name in previous - mine - {MANIFEST}:  # the earlier report's files that this one did not write
            (target / name).unlink(missing_ok=True)
        atomic_write(target / MANIFEST, json.dumps(sorted(mine), indent=1) + "\n")
        return written
    except OSError as err:
        raise UserError(
            f"cannot write the report in {target}: {err.strerror or err}"
            + (f" ({err.filename})" if err.filename else "")
        ) from None


MANIFEST = ".actcompare-report.json"  # the files a report wrote into its folder
# A report folder written before MANIFEST existed: the files a report writes at its top level.
REPORT_FILE = re.compile(
    r"^(results|runs|summary|comparisons|best_settings|diagnostics)\.csv$|^report\.md$|"
    r"\.(png|pdf|svg)$"
)
# A sweep folder's own files beside its runs (Hydra, the lock, seeds=auto's plan, Optuna's result).
SWEEP_FILES = ("multirun.yaml", ".actcompare.lock", "seed_plan.json", "optimization_results.yaml")


def _run_folder(folder: Path) -> Path | None:
    """The run folder that ``folder`` is or lies in (it or a parent holds run.json), or None."""
    folder = folder.resolve()
    return next((p for p in (folder, *folder.parents) if (p / "run.json").is_file()), None)


def check_out(out: Path, paths: Sequence[str | os.PathLike]) -> set[str]:
    """Refuse a report folder that would mix the report with anything else; return the names of an
    earlier report's files there (to be replaced)."""
    run = _run_folder(out)
    if run is not None:
        raise UserError(
            f"{out} is a run folder ({run / 'run.json'}): a report never writes into the runs it reads; "
            "give another folder with --out"
        )
    if not out.is_dir():
        return set()
    entries = {p.name: p for p in out.iterdir()}
    earlier: set[str] = set()
    if (out / MANIFEST).is_file():
        try:
            listed = json.loads((out / MANIFEST).read_text())
            earlier = {str(n) for n in listed if "/" not in str(n)} if isinstance(listed, list) else set()
        except (OSError, ValueError):
            earlier = set()
    inputs = {Path(p).resolve() for p in paths}
    own_sweep = out.resolve() in inputs  # the sweep's own report, beside its runs
    if not earlier and ("report.md" in entries or own_sweep):  # a report written before the manifest
        earlier = {n for n, p in entries.items() if p.is_file() and REPORT_FILE.search(n)}
    for name, path in sorted(entries.items()):
        if name in earlier or name == MANIFEST or (name.startswith(".") and name.endswith(".tmp")):
            continue
        if own_sweep and (name in SWEEP_FILES or path.is_dir()):
            continue
        raise UserError(
            f"{out} already holds {name}, which is not part of an earlier report: a report folder holds "
            "one report only; give a new or empty folder with --out"
        )
    return earlier


def _write(
    sweep,
    paths: list[str],
    out: Path,
    baseline: str | None,
    all_pairs: bool,
    margin: float,
    warn: Callable[[str], None] = log.warning,
) -> dict[str, Path]:
    written: dict[str, Path] = {}

    def csv(df: pd.DataFrame, name: str, index: bool = False) -> None:
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=index)
        written[name] = out / name

    csv(sweep.results, "results.csv")
    csv(sweep.runs.drop(columns=["path"]), "runs.csv")
    if len(sweep.diagnostics):
        csv(sweep.diagnostics, "diagnostics.csv")
    counted = sweep.runs["outcome"] == COUNTED
    summary = summarize(sweep, baseline, all_pairs, margin) if len(sweep.results) else pd.DataFrame()
    best = None
    if len(summary):
        csv(summary, "summary.csv", index=True)
        csv(summary.attrs["comparisons"], "comparisons.csv")
        best = best_settings(sweep, summary, summary.attrs["baseline"], all_pairs, margin)
        if best is not None:
            csv(best, "best_settings.csv", index=True)
    order = list(summary.index) if len(summary) else sorted(sweep.runs["group"].unique())

    figures: list[tuple[str, str]] = []

    def fig(title: str, file: str, paths_: list[Path]) -> None:
        if paths_:
            figures.append((title, file))
            for p in paths_:
                written[p.name] = p

    if len(summary) and len(summary.attrs.get("comparisons", ())):  # the headline figure first
        comp, margin = summary.attrs["comparisons"], F.margin_of(summary)
        fig("Paired differences to the baseline", "forest.png", F.plot_forest(sweep, comp, margin, out / "forest.png"))
        fig(
            "Difference from the baseline per epoch",
            "diff_curves.png",
            F.plot_diff_curves(sweep, comp, out / "diff_curves.png", margin),
        )
    if len(sweep.results):
        for metric, ylabel, file, log_scale in F.CURVES:
            fig(ylabel.split(" (")[0].capitalize(), file, F.plot_curves(sweep, metric, ylabel, out / file, log_scale))
    if len(summary) and summary["final_test_acc_mean"].notna().any():
        for key in sweep.setting_cols:
            file = f"accuracy_vs_{key.replace('.', '_')}.png"
            fig(f"Final test accuracy against {key}", file, F.plot_vs_key(sweep, summary, key, out / file))
    if len(sweep.diagnostics) and "outcome" in sweep.diagnostics:
        fig("Diagnostics", "diagnostics.png", F.plot_diagnostics(sweep, out / "diagnostics.png"))
    # A malformed confusion.csv or examples.npz: one line naming it, and the figure goes on without it.
    unreadable = {}
    for path in sweep.runs["path"]:
        for file, check in (("confusion.csv", check_confusion), ("examples.npz", check_examples)):
            problem = check(Path(path) / file)
            if problem:
                unreadable[(path, file)] = problem
                warn(f"{problem}; left out of {file.split('.')[0]}.png")
    readable = sweep
    if any(file == "confusion.csv" for _, file in unreadable):
        runs = sweep.runs.copy()
        bad = runs["path"].map(lambda p: (p, "confusion.csv") in unreadable)
        runs.loc[bad, "path"] = runs.loc[bad, "path"].map(lambda p: str(Path(p) / "unreadable-confusion"))
        readable = dataclasses.replace(sweep, runs=runs)  # the figure finds no confusion.csv for them
    fig("Confusion matrices", "confusion.png", F.plot_confusion(readable, out / "confusion.png", order))
    if counted.any() and len(summary):
        base = summary.attrs["baseline"]
        ok = ~sweep.runs["path"].map(lambda p: (p, "examples.npz") in unreadable)
        pool = sweep.runs[counted & ok & (sweep.runs["activation"] == base)]
        pool = pool if len(pool) else sweep.runs[counted & ok]
        if len(pool):
            top = pool.sort_values(["group", "seed"]).iloc[0]
            fig(
                f"Predictions of {top['run']} (a {base} run, not selected on accuracy)",
                "examples.png",
                F.plot_examples(Path(top["path"]), str(top["run"]), out / "examples.png"),
            )
    modules = {n: a["module"] for n, a in sweep.activations.items() if isinstance(a, dict) and a.get("module")}
    if modules:
        try:
            F.plot_activation_shapes(modules, out / "activations.png")
            fig(
                "Activation functions and their derivatives",
                "activations.png",
                [out / "activations.png", out / f"activations.{F.VECTOR}"],
            )
        except Exception as err:  # a user's activation may not be importable here
            log.info("activations.png skipped: %s", err)
    facts = read_facts(list(sweep.runs["path"]), paths)
    atomic_write(out / "report.md", render(sweep, paths, summary, best, figures, facts, all_pairs))
    written["report"] = out / "report.md"
    return written
