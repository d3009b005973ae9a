"""report.md: the setup, the verdicts, the tables and what the runs cannot show, built from the
summary's columns and the setup facts (no statistics computed here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from . import verdicts as V
from .facts import Facts, binomial_se, more_seeds_command
from .load import COUNTED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep
from .stats import natural_key


def pts(v: float, signed: bool = False) -> str:
    """An accuracy (fraction) or a difference of accuracies in percentage points."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def pval(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def _act(summary: pd.DataFrame, group: str) -> str:
    return str(summary.loc[group, "activation"]) if group in summary.index else group


def _ci(row: pd.Series) -> str:
    if pd.isna(row["diff_ci_low"]):
        return "no CI (no spread)" if row["n_pairs"] >= 2 else "no CI"
    return f"95 % CI [{pts(row['diff_ci_low'], True)}, {pts(row['diff_ci_high'], True)}]"


def comparison_sentence(row: pd.Series, name: str, base: str, needed: int | None) -> str:
    """One comparison: its verdict first, then the numbers it rests on."""
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
    if n < 2:
        return (
            f"**undecided**: {name} − {base} = {pts(row['diff'], True)} points over {n} shared seed(s): "
            f"{row['why'] or 'no test is possible'}{dropped}."
        )
    nums = (
        f"{name} − {base} = {pts(row['diff'], True)} points ({_ci(row)}), paired over {n} seeds, Holm p = "
        f"{pval(row['p_diff_holm'])} (difference), {pval(row['p_equiv_holm'])} (equivalence within ±{m})"
    )
    verdict = row["verdict"]
    if verdict in (V.BETTER, V.WORSE):
        inside = (
            " — by less than the ±" + m + "-point margin"
            if not pd.isna(row["diff_ci_high"])
            and -row["margin"] < row["diff_ci_low"]
            and row["diff_ci_high"] < row["margin"]
            else ""
        )
        text = f"**{verdict}**: {name} is {verdict} than {base}{inside}. {nums}"
    elif verdict == V.EQUIVALENT:
        text = f"**equivalent**: {name} and {base} are within ±{m} points. {nums}"
    else:
        more = f"; about {needed} paired seeds would settle it" if needed else ""
        text = f"**undecided**: neither a difference nor equivalence within ±{m} is shown{more}. {nums}"
    return text + dropped + "."


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
        "chance for the exact sign-flip test at Holm's first threshold).",
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
    values = {}
    for k in group_cols:
        u = pd.Series(summary[k].astype(str).unique())
        values[k] = list(u[natural_key(u).sort_values(kind="stable").index])
    lines += ["", "```", more_seeds_command(facts, n, values), "```", ""]
    return lines


