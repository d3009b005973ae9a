"""report.md: the tables and the sentences, built only from the summary's columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from .load import COUNTED, Sweep
from .stats import ALPHA, NO_TEST, PAIRED, POWER


def pts(v: float, signed: bool = False) -> str:
    """An accuracy (fraction) or a difference of accuracies in percentage points."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def pval(p: float) -> str:
    return "–" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def _act(summary: pd.DataFrame, group: str) -> str:
    return str(summary.loc[group, "activation"]) if group in summary.index else group


def comparison_sentence(row: pd.Series, name: str, base: str) -> str:
    """One comparison, from its columns (diff, diff_ci_low/high, test, n_pairs/n, p_adj, mdd)."""
    if row["test"] == NO_TEST or pd.isna(row["test"]):
        why = row.get("why") or "a single seed"
        return (f"{name} vs {base}: {pts(row['diff'], True)} points from {why}; no test is possible "
                "(sweep seed=0,1,2 for one).")  # fmt: skip
    n = int(row["n_pairs"]) if row["test"] == PAIRED else f"{int(row['n'])} and {int(row['n_baseline'])}"
    how = (f"paired t over {n} seeds" if row["test"] == PAIRED
           else f"Welch t over {n} seeds ({row['why'] or 'unpaired'})")  # fmt: skip
    head = (f"{name} − {base} = {pts(row['diff'], True)} points, 95 % CI [{pts(row['diff_ci_low'], True)}, "
            f"{pts(row['diff_ci_high'], True)}], {how}, Holm-adjusted p = {pval(row['p_adj'])}")  # fmt: skip
    if row["significant"]:
        return head + f": {name} is {'better' if row['diff'] > 0 else 'worse'} than {base}."
    if abs(row["diff"]) >= row["mdd"]:
        return (head + f" (uncorrected p = {pval(row['p'])}): not significant once corrected for the number of "
                "comparisons; run more seeds to resolve it.")  # fmt: skip
    return (head + f": indistinguishable from {base} at ±{pts(row['mdd'])} points (the smallest difference "
            f"one test at this seed count detects with {100 * POWER:.0f} % power); run more seeds to resolve less.")


def findings(summary: pd.DataFrame, comparisons: pd.DataFrame, baseline: str) -> list[str]:
    """The sentences of a table: one per comparison, or one saying why there is none."""
    s = summary.dropna(subset=["final_test_acc_mean"])
    if s.empty:
        return ["No run completed, so there is nothing to compare."]
    if comparisons.empty:
        return [f"Nothing to compare with the baseline **{baseline}** (it has no completed run at the settings "
                "of the other groups)."]  # fmt: skip
    if (comparisons["test"] == NO_TEST).all() and (comparisons["n"] <= 1).all():
        return ["Every group has a single completed run (one seed), so no test is possible and no difference "
                "below the seed-to-seed noise (typically 0.1–0.2 points here) can be claimed; sweep "
                "seed=0,1,2 for a test."]  # fmt: skip
    family = len(comparisons.dropna(subset=["p"]))
    lines = [f"Each group against the baseline **{baseline}** at the same setting of the other keys "
             f"(final test accuracy; {family} test(s) in the family, Holm-corrected, alpha {ALPHA}):"]  # fmt: skip
    rank = {g: i for i, g in enumerate(summary.index)}
    for _, row in comparisons.sort_values("group", key=lambda c: c.map(rank), kind="stable").iterrows():
        name, base = _act(summary, row["group"]), _act(summary, row["baseline"])
        setting = str(row["group"]).partition(", ")[2]
        where = f" at {setting}" if setting and setting == str(row["baseline"]).partition(", ")[2] else ""
        if not where and setting:
            name, base = row["group"], row["baseline"]
        lines.append(f"- {where[4:] + ': ' if where else ''}" + comparison_sentence(row, name, base))
    return lines


