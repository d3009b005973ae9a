"""build_report: every table, figure and report.md of a sweep, written atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..files import atomic_path, atomic_write
from ..record import check_confusion, check_examples
from . import figures as F
from .facts import read_facts
from .load import COUNTED, load_sweep
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
    pdf: bool = False,
) -> dict[str, Path]:
    """Write results.csv, runs.csv, summary.csv, comparisons.csv, figures (PNG; with ``pdf`` a PDF
    beside each) and report.md for the runs below ``paths``; return {name: path} of what was written
    (key "report": report.md).

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
    margin, baseline, sources = judge(sweep, margin, baseline)  # before anything is written
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
            margin,
            warn=warn,
            pdf=pdf,
            sources=sources,
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


def judge(sweep, margin: float | None, baseline: str | None) -> tuple[float, str | None, dict[str, str]]:
    """The margin (fraction) and baseline a report uses, and where each came from, in words.

    The runs' own report.margin / report.baseline (``sweep.declared``), unless given explicitly
    (--margin / --baseline; ``margin`` a fraction): a rebuild judges a sweep as it was declared.
    Runs that declared different values (sweeps merged) are refused, in one line naming the values
    and the fix, unless the value is given explicitly. Returns (margin, baseline, sources) with
    sources = {"margin_source": ..., "baseline_source": ...} for summary.attrs (report.md prints them).
    """
    declared = sweep.declared or {"margin": {}, "baseline": {}}

    def one(key: str, flag: str, show) -> tuple[Any, str]:
        values = declared.get(key) or {}
        if len(values) > 1:
            both = " and ".join(
                f"{show(v)} ({runs[0]}{f' and {len(runs) - 1} more' if len(runs) > 1 else ''})"
                for v, runs in values.items()
            )
            raise UserError(
                f"these runs declared different report.{key} values: {both}; a merged report needs one: "
                f"pass {flag} explicitly"
            )
        return next(iter(values), None), show(next(iter(values))) if values else ""

    out: dict[str, str] = {}
    if margin is None:
        points, shown = one("margin", "--margin POINTS", lambda v: f"±{float(v):.2f}")
        margin = DEFAULT_MARGIN if points is None else float(points) / 100
        out["margin_source"] = "declared by the runs" if shown else "default"
    else:
        values = declared.get("margin") or {}
        was = ", ".join(f"±{float(v):.2f}" for v in values)
        out["margin_source"] = (
            "declared by the runs"
            if len(values) == 1 and abs(float(next(iter(values))) / 100 - margin) < 1e-12
            else f"--margin (the runs declared {was})"
            if was
            else "--margin"
        )
    if baseline is None:
        baseline, shown = one(
            "baseline", "--baseline NAME", lambda v: "none (relu when present, else the first)" if v is None else str(v)
        )
        out["baseline_source"] = (
            "declared by the runs" if baseline is not None else "default (relu when present, else the first)"
        )
    else:
        values = declared.get("baseline") or {}
        was = ", ".join("none" if v is None else str(v) for v in values)
        out["baseline_source"] = (
            "declared by the runs"
            if list(values) == [baseline]
            else f"--baseline (the runs declared {was})"
            if was
            else "--baseline"
        )
    return margin, baseline, out


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
    pdf: bool = False,
    sources: dict[str, str] | None = None,
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
    summary = summarize(sweep, baseline, all_pairs, margin) if len(sweep.results) else pd.DataFrame()
    summary.attrs.update(sources or {})  # margin_source, baseline_source: where margin and baseline came from
    best = None
    if len(summary):
        csv(summary, "summary.csv", index=True)
        csv(summary.attrs["comparisons"], "comparisons.csv")
        best = best_settings(sweep, summary, summary.attrs["baseline"], all_pairs, margin)
        if best is not None:
            csv(best, "best_settings.csv", index=True)
    figures = _draw_figures(sweep, summary, out, pdf, warn)
    for _, file, _, has_pdf in figures:
        written[file] = out / file
        if has_pdf:
            written[Path(file).with_suffix(f".{F.VECTOR}").name] = (out / file).with_suffix(f".{F.VECTOR}")
    facts = read_facts(list(sweep.runs["path"]), paths)
    atomic_write(out / "report.md", render(sweep, paths, summary, best, figures, facts, all_pairs))
    written["report"] = out / "report.md"
    return written