def table(summary: pd.DataFrame, group_cols: Sequence[str], selected_on: str, tested: bool = True) -> str:
    """The summary table: the comparison with the baseline leads, then the group's own figures."""
    out = pd.DataFrame(index=summary.index)
    own = summary["baseline"] == summary.index.to_series() if "baseline" in summary else None
    if tested and "verdict" in summary:
        out["vs baseline, points [95 % CI]"] = [
            "baseline"
            if o
            else (
                "–"
                if pd.isna(d)
                else f"{pts(d, True)}" + ("" if pd.isna(lo) else f" [{pts(lo, True)}, {pts(hi, True)}]")
            )
            for o, d, lo, hi in zip(own, summary["diff"], summary["diff_ci_low"], summary["diff_ci_high"], strict=True)
        ]
        out["verdict"] = [
            "" if o else (v if isinstance(v, str) else "undecided")
            for o, v in zip(own, summary["verdict"], strict=True)
        ]
        out["pairs"] = ["" if o or pd.isna(n) else str(int(n)) for o, n in zip(own, summary["n_pairs"], strict=True)]
        if "p_best" in summary and summary["p_best"].notna().any():
            out["P(best)"] = summary["p_best"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}")
    if "settings_tried" in summary:
        out["settings tried"] = summary["settings_tried"]
    out["runs ok/div/never learned/fail/other"] = [
        f"{r.completed}/{r.diverged}/{getattr(r, 'not_learning', 0)}/{r.failed}/{r.interrupted + r.excluded}"
        for r in summary.itertuples()
    ]
    out["final test acc % (mean ± sd)"] = [
        pts(m) + ("" if pd.isna(s) else f" ± {100 * s:.2f}")
        for m, s in zip(summary["final_test_acc_mean"], summary["final_test_acc_std"], strict=True)
    ]
    if selected_on == "val":
        out["test acc at best-val epoch %"] = summary["selected_test_acc_mean"].map(pts)
    out[f"epochs to 97 % ({selected_on})"] = [
        "never" if pd.isna(e) else f"{e:.1f} ({r})"
        for e, r in zip(summary["epochs_to_97_mean"], summary["reached_97"], strict=True)
    ]
    out["final train loss"] = summary["final_train_loss_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    out["final test loss"] = summary["final_test_loss_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    out["s / model-epoch"] = summary["epoch_seconds_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}")
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


def render(
    sweep: Sweep,
    paths: Sequence[str],
    summary: pd.DataFrame,
    best: pd.DataFrame | None,
    figures: Sequence[tuple[str, str]],
    facts: Facts | None = None,
    all_pairs: bool = False,
) -> str:
    facts = facts or Facts()
    runs = sweep.runs
    baseline = summary.attrs.get("baseline", "") if len(summary) else ""
    lines = [
        "# Activation comparison on MNIST",
        "",
        f"Built {datetime.now().isoformat(timespec='seconds')} from {len(runs)} run(s) in "
        + ", ".join(f"`{p}`" for p in paths)
        + ".",
        f"Groups differ in: {', '.join(sweep.group_cols)} (from the runs' resolved configs).",
        f"Code: git {', '.join(sorted({str(c)[:10] for c in runs['git_commit']}))}; "
        f"torch {', '.join(sorted(set(map(str, runs['torch']))))}.",
        "",
    ]
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
    comparisons = summary.attrs.get("comparisons", pd.DataFrame()) if len(summary) else pd.DataFrame()
    if len(summary):
        lines += ["## Verdicts", "", *findings(summary, comparisons, baseline), ""]
        lines += settle(summary, comparisons, facts, sweep.group_cols)
        lines += [
            f"## Summary (baseline **{baseline}**; by setting, then by verdict and difference)",
            "",
            table(summary, sweep.group_cols, sweep.selected_on),
            "",
            "Differences are paired by seed; their 95 % CIs are per comparison (unadjusted), the verdicts "
            "Holm-adjusted. P(best): the share of bootstrap resamples of the shared seeds in which the group "
            "has the highest mean at its setting. s / model-epoch: the median over epochs 2 and later "
            "(epoch 1 holds warm-up); a stacked group's epoch time is divided by its models, so it is a share "
            "of a group's time, not a per-activation cost.",
            "",
            _selection_note(sweep),
            "",
        ]
        if best is not None:
            lines += _best_section(sweep, best)
        lines += limits(sweep, summary, facts)
    bad = runs[runs["outcome"] != COUNTED]
    if len(bad):
        lines += ["## Runs not in the statistics", ""]
        for r in bad.sort_values("run", key=natural_key).itertuples():
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
    lines += [
        "## Files",
        "",
        "- `results.csv`: every run's epoch rows (tidy); `runs.csv`: one row per run, with its `outcome`;",
        "  `summary.csv`: one row per group, with its comparison against the baseline (`verdict`,",
        "  `diff`, `diff_ci_low`, `diff_ci_high`, `n_pairs`, `p_diff_holm`, `p_equiv_holm`, `p_best`);",
        "  `comparisons.csv`: every comparison made; `diagnostics.csv`: per-layer diagnostics; every",
        "  figure also as PDF.",
        "",
    ]
    return "\n".join(lines)


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
