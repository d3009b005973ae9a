"""The bottom line of a report, in plain words, generated from the verdicts: what to use, how sure
that is, and what to run next. No statistics are computed here; every number comes from the
summary frame (stats.py) and its comparisons (verdicts.py), so the words cannot disagree with the
tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from . import verdicts as V
from .facts import Facts, more_seeds_command


def pts(v: float, signed: bool = False) -> str:
    """An accuracy (fraction) or a difference of accuracies in percentage points."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def duration(seconds: float) -> str:
    """A rough wall time: 40 s, 6 min, 2.5 h."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _names(names: Sequence[str], bold: bool = False) -> str:
    quoted = [f"**{n}**" if bold else n for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def interval(row: pd.Series) -> str:
    """The interval a verdict used, e.g. '90 % interval [-0.12, +0.08]' (verdicts.decision_intervals)."""
    lo, hi, level = (row.get(k, math.nan) for k in ("decision_low", "decision_high", "decision_level"))
    if pd.isna(lo) or pd.isna(hi):
        return "no interval (the paired differences do not vary)" if row.get("n_pairs", 0) >= 2 else "no interval"
    return f"{100 * float(level):.4g} % interval [{pts(lo, True)}, {pts(hi, True)}]"


def within_margin(row: pd.Series) -> bool:
    return bool(row.get("within_margin", False)) and row.get("verdict") in (V.BETTER, V.WORSE)


def label(row: pd.Series) -> str:
    """The verdict as a reader should read it: 'better (within margin)' when the difference is
    real but smaller than the margin, i.e. of no practical consequence."""
    verdict = row["verdict"] if isinstance(row.get("verdict"), str) else V.UNDECIDED
    return f"{verdict} (within margin)" if within_margin(row) else verdict


def extra_time(facts: Facts, seeds: int, have: int, groups: int) -> str:
    """The wall time of the runs still to make, from what these runs took per run."""
    if facts.timed_runs <= 0 or not math.isfinite(facts.train_seconds):
        return ""
    per_run = facts.train_seconds / facts.timed_runs
    return f" (about {duration(per_run * max(seeds - have, 0) * groups)} on the machine that made these runs)"


def bottom_line(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    baseline: str,
    facts: Facts,
    group_values: dict[str, list[str]],
    names: dict[str, str],
    groups: int | None = None,
) -> list[str]:
    """The report's first paragraph (markdown lines). ``names``: group -> the label to print;
    ``groups``: how many groups a rerun trains (default: the rows of ``summary``)."""
    counted = summary.dropna(subset=["final_test_acc_mean"]) if len(summary) else summary
    if counted.empty:
        return ["No run completed, so there is no answer yet: *Runs not in the statistics* below says why.", ""]
    if comparisons.empty:
        command = more_seeds_command(facts, 0, group_values, auto=True)
        return [
            f"Nothing was compared: no group shares seeds with the baseline **{baseline}**. To compare "
            f"activations, run them together, e.g. `{command}`.",
            "",
        ]
    a = comparisons.attrs
    m = pts(a.get("margin", math.nan))
    rows = [r for _, r in comparisons.iterrows()]
    name = lambda r: names.get(r["group"], str(r["group"]))  # noqa: E731
    base = names.get(baseline, baseline)
    pairs = sorted({int(r["n_pairs"]) for r in rows})
    n_text = f"{pairs[0]}" if len(pairs) == 1 else f"{pairs[0]}–{pairs[-1]}"
    better = [r for r in rows if r["verdict"] == V.BETTER and not within_margin(r)]
    worse = [r for r in rows if r["verdict"] == V.WORSE and not within_margin(r)]
    same = [r for r in rows if r["verdict"] == V.EQUIVALENT or within_margin(r)]
    open_ = [r for r in rows if r["verdict"] not in (V.BETTER, V.WORSE, V.EQUIVALENT)]
    said: list[str] = []
    if better:
        better.sort(key=lambda r: -float(r["diff"]))
        top = better[0]
        said.append(
            f"**Use {name(top)}**: it beats {base} by {pts(top['diff'], True)} points ({interval(top)})"
            + (
                f"; {_names([name(r) for r in better[1:]], bold=True)} also beat {base} (not compared with each other: "
                "`actcompare-report --all-pairs` does)"
                if len(better) > 1
                else ""
            )
            + "."
        )
    elif same:
        said.append(
            f"**Use {base} or {'any of ' if len(same) > 1 else ''}{_names([name(r) for r in same])}**: "
            f"equivalent within ±{m} points."
        )
    elif worse and not open_:
        said.append(f"**Use {base}**: every other activation here is worse.")
    else:
        said.append(f"**No conclusion yet**: {n_text} paired seed(s) cannot decide ±{m} points.")
    if better and same:
        said.append(f"{_names([name(r) for r in same], bold=True)} and {base} are equivalent within ±{m} points.")
    if worse:
        said.append(
            "Avoid "
            + "; ".join(f"{name(r)} ({pts(r['diff'], True)} points, {interval(r)})" for r in worse)
            + f" against {base}."
        )
    if open_ and (better or same or worse):
        said.append(f"Undecided: {_names([name(r) for r in open_], bold=True)} against {base}.")
    said.append(
        f"How sure: {len(rows)} comparison(s) with {base}, paired over {n_text} seed(s) each; all verdicts hold "
        f"together with at most {100 * V.ALPHA:.0f} % chance of any false claim (Holm), and each interval shown is "
        "the one its verdict was decided on."
    )
    said += _next_run(comparisons, facts, group_values, groups or len(summary), bool(open_), m)
    return [" ".join(said), ""]


def _next_run(
    comparisons: pd.DataFrame, facts: Facts, group_values: dict[str, list[str]], groups: int, undecided: bool, m: str
) -> list[str]:
    """What to run next, with its command and time; nothing when everything is decided."""
    if not undecided:
        return ["Next: nothing to run for this question; a wider one (another lr, depth or data) is a new sweep."]
    a = comparisons.attrs
    have = int(comparisons["n_pairs"].max())
    sd, settle = a.get("pooled_sd", math.nan), a.get("seeds_to_settle", math.nan)
    if not (isinstance(sd, float) and math.isfinite(sd)):
        command = more_seeds_command(facts, 0, group_values, auto=True)
        return [
            f"Next: one seed gives curves, not a conclusion; `{command}` plans the seeds that decide ±{m} points "
            "from a pilot and reuses these runs."
        ]
    if not (isinstance(settle, (int, float)) and math.isfinite(settle)) or settle > V.MAX_SEEDS_PLANNED:
        return [
            f"Next: the seed-to-seed noise ({pts(sd)} points, sd of paired differences) is too large to decide "
            f"±{m} points with fewer than {V.MAX_SEEDS_PLANNED} seeds: widen the margin (report.margin) or reduce "
            "the noise (more epochs, more data)."
        ]
    n = int(settle)
    when = extra_time(facts, n, have, groups)
    return [
        f"Next: `{more_seeds_command(facts, n, group_values)}` runs {n} paired seeds{when}, "
        f"enough for {100 * V.POWER:.0f} % power at ±{m} points"
        + ("; the runs already made are reused." if facts.overrides is not None else ".")
    ]


def speed_note(summary: pd.DataFrame, names: dict[str, str], selected_on: str) -> str | None:
    """A descriptive line on learning speed (not tested): who reaches 97 % last, and how much later."""
    if "epochs_to_97_mean" not in summary:
        return None
    e = summary["epochs_to_97_mean"].dropna()
    if len(e) < 2 or e.max() - e.min() < 1:
        return None
    fast, slow = e.idxmin(), e.idxmax()
    return (
        f"Learning speed (descriptive, not tested): {names.get(slow, slow)} reaches 97 % {selected_on} accuracy "
        f"{e[slow] - e[fast]:.1f} epochs later than {names.get(fast, fast)} (mean over seeds)."
    )