def _draw_figures(
    sweep, summary: pd.DataFrame, out: Path, pdf: bool, warn: Callable[[str], None]
) -> list[tuple[str, str, str, bool]]:
    """Draw every figure the runs allow; return report.md's list: (title, file, kind, has_pdf), kind
    "decision" (what a verdict rests on), "curves" or "appendix"."""
    figures: list[tuple[str, str, str, bool]] = []

    def fig(title: str, file: str, kind: str, paths_: list[Path]) -> None:
        if paths_:
            figures.append((title, file, kind, any(p.suffix == f".{F.VECTOR}" for p in paths_)))

    comp = summary.attrs.get("comparisons", ()) if len(summary) else ()
    if len(comp):  # the headline figure first
        margin = F.margin_of(summary)
        forest = F.plot_forest(sweep, comp, margin, out / "forest.png", pdf=pdf)
        fig("Paired differences to the baseline", "forest.png", "decision", forest)
        diffs = F.plot_diff_curves(sweep, comp, out / "diff_curves.png", margin, pdf=pdf)
        fig("Difference from the baseline per epoch", "diff_curves.png", "decision", diffs)
    if len(sweep.results):
        for metric, ylabel, file, log_scale in F.CURVES:
            kind = "decision" if file == "test_accuracy.png" else "curves"
            drawn = F.plot_curves(sweep, metric, ylabel, out / file, log_scale, pdf=pdf)
            fig(ylabel.split(" (")[0].capitalize(), file, kind, drawn)
    if len(summary) and summary["final_test_acc_mean"].notna().any():
        for key in sweep.setting_cols:
            file = f"accuracy_vs_{key.replace('.', '_')}.png"
            fig(
                f"Final test accuracy against {key}",
                file,
                "curves",
                F.plot_vs_key(sweep, summary, key, out / file, pdf),
            )
    if len(sweep.diagnostics) and "outcome" in sweep.diagnostics:
        fig("Diagnostics", "diagnostics.png", "appendix", F.plot_diagnostics(sweep, out / "diagnostics.png", pdf))
    readable, unreadable = _readable(sweep, warn)
    fig("Confusion matrices", "confusion.png", "appendix", F.plot_confusion(readable, out / "confusion.png", pdf=pdf))
    counted = sweep.runs["outcome"] == COUNTED
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
                "appendix",
                F.plot_examples(Path(top["path"]), str(top["run"]), out / "examples.png", pdf),
            )
    modules = {n: a["module"] for n, a in sweep.activations.items() if isinstance(a, dict) and a.get("module")}
    if modules:
        try:
            shapes = F.activation_shapes(modules, out / "activations.png", pdf)
            fig("Activation functions and their derivatives", "activations.png", "appendix", shapes)
        except Exception as err:  # a user's activation may not be importable here
            log.info("activations.png skipped: %s", err)
    return figures


def _readable(sweep, warn: Callable[[str], None]) -> tuple:
    """(the sweep as the confusion figure should read it, {(run path, file): problem}): a malformed
    confusion.csv or examples.npz is one line naming it, and its figure goes on without it."""
    unreadable = {}
    for path in sweep.runs["path"]:
        for file, check in (("confusion.csv", check_confusion), ("examples.npz", check_examples)):
            problem = check(Path(path) / file)
            if problem:
                unreadable[(path, file)] = problem
                warn(f"{problem}; left out of {file.split('.')[0]}.png")
    if not any(file == "confusion.csv" for _, file in unreadable):
        return sweep, unreadable
    runs = sweep.runs.copy()
    bad = runs["path"].map(lambda p: (p, "confusion.csv") in unreadable)
    runs.loc[bad, "path"] = runs.loc[bad, "path"].map(lambda p: str(Path(p) / "unreadable-confusion"))
    return dataclasses.replace(sweep, runs=runs), unreadable  # the figure finds no confusion.csv for them
