"""report.md, built from the summary's columns and the setup facts (no statistics computed here).

Its order is a reader's: the bottom line in words (story.py), the figures that decide, the verdicts
with the interval each was decided on, what would settle the rest, a short summary table (every
other column is in summary.csv), the setup, the limits, and the secondary figures in an appendix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from ..order import natural_rank, natural_sorted
from . import verdicts as V
from .facts import Facts, binomial_se, more_seeds_command
from .load import COUNTED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep
from .story import bottom_line, interval, label, pts, speed_note, within_margin

# The figures that decide come right after the bottom line, in this order; build.py marks each
# figure's kind ("decision", "curves" after the tables, "appendix": those that decide nothing).
DECISION_FIGURES = ("forest.png", "test_accuracy.png", "diff_curves.png")


def pval(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def _act(summary: pd.DataFrame, group: str) -> str:
    return str(summary.loc[group, "activation"]) if group in summary.index else group


def comparison_sentence(row: pd.Series, name: str, base: str, needed: int | None) -> str:
    """One comparison: its name first, then its verdict, then the numbers it was decided on."""
    m = pts(row["margin"])
    n = int(row["n_pairs"])
    dropped = ""
    if isinstance(row.get("seeds_dropped"), str) and row["seeds_dropped"]:
        named = (
            row["seeds_dropped"]
            .replace("group:", f"only {name} has seed(s)")
            .replace("baseline:", f"only {base} has seed(s)")
        )
        dropped = f"; left out of the pairs: {named}"
    head = f"**{name} vs {base}: {label(row)}**"
    if n < 2:
        return (
            f"{head}: {pts(row['diff'], True)} points over {n} shared seed(s): "
            f"{row['why'] or 'no test is possible'}{dropped}."
        )
    verdict = row["verdict"]
    if within_margin(row):
        what = f"a real difference, but the whole interval lies inside ±{m} points"
    elif verdict in (V.BETTER, V.WORSE):
        what = f"{name} is {verdict} than {base}"
    elif verdict == V.EQUIVALENT:
        what = f"the whole interval lies inside ±{m} points"
    else:
        what = f"neither a difference nor equivalence within ±{m} points is shown" + (
            f"; about {needed} paired seeds would settle it" if needed else ""
        )
        lo, hi = row.get("decision_low", math.nan), row.get("decision_high", math.nan)
        if pd.notna(lo) and pd.notna(hi) and (lo > 0 or hi < 0 or (-row["margin"] < lo and hi < row["margin"])):
            what += (
                " (the t interval alone would decide, but the exact sign-flip test, which assumes nothing of "
                "the differences' shape, does not reject at this level)"
            )
    nums = (
        f"{pts(row['diff'], True)} points, {interval(row)}, paired over {n} seeds; Holm p = "
        f"{pval(row['p_diff_holm'])} (difference), {pval(row['p_equiv_holm'])} (equivalence)"
    )
    return f"{head} — {what}. {nums}{dropped}."


def findings(
    summary: pd.DataFrame, comparisons: pd.DataFrame, baseline: str, across_settings: bool = False
) -> list[str]:
    """The verdict sentences of one family, one per comparison, or one saying why there is none.
    ``across_settings``: each group at its own chosen setting (the best-settings family)."""
    s = summary.dropna(subset=["final_test_acc_mean"])
    if s.empty:
        return ["No run completed, so there is nothing to compare."]
    if comparisons.empty:
        return [
            f"Nothing to compare with the baseline **{baseline}** (it has no completed run at the settings "
            "of the other groups)."
        ]
    a = comparisons.attrs
    needed = a.get("seeds_to_settle")
    needed = int(needed) if isinstance(needed, (int, float)) and not math.isnan(needed) else None
    needed = needed if needed is None or needed <= V.MAX_SEEDS_PLANNED else None
    whom = (
        f"Each activation at its chosen setting against **{baseline}** at its own chosen setting (the choice "
        "made on validation, before any test), paired by seed"
        if across_settings
        else f"Each group against **{baseline}** at the same setting of the other keys, paired by seed"
    )
    lines = [
        f"{whom} (final test accuracy). {len(comparisons)} comparison(s), each with a difference test and an "
        "equivalence test "
        f"(TOST, margin ±{pts(a.get('margin', math.nan))} points), all {2 * len(comparisons)} tests "
        f"Holm-corrected together at alpha {V.ALPHA}. Any verdict other than undecided needs at least "
        f"{a.get('min_pairs')} paired seeds here (below that even the same sign on every seed is within "
        "chance for the exact sign-flip test at Holm's first threshold). The interval beside each verdict is the "
        "one it was decided on, at the level Holm gave its test: it excludes 0 for better/worse and lies inside "
        "the margin for equivalent."
        + "".join(
            f" The {what}: {summary.attrs[key]}."
            for what, key in (("margin", "margin_source"), ("baseline", "baseline_source"))
            if summary.attrs.get(key)
        ),
        "",
    ]
    rank = {g: i for i, g in enumerate(summary.index)}
    for _, row in comparisons.sort_values("group", key=lambda c: c.map(rank), kind="stable").iterrows():
        name, base = _act(summary, row["group"]), _act(summary, row["baseline"])
        setting = str(row["group"]).partition(", ")[2]
        same = setting and setting == str(row["baseline"]).partition(", ")[2] and not across_settings
        if setting and not same:
            name, base = row["group"], row["baseline"]
        lines.append(f"- {setting + ': ' if same else ''}" + comparison_sentence(row, name, base, needed))
    if "why" in summary:  # a group with no comparison at all (no baseline run at its setting): say why
        compared = set(comparisons["group"]) | set(comparisons["baseline"])
        for group, row in summary.iterrows():
            if group not in compared and isinstance(row["why"], str) and row["why"]:
                lines.append(f"- **{group}: not compared**: {row['why']}.")
    return lines


def settle(summary: pd.DataFrame, comparisons: pd.DataFrame, facts: Facts, group_cols: Sequence[str]) -> list[str]:
    """What would settle the undecided comparisons: the pooled noise, the seeds, the command."""
    a = comparisons.attrs
    if comparisons.empty or not (comparisons["verdict"] == V.UNDECIDED).any():
        return []
    sd, needed, settle = (a.get(k, math.nan) for k in ("pooled_sd", "seeds_needed", "seeds_to_settle"))
    have = int(comparisons["n_pairs"].max())
    lines = ["## What would settle the undecided comparisons", ""]
    m = pts(a.get("margin", math.nan))
    if not (isinstance(sd, float) and math.isfinite(sd)):
        n = max(a.get("min_pairs", 3), 3)
        lines.append(
            f"No comparison has two paired seeds, so the seed-to-seed noise is unknown. Run a pilot of "
            f"{n} seeds first (or let the sweep plan its seeds: `seeds=auto`):"
        )
    elif settle > V.MAX_SEEDS_PLANNED:
        lines.append(
            f"The paired differences vary by {pts(sd)} points (sd, pooled over the comparisons): deciding "
            f"±{m} points would take more than {V.MAX_SEEDS_PLANNED} seeds. Widen the margin "
            "(report.margin) or reduce the noise (more epochs, more training data)."
        )
        return [*lines, ""]
    else:
        n = int(settle)
        why = (
            f"With {n} paired seeds every comparison of this family has {100 * V.POWER:.0f} % power to call a "
            f"true difference of ±{m} points, and to call a true difference of 0 equivalent"
            if have < needed
            else f"These runs already have the {int(needed)} seeds that give {100 * V.POWER:.0f} % power at 0 and at "
            f"±{m} points; what is still undecided lies in between, and a true difference of ±{pts(a['margin'] / 2)}"
            f" points (the hardest case) needs {n} paired seeds for that power either way"
        )
        lines.append(
            f"The paired differences vary by {pts(sd)} points (sd pooled over the comparisons, from the "
            f"variance only, not the observed differences). {why}, at Holm's worst-case level "
            f"{V.ALPHA}/{2 * a['k']} (the runs have {have}). The runs already made are reused:"
        )
    lines += ["", "```", more_seeds_command(facts, n, group_values(summary, group_cols)), "```", ""]
    return lines


def _runs_cell(r) -> str:
    """Counted runs of all, and what happened to the others: '3/3', '2/3 (1 diverged)'."""
    others = {
        "diverged": r.diverged,
        "never learned": getattr(r, "not_learning", 0),
        "failed": r.failed,
        "interrupted": r.interrupted,
        "excluded": r.excluded,
    }
    rest = ", ".join(f"{int(v)} {k}" for k, v in others.items() if v)
    return f"{int(r.completed)}/{int(r.runs)}" + (f" ({rest})" if rest else "")


def table(summary: pd.DataFrame, group_cols: Sequence[str], selected_on: str, tested: bool = True) -> str:
    """The summary table: the columns a reader decides from (every other one is in summary.csv)."""
    out = pd.DataFrame(index=summary.index)
    own = summary["baseline"] == summary.index.to_series() if "baseline" in summary else None
    if tested and "verdict" in summary:
        out["vs baseline, points [interval of the verdict]"] = [
            "baseline" if o else ("–" if pd.isna(row["diff"]) else f"{pts(row['diff'], True)} ({interval(row)})")
            for o, (_, row) in zip(own, summary.iterrows(), strict=True)
        ]
        out["verdict"] = ["" if o else label(row) for o, (_, row) in zip(own, summary.iterrows(), strict=True)]
        out["pairs"] = ["" if o or pd.isna(n) else str(int(n)) for o, n in zip(own, summary["n_pairs"], strict=True)]
    if "settings_tried" in summary:
        out["settings tried"] = summary["settings_tried"]
    out["final test acc % (mean ± sd)"] = [
        pts(m) + ("" if pd.isna(s) else f" ± {100 * s:.2f}")
        for m, s in zip(summary["final_test_acc_mean"], summary["final_test_acc_std"], strict=True)
    ]
    out[f"epochs to 97 % ({selected_on})"] = [
        "never" if pd.isna(e) else f"{e:.1f} ({r})"
        for e, r in zip(summary["epochs_to_97_mean"], summary["reached_97"], strict=True)
    ]
    out["runs counted/all"] = [_runs_cell(r) for r in summary.itertuples()]
    out.index.name = " · ".join(group_cols) if len(group_cols) > 1 else "activation"
    return out.to_markdown()


def limits(sweep: Sweep, summary: pd.DataFrame, facts: Facts) -> list[str]:
    """The generated "what this does not show" section."""
    runs = sweep.runs
    swept = set(sweep.group_cols)
    acc = summary["final_test_acc_mean"].dropna()
    se = binomial_se(float(acc.median()), facts.test_images) if len(acc) else math.nan
    seeds = runs.loc[runs["outcome"] == COUNTED].groupby("group")["seed"].nunique()
    out = [
        "## What this does not show",
        "",
        "- One dataset (MNIST) and one model family (an MLP): nothing here says how the activations rank on "
        "other data or architectures.",
    ]
    fixed = [
        k
        for k, label in (
            ("optimizer.lr", "one learning rate"),
            ("model.hidden_sizes", "one width and depth"),
            ("epochs", "one training length"),
        )
        if k not in swept
    ]
    if fixed:
        out.append(
            "- "
            + ", ".join(
                label
                for k, label in (
                    ("optimizer.lr", "One learning rate"),
                    ("model.hidden_sizes", "one width and depth"),
                    ("epochs", "one training length"),
                )
                if k in fixed
            )
            + " (not swept): an activation that needs another setting is judged at this one."
        )
    if math.isfinite(se):
        out.append(
            f"- The test set has {facts.test_images:,} images: an accuracy near {pts(float(acc.median()))} % "
            f"carries ±{pts(se)} points of binomial error (1 sd) as an estimate of accuracy on new images. "
            "Paired comparisons on the same images are more precise than that, but only about these "
            "images."
        )
    if len(seeds):
        out.append(
            f"- {seeds.min()}–{seeds.max()} completed seed(s) per group: a rank or a mean from few seeds "
            "is not a finding; the verdicts above say what the seeds support."
        )
    bad = int((runs["outcome"] == NOT_LEARNING).sum())
    if bad:
        out.append(
            f"- {bad} run(s) never learned (final test accuracy below {pts(NOT_LEARNING_ACC)} %): they are "
            "counted apart and left out of every mean and test; an activation that fails this way at this "
            "setting is a finding of its own."
        )
    return [*out, ""]


def _figures(entries: Sequence[tuple[str, str, str, bool]], kind: str, level: str = "###") -> list[str]:
    lines: list[str] = []
    chosen = [e for e in entries if e[2] == kind]
    if kind == "decision":  # in the order a reader decides: the differences, then the curves they come from
        chosen.sort(key=lambda e: DECISION_FIGURES.index(e[1]) if e[1] in DECISION_FIGURES else len(DECISION_FIGURES))
    for title, file, _, has_pdf in chosen:
        pdf = f" ([PDF]({file.rsplit('.', 1)[0]}.pdf))" if has_pdf else ""
        lines += [f"{level} {title}", "", f"![{title}]({file}){pdf}", ""]
    return lines


def group_values(summary: pd.DataFrame, group_cols: Sequence[str]) -> dict[str, list[str]]:
    """Every swept key's values over the groups, in natural order (for the commands a report prints)."""
    return {k: natural_sorted(summary[k].astype(str)) for k in group_cols}