def table(summary: pd.DataFrame, group_cols: Sequence[str], selected_on: str) -> str:
    out = pd.DataFrame(index=summary.index)
    out["runs ok/div/fail/other"] = [f"{r.completed}/{r.diverged}/{r.failed}/{r.interrupted + r.excluded}"
                                     for r in summary.itertuples()]  # fmt: skip
    out["final test acc %"] = [pts(m) + ("" if pd.isna(s) else f" ± {100 * s:.2f}")
                               for m, s in zip(summary["final_test_acc_mean"], summary["final_test_acc_std"],
                                               strict=True)]  # fmt: skip
    out["95 % CI"] = ["–" if pd.isna(lo) else f"[{pts(lo)}, {pts(hi)}]"
                      for lo, hi in zip(summary["final_test_acc_ci95_low"], summary["final_test_acc_ci95_high"],
                                        strict=True)]  # fmt: skip
    if selected_on == "val":
        out["test acc at best-val epoch %"] = summary["selected_test_acc_mean"].map(pts)
    out[f"epochs to 97 % ({selected_on})"] = [
        "never" if pd.isna(e) else f"{e:.1f} ({r})"
        for e, r in zip(summary["epochs_to_97_mean"], summary["reached_97"], strict=True)
    ]
    out["final train loss"] = summary["final_train_loss_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    out["final test loss"] = summary["final_test_loss_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    out["s / epoch"] = summary["epoch_seconds_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}")
    if "diff" in summary:
        own = summary["baseline"] == summary.index.to_series()
        out["vs baseline, points [95 % CI]"] = [
            "baseline" if o else ("–" if pd.isna(d) else f"{pts(d, True)} [{pts(lo, True)}, {pts(hi, True)}]"
                                  if not pd.isna(lo) else f"{pts(d, True)}")
            for o, d, lo, hi in zip(own, summary["diff"], summary["diff_ci_low"], summary["diff_ci_high"], strict=True)
        ]  # fmt: skip
        out["test"] = ["" if o else (t if isinstance(t, str) else "–") for o, t in zip(own, summary["test"],
                                                                                      strict=True)]  # fmt: skip
        out["Holm p"] = ["" if o else pval(p) for o, p in zip(own, summary["p_adj"], strict=True)]
        out["detectable ± points"] = ["" if o or pd.isna(m) else pts(m) for o, m in zip(own, summary["mdd"],
                                                                                         strict=True)]  # fmt: skip
    out.index.name = " · ".join(group_cols) if len(group_cols) > 1 else "activation"
    return out.to_markdown()


def render(sweep: Sweep, paths: Sequence[str], summary: pd.DataFrame, best: pd.DataFrame | None,
           figures: Sequence[tuple[str, str]], all_pairs: bool = False) -> str:  # fmt: skip
    runs = sweep.runs
    baseline = summary.attrs.get("baseline", "") if len(summary) else ""
    lines = [
        "# Activation comparison on MNIST",
        "",
        f"Built {datetime.now().isoformat(timespec='seconds')} from {len(runs)} run(s) in "
        + ", ".join(f"`{p}`" for p in paths) + ".",
        f"Groups differ in: {', '.join(sweep.group_cols)} (from the runs' resolved configs); seeds: "
        f"{', '.join(map(str, sorted(runs['seed'].dropna().unique())))}.",
        f"Code: git {', '.join(sorted({str(c)[:10] for c in runs['git_commit']}))}; "
        f"torch {', '.join(sorted(set(map(str, runs['torch']))))}; "
        f"device {', '.join(sorted(set(map(str, runs['device']))))}.",
        "",
    ]
    notes = []
    if sweep.repeated_folders:
        notes.append(f"{sweep.repeated_folders} run folder(s) were given more than once and were read once.")
    if sweep.duplicates:
        notes.append(f"De-duplicated: {len(sweep.duplicates)} run(s) found twice (same config and seed) count "
                     "once: " + "; ".join(f"`{d}` (kept `{k}`)" for d, k in sweep.duplicates) + ".")  # fmt: skip
    if sweep.problems:
        notes.append("Skipped (malformed files): " + "; ".join(f"`{p}`" for p in sweep.problems) + ".")
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    if len(summary):
        order = "the other swept keys, then final test accuracy" if sweep.setting_cols else "final test accuracy"
        lines += [f"## Summary (sorted by {order}; baseline **{baseline}**)", "",
                  table(summary, sweep.group_cols, sweep.selected_on), "",
                  *findings(summary, summary.attrs.get("comparisons", pd.DataFrame()), baseline), ""]  # fmt: skip
        lines += [_selection_note(sweep), ""]
        if best is not None:
            chosen = best.attrs.get("chosen_on", "test")
            lines += ["## Each activation at its best setting", "",
                      f"Every activation with the value of {', '.join(sweep.setting_cols)} that suits it best, "
                      + ("chosen on validation accuracy; the test accuracy is of the chosen setting."
                         if chosen == "validation" else
                         "**chosen on test accuracy** (no validation split: optimistic for every activation; "
                         "set data.val_samples to select on validation)."), "",
                      table(best, sweep.group_cols, sweep.selected_on), "",
                      *findings(best, best.attrs["comparisons"], best.attrs["baseline"]), ""]  # fmt: skip
    bad = runs[runs["outcome"] != COUNTED]
    if len(bad):
        lines += ["## Runs not in the statistics", ""]
        for r in bad.itertuples():
            text = f"- `{r.run}`: **{r.outcome}**"
            if r.outcome == "diverged" and pd.notna(r.diverged_epoch):
                text += f" in epoch {int(r.diverged_epoch)}"
            if r.outcome == "excluded":
                text += " (metrics.csv disagrees with run.json)"
            if isinstance(r.note, str) and r.note:
                text += f": {r.note}"
            lines.append(text)
        lines.append("")
    for title, file in figures:
        lines += [f"## {title}", "", f"![{title}]({file}) ([PDF]({file.rsplit('.', 1)[0]}.pdf))", ""]
    lines += ["## Files", "",
              "- `results.csv`: every run's epoch rows (tidy); `runs.csv`: one row per run, with its `outcome`;",
              "  `summary.csv`: one row per group, with the comparison against the baseline (`diff`, `diff_ci_low`,",
              "  `diff_ci_high`, `p`, `p_adj`, `test`, `n_pairs`, `mdd`); `comparisons.csv`: every comparison made;",
              "  `diagnostics.csv`: per-layer diagnostics; every figure also as PDF.", ""]  # fmt: skip
    return "\n".join(lines)


def _selection_note(sweep: Sweep) -> str:
    if sweep.selected_on == "val":
        return ("Model selection (best epoch, epochs to 97 %) uses the validation split carved from the training "
                "set; the test set only reports the selected model.")  # fmt: skip
    return ("No validation split (data.val_samples unset): *epochs to 97 %* is read off the test curve, so it is a "
            "speed figure, not a model selection; the comparison uses the final epoch, chosen in advance.")  # fmt: skip
