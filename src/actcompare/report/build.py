"""build_report: every table, figure and report.md of a sweep, written atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..files import atomic_path, atomic_write
from . import figures as F
from .load import COUNTED, load_sweep
from .markdown import render
from .stats import best_settings, summarize

log = logging.getLogger("actcompare.report")


def build_report(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    missing_ok: bool = False,
    *,
    baseline: str | None = None,
    all_pairs: bool = False,
    warn: Callable[[str], None] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write results.csv, runs.csv, summary.csv, comparisons.csv, figures (PNG + PDF) and report.md
    for the runs below ``paths``; return {name: path} of what was written (key "report": report.md).

    ``out`` defaults to the (first) folder. With ``missing_ok``, {} when there are no runs. A
    malformed file skips its run and is passed to ``warn`` (default: a logged warning) as one line
    naming the file; UserError (one line) when nothing can be reported.
    """
    import matplotlib

    matplotlib.use("Agg")
    warn = warn or log.warning
    out = out if out is not None else out_dir
    try:
        sweep = load_sweep(paths)
    except UserError as err:
        if missing_ok and ("no runs" in str(err) or "does not exist" in str(err)):
            return {}
        raise
    for problem in sweep.problems:
        warn(f"{problem}; that run is left out of the report")
    target = Path(out) if out is not None else Path(paths[0])
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the report folder {target}: {err.strerror or err}") from None
    try:
        return _write(sweep, [str(p) for p in paths], target, baseline, all_pairs)
    except OSError as err:
        raise UserError(f"cannot write the report in {target}: {err.strerror or err}"
                        + (f" ({err.filename})" if err.filename else "")) from None  # fmt: skip


def _write(sweep, paths: list[str], out: Path, baseline: str | None, all_pairs: bool) -> dict[str, Path]:
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
    summary = summarize(sweep, baseline, all_pairs) if len(sweep.results) else pd.DataFrame()
    best = None
    if len(summary):
        csv(summary, "summary.csv", index=True)
        csv(summary.attrs["comparisons"], "comparisons.csv")
        best = best_settings(sweep, summary, summary.attrs["baseline"], all_pairs)
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
        fig("Difference from the baseline per epoch", "diff_curves.png",
            F.plot_diff_curves(sweep, comp, out / "diff_curves.png", margin))  # fmt: skip
    if len(sweep.results):
        for metric, ylabel, file, log_scale in F.CURVES:
            fig(ylabel.split(" (")[0].capitalize(), file, F.plot_curves(sweep, metric, ylabel, out / file, log_scale))
    if len(summary) and summary["final_test_acc_mean"].notna().any():
        for key in sweep.setting_cols:
            file = f"accuracy_vs_{key.replace('.', '_')}.png"
            fig(f"Final test accuracy against {key}", file, F.plot_vs_key(sweep, summary, key, out / file))
    if len(sweep.diagnostics) and "outcome" in sweep.diagnostics:
        fig("Diagnostics", "diagnostics.png", F.plot_diagnostics(sweep, out / "diagnostics.png"))
    fig("Confusion matrices", "confusion.png", F.plot_confusion(sweep, out / "confusion.png", order))
    if counted.any() and len(summary):
        base = summary.attrs["baseline"]
        pool = sweep.runs[counted & (sweep.runs["activation"] == base)]
        pool = pool if len(pool) else sweep.runs[counted]
        top = pool.sort_values(["group", "seed"]).iloc[0]
        fig(f"Predictions of {top['run']} (a {base} run, not selected on accuracy)", "examples.png",
            F.plot_examples(Path(top["path"]), str(top["run"]), out / "examples.png"))  # fmt: skip
    modules = {n: a["module"] for n, a in sweep.activations.items() if isinstance(a, dict) and a.get("module")}
    if modules:
        try:
            F.plot_activation_shapes(modules, out / "activations.png")
            fig("Activation functions and their derivatives", "activations.png",
                [out / "activations.png", out / f"activations.{F.VECTOR}"])  # fmt: skip
        except Exception as err:  # a user's activation may not be importable here
            log.info("activations.png skipped: %s", err)
    atomic_write(out / "report.md", render(sweep, paths, summary, best, figures, all_pairs))
    written["report"] = out / "report.md"
    return written