def _headline(
    sweep: Sweep, summary: pd.DataFrame, best: pd.DataFrame | None, facts: Facts, all_pairs: bool
) -> list[str]:
    """The bottom line: from the each-at-its-best family when another key was swept and tested,
    else from the main family."""
    tested_best = best is not None and not best.attrs.get("why_no_test") and len(best.attrs.get("comparisons", ()))
    frame = best if tested_best else summary
    comparisons = frame.attrs.get("comparisons", pd.DataFrame())
    single = len(sweep.setting_cols) == 0 or tested_best
    names = {g: (_act(frame, g) if single else str(g)) for g in frame.index}
    for g in comparisons.get("baseline", []):
        names.setdefault(g, _act(frame, g) if single else str(g))
    lines = ["## Bottom line", ""]
    if tested_best:
        lines += [f"Each activation at its best {', '.join(sweep.setting_cols)} (chosen on validation):", ""]
    values = group_values(summary, sweep.group_cols)
    lines += bottom_line(frame, comparisons, frame.attrs.get("baseline", ""), facts, values, names, len(summary))
    speed = speed_note(summary, names, sweep.selected_on) if not sweep.setting_cols else None
    return lines + ([speed, ""] if speed else [])


def render(
    sweep: Sweep,
    paths: Sequence[str],
    summary: pd.DataFrame,
    best: pd.DataFrame | None,
    figures: Sequence[tuple[str, str, str, bool]],
    facts: Facts | None = None,
    all_pairs: bool = False,
) -> str:
    facts = facts or Facts()
    runs = sweep.runs
    entries = list(figures)  # (title, file, kind, has_pdf), from build.py
    baseline = summary.attrs.get("baseline", "") if len(summary) else ""
    lines = [
        "# Activation comparison on MNIST",
        "",
        f"{len(runs)} run(s) in "
        + ", ".join(f"`{p}`" for p in paths)
        + f"; groups differ in: {', '.join(sweep.group_cols)}. Built {datetime.now().isoformat(timespec='seconds')}"
        f" from code git {', '.join(sorted({str(c)[:10] for c in runs['git_commit']}))}, "
        f"torch {', '.join(sorted(set(map(str, runs['torch']))))}.",
        "",
    ]
    if len(summary):
        lines += _headline(sweep, summary, best, facts, all_pairs)
    else:
        lines += ["## Bottom line", "", "No run completed, so there is no answer yet: see below why.", ""]
    lines += _figures(entries, "decision", "##")
    comparisons = summary.attrs.get("comparisons", pd.DataFrame()) if len(summary) else pd.DataFrame()
    if len(summary):
        lines += ["## Verdicts", "", *findings(summary, comparisons, baseline), ""]
        lines += settle(summary, comparisons, facts, sweep.group_cols)
        lines += [
            f"## Summary (baseline **{baseline}**; by setting, then by verdict and difference)",
            "",
            table(summary, sweep.group_cols, sweep.selected_on),
            "",
            "Differences are paired by seed, with the interval each verdict was decided on (its confidence is "
            "the level Holm gave the test). summary.csv also has the unadjusted 95 % CIs, the p-values, P(best) "
            "(a bootstrap over seeds), final losses and seconds per model-epoch.",
            "",
            _selection_note(sweep),
            "",
        ]
        if best is not None:
            lines += _best_section(sweep, best)
    lines += _setup(sweep, facts)
    if len(summary):
        lines += limits(sweep, summary, facts)
    lines += _left_out(runs)
    curves = _figures(entries, "curves")
    if curves:
        lines += ["## Training curves", "", *curves]
    appendix = _figures(entries, "appendix")
    if appendix:
        lines += ["## Appendix: how the runs trained", "", *appendix]
    lines += [
        "## Files",
        "",
        "- `results.csv`: every run's epoch rows (tidy); `runs.csv`: one row per run, with its `outcome`;",
        "  `summary.csv`: one row per group, with its comparison against the baseline (`verdict`,",
        "  `within_margin`, `diff`, `decision_low`, `decision_high`, `decision_level`, `n_pairs`, `p_diff_holm`,",
        "  `p_equiv_holm`, `p_best`, ...); `comparisons.csv`: every comparison made; `diagnostics.csv`: per-layer",
        "  diagnostics" + ("; every figure also as PDF." if any(e[3] for e in entries) else "."),
        "",
    ]
    return "\n".join(lines)


def _setup(sweep: Sweep, facts: Facts) -> list[str]:
    lines: list[str] = []
    if facts.lines:
        lines += [
            "## Setup",
            "",
            "| what was trained | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in facts.lines),
            "",
        ]
    notes = []
    if sweep.repeated_folders:
        notes.append(f"{sweep.repeated_folders} run folder(s) were given more than once and were read once.")
    if sweep.duplicates:
        notes.append(
            f"De-duplicated: {len(sweep.duplicates)} run(s) found twice (same config and seed) count "
            "once: " + "; ".join(f"`{d}` (kept `{k}`)" for d, k in sweep.duplicates) + "."
        )
    if sweep.problems:
        notes.append("Skipped (malformed files): " + "; ".join(f"`{p}`" for p in sweep.problems) + ".")
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return lines


def _left_out(runs: pd.DataFrame) -> list[str]:
    bad = runs[runs["outcome"] != COUNTED]
    if not len(bad):
        return []
    lines = ["## Runs not in the statistics", ""]
    for r in bad.sort_values("run", key=natural_rank).itertuples():
        text = f"- `{r.run}`: **{r.outcome}**"
        if r.outcome == "diverged" and pd.notna(r.diverged_epoch):
            text += f" in epoch {int(r.diverged_epoch)}"
        if r.outcome == "excluded":
            text += " (metrics.csv disagrees with run.json)"
        if isinstance(r.note, str) and r.note:
            text += f": {r.note}"
        lines.append(text)
    return [*lines, ""]


def _best_section(sweep: Sweep, best: pd.DataFrame) -> list[str]:
    chosen = best.attrs.get("chosen_on", "test")
    why_no_test = best.attrs.get("why_no_test", "")
    keys = ", ".join(sweep.setting_cols)
    lead = (
        f"Every activation at the value of {keys} that suits it best, chosen on mean final validation accuracy "
        f"from the settings it was run at (`settings tried`); the test accuracy is of the chosen setting, so "
        "the activations are compared across settings, each at its own best."
    )
    if chosen != "validation":
        lead = (
            f"Every activation at the value of {keys} with its highest mean **test** accuracy: chosen on the "
            "test set, so every figure here is optimistic."
        )
    out = ["## Each activation at its best setting", "", lead, ""]
    out += [table(best, sweep.group_cols, sweep.selected_on, tested=not why_no_test), ""]
    if why_no_test:
        out += [f"No verdicts here: {why_no_test}.", ""]
    else:
        out += [*findings(best, best.attrs["comparisons"], best.attrs["baseline"], across_settings=True), ""]
    return out


def _selection_note(sweep: Sweep) -> str:
    if sweep.selected_on == "val":
        return (
            "Model selection (best epoch, epochs to 97 %) uses the validation split carved from the training "
            "set; the test set only reports the selected model. The verdicts use the final epoch, fixed in "
            "advance."
        )
    return (
        "No validation split (data.val_samples unset): *epochs to 97 %* is read off the test curve, so it is a "
        "speed figure, not a model selection; the verdicts use the final epoch, fixed in advance, never an "
        "epoch picked on test."
    )
