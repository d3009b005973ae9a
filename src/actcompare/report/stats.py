"""Statistics of a sweep: pure functions over DataFrames (no plotting, no files).

Runs that share a seed share their initial weights (same shapes) and their batch order across
activations, so every comparison is *paired by seed* on the seeds both groups completed (the
others are listed, never compared with a mean). Each group is compared with a *declared* baseline
activation at the same setting of the other swept keys (or every pair at a setting, on request),
never with a winner picked from the data. The decision rule (better / worse / equivalent within a
declared margin / undecided), the multiplicity correction and the seeds that would settle a
comparison live in :mod:`.verdicts`; this module gathers the numbers per group and comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..order import natural_rank
from . import verdicts as V
from .load import COUNTED, EXCLUDED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep

COMPARISON_COLUMNS = [
    "group",
    "baseline",
    "verdict",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "sd_diff",
    "n_pairs",
    "seeds_dropped",
    "p_diff",
    "p_equiv",
    "p_diff_holm",
    "p_equiv_holm",
    "decision_low",
    "decision_high",
    "decision_level",
    "within_margin",
    "margin",
    "why",
]
# Filled in by family() from the whole family (Holm): not by compare().
FAMILY_COLUMNS = (
    "verdict",
    "p_diff_holm",
    "p_equiv_holm",
    "decision_low",
    "decision_high",
    "decision_level",
    "within_margin",
)
VERDICT_ORDER = {V.BETTER: 0, V.EQUIVALENT: 1, V.UNDECIDED: 2, V.WORSE: 3}
BOOTSTRAPS = 2000  # resamples of the shared seeds for each group's probability of being best


def ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """95 % confidence interval of the mean (Student t over seeds), clipped to [0, 1]; NaN below 2 runs."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return (math.nan, math.nan)
    half = float(V.t_half_width(v.std(ddof=1), n, 0.95))
    return (max(v.mean() - half, 0.0), min(v.mean() + half, 1.0))


def compare(a: Mapping[Any, float], b: Mapping[Any, float], margin: float) -> dict[str, Any]:
    """Group ``a`` against group ``b``, each {seed: value}, paired on the seeds both have.

    Returns the columns of COMPARISON_COLUMNS except group, baseline, verdict and the Holm p's
    (those need the whole family): diff (mean paired difference a - b), its 95 % CI, sd_diff,
    n_pairs, seeds_dropped, p_diff, p_equiv, margin and why (why no test, when there is none).
    """
    _, d, only_a, only_b = V.paired_diffs(a, b)
    dropped = "; ".join(
        f"{side}: {' '.join(map(str, s))}" for side, s in (("group", only_a), ("baseline", only_b)) if s
    )
    out: dict[str, Any] = {
        "diff": d.mean() if len(d) else math.nan,
        "diff_ci_low": math.nan,
        "diff_ci_high": math.nan,
        "sd_diff": math.nan,
        "n_pairs": len(d),
        "seeds_dropped": dropped,
        "p_diff": math.nan,
        "p_equiv": math.nan,
        "margin": margin,
        "why": "",
    }
    if not a or not b:
        out["why"] = "no counted run on one side (failed, diverged or never learned: see the runs table)"
    elif len(d) == 0:
        out["why"] = "no seed completed on both sides"
    elif len(d) == 1:
        out["why"] = "one shared seed: no test is possible"
    else:
        t = V.paired_tests(d, margin)
        out.update(
            diff=float(t["diff"]),
            diff_ci_low=float(t["ci_low"]),
            diff_ci_high=float(t["ci_high"]),
            sd_diff=float(t["sd"]),
            p_diff=float(t["p_diff"]),
            p_equiv=float(t["p_equiv"]),
        )
        if not t["sd"] > V.NO_SPREAD:
            out["why"] = (
                f"every shared seed gives the same difference: the p is the sign-flip test's over {len(d)}, "
                "and no interval can be estimated (decision_low/high NaN)"
            )
    return out


def family(rows: list[dict[str, Any]], margin: float) -> pd.DataFrame:
    """One family of comparisons -> its table with verdicts (Holm over all of it) and, in attrs, what
    settles it: k, min_pairs, pooled_sd (of paired differences), seeds_needed, margin."""
    comp = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in FAMILY_COLUMNS])
    decided = V.decide_many(comp["diff"], comp["p_diff"], comp["p_equiv"])
    comp["verdict"], comp["p_diff_holm"], comp["p_equiv_holm"] = (
        [str(v) for v in decided["verdict"]],
        decided["adj_diff"],
        decided["adj_equiv"],
    )
    # The interval each verdict was decided on, at its Holm level (V.decision_intervals says which).
    for col, values in V.decision_intervals(comp["diff"], comp["sd_diff"], comp["n_pairs"], margin, decided).items():
        comp[col] = values
    comp["within_margin"] = comp["within_margin"].astype(bool)
    k = int(comp["p_diff"].notna().sum()) or len(comp)
    sd = V.pooled_sd(comp["sd_diff"], comp["n_pairs"])
    comp = comp[COMPARISON_COLUMNS]
    needed = V.seeds_needed(sd, margin, k) if len(comp) else math.nan
    have = int(comp["n_pairs"].max()) if len(comp) else 0
    # The plan gives 80 % power at 0 and at +/-m; once the runs have that many seeds, what is still
    # undecided lies in between: +/-m/2 is the hardest case (both claims need m/2 / sd of evidence).
    settle = needed if have < needed else V.seeds_needed(sd, margin / 2, k)
    comp.attrs.update(
        k=k,
        min_pairs=V.min_pairs(k),
        pooled_sd=sd,
        margin=margin,
        seeds_needed=needed,
        seeds_to_settle=settle,
        have=have,
    )
    return comp


def counted_runs(sweep: Sweep) -> pd.DataFrame:
    """The runs that enter a mean or a comparison (outcome ``counted``): the one place they are chosen."""
    return sweep.runs[sweep.runs["outcome"] == COUNTED]


def finals(sweep: Sweep, group: str, column: str = "final_test_acc") -> dict[Any, float]:
    """{seed: value} over the counted runs of ``group``."""
    r = counted_runs(sweep)
    r = r[r["group"] == group].dropna(subset=[column])
    return dict(zip(r["seed"], r[column].astype(float), strict=True))


def choose_baseline(sweep: Sweep, name: str | None = None) -> str:
    """The declared baseline activation: ``name``, else relu when present, else the sweep's first
    activation (the one of its earliest run folder)."""
    from ..errors import UserError

    acts = list(dict.fromkeys(sweep.runs["activation"]))
    if name is not None:
        if name not in acts:
            raise UserError(f"--baseline {name}: not an activation of these runs; choose one of {', '.join(acts)}")
        return name
    return "relu" if "relu" in acts else acts[0]


def _setting(sweep: Sweep, group: str) -> tuple:
    row = sweep.runs[sweep.runs["group"] == group].iloc[0]
    return tuple(row[k] for k in sweep.setting_cols)


def compare_groups(
    sweep: Sweep,
    groups: Sequence[str],
    baseline: str,
    margin: float,
    all_pairs: bool = False,
    column: str = "final_test_acc",
) -> pd.DataFrame:
    """One row per comparison among ``groups`` (one family: one Holm correction, one seed plan).

    Each group is compared with the group of the ``baseline`` activation at the same setting of the
    other swept keys; with ``all_pairs`` every two groups at the same setting are compared.
    """
    acts = sweep.runs.drop_duplicates("group").set_index("group")["activation"]
    by_setting: dict[tuple, list[str]] = {}
    for g in groups:
        by_setting.setdefault(_setting(sweep, g), []).append(g)
    pairs: list[tuple[str, str]] = []
    for members in by_setting.values():
        base = [g for g in members if acts[g] == baseline]
        if all_pairs:
            ordered = base + [g for g in members if g not in base]
            pairs += [(ordered[j], ordered[i]) for i in range(len(ordered)) for j in range(i + 1, len(ordered))]
        elif base:
            pairs += [(g, base[0]) for g in members if g != base[0]]
    rows = [
        {"group": g, "baseline": b, **compare(finals(sweep, g, column), finals(sweep, b, column), margin)}
        for g, b in pairs
    ]
    return family(rows, margin)


def prob_best(sweep: Sweep, groups: Sequence[str], column: str = "final_test_acc", seed: int = 0) -> dict[str, float]:
    """Each group's probability of having the highest mean, by a bootstrap over the seeds all of
    ``groups`` completed (the seeds resampled together, so the pairing is kept); NaN for every group
    when fewer than 2 seeds are shared."""
    vals = {g: finals(sweep, g, column) for g in groups}
    shared = sorted(set.intersection(*(set(v) for v in vals.values()))) if vals else []
    if len(shared) < 2 or len(groups) < 2:
        return {g: math.nan for g in groups}
    x = np.array([[vals[g][s] for s in shared] for g in groups])  # (groups, seeds)
    idx = np.random.default_rng(seed).integers(0, len(shared), (BOOTSTRAPS, len(shared)))
    means = x[:, idx].mean(axis=2)  # (groups, resamples)
    wins = np.bincount(means.argmax(axis=0), minlength=len(groups)) / BOOTSTRAPS
    return dict(zip(groups, wins.tolist(), strict=True))


def _timing(results: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """Per run: median seconds per epoch over epochs 2+ (epoch 1 holds warm-up: data to the device,
    kernels, graph capture). Stacked runs record the group's epoch time divided by its models."""
    if "epoch_seconds" not in results or results.empty:
        return pd.Series(math.nan, index=runs["run"])
    later = results[results["epoch"] > 1]
    first = results[results["epoch"] == 1]
    t = later.groupby("run")["epoch_seconds"].median()
    return t.combine_first(first.groupby("run")["epoch_seconds"].median())


def summarize(
    sweep: Sweep, baseline: str | None = None, all_pairs: bool = False, margin: float = V.DEFAULT_MARGIN
) -> pd.DataFrame:
    """One row per group: run counts, final test accuracy mean/std/95 % CI, selection-based figures,
    losses, speed, the comparison with the baseline (verdict, diff, CI, p's) and the probability of
    being best at its setting.

    Sorted by the other swept keys, then baseline first, then by verdict (better, equivalent,
    undecided, worse) and difference: by evidence, not by a noisy mean. The family of every
    comparison made is in ``summary.attrs["comparisons"]`` (its attrs say what would settle it).
    """
    runs = sweep.runs
    seconds = _timing(sweep.results, runs)
    rows = []
    for group, g in runs.groupby("group", sort=False):
        done = g[g["outcome"] == COUNTED]
        final = done["final_test_acc"].dropna().to_numpy(float)
        selected = done["selected_test_acc"].dropna().to_numpy(float)
        row: dict[str, Any] = {"group": group, **{k: g[k].iloc[0] for k in sweep.group_cols}}
        row.update(
            runs=len(g),
            completed=len(done),
            diverged=int((g["outcome"] == "diverged").sum()),
            not_learning=int((g["outcome"] == NOT_LEARNING).sum()),
            failed=int((g["outcome"] == "failed").sum()),
            interrupted=int(g["outcome"].isin(["interrupted", "running"]).sum()),
            excluded=int((g["outcome"] == EXCLUDED).sum()),
            seeds=" ".join(map(str, sorted(done["seed"].tolist()))),
        )
        lo, hi = ci95(final)
        row.update(
            final_test_acc_mean=final.mean() if len(final) else math.nan,
            final_test_acc_std=final.std(ddof=1) if len(final) > 1 else math.nan,
            final_test_acc_ci95_low=lo,
            final_test_acc_ci95_high=hi,
            # without a validation split the "selected" epoch was picked on test: not reported
            selected_test_acc_mean=selected.mean() if len(selected) and sweep.selected_on == "val" else math.nan,
            selected_on=sweep.selected_on,
        )
        for col in ("final_val_acc", "best_epoch", "final_train_loss", "final_test_loss"):
            row[f"{col}_mean"] = done[col].mean() if len(done) else math.nan
        row["epoch_seconds_mean"] = seconds.reindex(done["run"]).mean() if len(done) else math.nan
        reached = done["epochs_to_97"].dropna()
        row["epochs_to_97_mean"] = reached.mean() if len(reached) else math.nan
        row["reached_97"] = f"{len(reached)}/{len(done)}"
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("group")
    base = choose_baseline(sweep, baseline)
    comparisons = compare_groups(sweep, list(summary.index), base, margin, all_pairs)
    acts = summary["activation"]
    vs = comparisons[comparisons["baseline"].map(acts) == base].drop_duplicates("group").set_index("group")
    summary = summary.join(vs)  # with its why: a row without a p says why it has none
    summary["baseline"] = [
        b if isinstance(b, str) else (g if acts[g] == base else "") for g, b in summary["baseline"].items()
    ]
    summary["why"] = [
        (
            f"no {base} run at {', '.join(f'{k}={summary.loc[g, k]}' for k in sweep.setting_cols)} to pair it with"
            if b == "" and not isinstance(w, str)
            else (w if isinstance(w, str) else "")
        )
        for g, b, w in zip(summary.index, summary["baseline"], summary["why"], strict=True)
    ]
    summary["p_best"] = math.nan
    for _, members in summary.groupby([*sweep.setting_cols] or (lambda _: 0), sort=False):
        for g, p in prob_best(sweep, list(members.index)).items():
            summary.loc[g, "p_best"] = p
    summary = _sort(summary, sweep.setting_cols)
    summary.attrs.update(comparisons=comparisons, baseline=base, margin=margin)
    return summary


def _sort(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    own = summary["baseline"] == summary.index.to_series()
    tmp = summary.assign(
        **{f"__{k}": natural_rank(summary[k]) for k in keys},
        __own=~own,
        __verdict=summary.get("verdict", pd.Series(index=summary.index, dtype=object))
        .map(VERDICT_ORDER)
        .fillna(len(VERDICT_ORDER)),
        __diff=-summary.get("diff", pd.Series(0.0, index=summary.index)).fillna(-np.inf),
    )
    tmp = tmp.sort_values(
        [*(f"__{k}" for k in keys), "__own", "__verdict", "__diff"], kind="stable", na_position="last"
    )
    return summary.loc[tmp.index]


def best_settings(
    sweep: Sweep, summary: pd.DataFrame, baseline: str, all_pairs: bool = False, margin: float = V.DEFAULT_MARGIN
) -> pd.DataFrame | None:
    """Each activation at its best setting of the other swept keys (e.g. its best lr), or None.

    The setting is chosen on mean final validation accuracy when the runs recorded one; then the
    chosen groups are compared with the baseline's chosen group (paired, one family of their own)
    and get verdicts, provided every activation had the same number of settings to choose from
    (equal budgets). Chosen on the test set (no validation split) or at unequal budgets, the table
    is descriptive: no p, no verdict, and ``attrs["why_no_test"]`` says why.
    """
    if not sweep.setting_cols:
        return None
    key = "final_val_acc_mean" if sweep.selected_on == "val" else "final_test_acc_mean"
    ok = summary.dropna(subset=[key])
    if ok.empty:
        return None
    picks = ok.groupby("activation")[key].idxmax()
    budgets = ok.groupby("activation").size()
    best = summary.loc[picks.to_numpy()].drop(
        columns=[c for c in COMPARISON_COLUMNS if c in summary] + ["p_best"], errors="ignore"
    )
    best["settings_tried"] = best["activation"].map(budgets).astype(int)
    if baseline not in set(best["activation"]):
        baseline = best["activation"].iloc[0]
    why_no_test = ""
    if sweep.selected_on != "val":
        why_no_test = (
            "chosen on the test set (no validation split): the figures are optimistic and no test is "
            "made; set data.val_samples to choose on validation"
        )
    elif budgets.nunique() > 1:
        why_no_test = (
            "the activations had different numbers of settings to choose from ("
            + ", ".join(f"{a}: {n}" for a, n in budgets.items())
            + "): a best of many beats a best of few by selection alone, so no test is made"
        )
    attrs = dict(
        baseline=baseline,
        why_no_test=why_no_test,
        margin=margin,
        chosen_on="validation" if sweep.selected_on == "val" else "test",
    )
    if why_no_test:
        best = best.sort_values("final_test_acc_mean", ascending=False, na_position="last")
        best.attrs.update(attrs, comparisons=pd.DataFrame(columns=COMPARISON_COLUMNS))
        return best
    acts = dict(zip(best.index, best["activation"], strict=True))
    base_group = next(g for g, a in acts.items() if a == baseline)
    order = [base_group, *(g for g in best.index if g != base_group)]
    pairs = (
        [(o, base_group) for o in order[1:]]
        if not all_pairs
        else [(y, x) for i, x in enumerate(order) for y in order[i + 1 :]]
    )
    comp = family(
        [{"group": g, "baseline": b, **compare(finals(sweep, g), finals(sweep, b), margin)} for g, b in pairs], margin
    )
    vs = comp[comp["baseline"] == base_group].set_index("group").drop(columns=["why"])
    best = best.join(vs)
    best["baseline"] = best["baseline"].fillna(base_group)
    best = _sort(best, [])  # a new frame: the attrs go on last
    best.attrs.update(attrs, comparisons=comp)
    return best


# ---------------------------------------------------------------- the numbers the figures draw
# The figures (report/figures/) only draw: every number they show comes from here.

BAND_LEVEL = 0.95  # of the per-epoch difference bands (unadjusted; a verdict's own interval is in comparisons)


def paired_seed_diffs(sweep: Sweep, group: str, baseline: str, column: str = "final_test_acc") -> pd.Series:
    """{seed: value(group) - value(baseline)} over the seeds both groups completed (``finals``), in
    natural seed order: the pairs a comparison is made of (never a seed against a mean)."""
    seeds, d, _, _ = V.paired_diffs(finals(sweep, group, column), finals(sweep, baseline, column))
    return pd.Series(d, index=pd.Index(seeds, name="seed"), dtype=float)


def paired_epoch_diffs(
    sweep: Sweep, group: str, baseline: str, metric: str = "test_acc", level: float = BAND_LEVEL
) -> pd.DataFrame:
    """Per epoch (the index), over the seeds both groups completed (counted runs): n, the mean of the
    paired differences of ``metric`` (diff) and its t interval at ``level`` (ci_low, ci_high: the
    interval ttest_rel gives; NaN below 2 pairs, zero width where every pair ties)."""
    res = sweep.results[sweep.results["outcome"] == COUNTED]
    seeds = counted_runs(sweep).set_index("run")["seed"]
    res = res.assign(seed=res["run"].map(seeds))  # the run's seed (run.json), whatever metrics.csv holds

    def per_seed(g: str) -> pd.DataFrame:
        return res[res["group"] == g].pivot_table(index="epoch", columns="seed", values=metric, aggfunc="first")

    a, b = per_seed(group), per_seed(baseline)
    shared = [s for s in a.columns if s in b.columns]
    epochs = a.index.intersection(b.index)
    d = (a.loc[epochs, shared] - b.loc[epochs, shared]).astype(float)
    n = d.notna().sum(axis=1)
    mean = d.mean(axis=1)
    half = pd.Series(V.t_half_width(d.std(axis=1, ddof=1), n, level), index=d.index)
    return pd.DataFrame({"n": n, "diff": mean, "ci_low": mean - half, "ci_high": mean + half})


def epoch_curves(sweep: Sweep, metric: str, outcomes: Sequence[str] = (COUNTED, NOT_LEARNING)) -> pd.DataFrame:
    """Per group and epoch: mean, sd (ddof 1) and count of ``metric`` over the group's runs with one of
    ``outcomes`` (counted runs, and runs that never learned: drawn apart, never in a counted mean).
    Columns group, activation, epoch, mean, std, count; groups in sweep order."""
    res = sweep.results[sweep.results["outcome"].isin(list(outcomes)) & np.isfinite(sweep.results[metric])]
    out = res.groupby(["group", "epoch"], sort=False)[metric].agg(["mean", "std", "count"]).reset_index()
    first = sweep.runs.drop_duplicates("group").set_index("group")["activation"]
    out.insert(1, "activation", out["group"].map(first))
    order = {g: i for i, g in enumerate(dict.fromkeys(sweep.runs["group"]))}
    return out.sort_values(["group", "epoch"], key=lambda c: c.map(order) if c.name == "group" else c, kind="stable")


def not_learning_groups(sweep: Sweep) -> dict[str, float]:
    """{group: mean final test accuracy} of the groups that never learned: the counted runs' mean final
    test accuracy is below NOT_LEARNING_ACC, or the group has no counted run and some runs with
    outcome ``not_learning`` (their mean). Figures draw these apart, never setting a scale."""
    out: dict[str, float] = {}
    for group, g in sweep.runs.groupby("group", sort=False):
        counted = g[g["outcome"] == COUNTED]["final_test_acc"].dropna()
        flagged = g[g["outcome"] == NOT_LEARNING]["final_test_acc"].dropna()
        if len(counted) and counted.mean() < NOT_LEARNING_ACC:
            out[str(group)] = float(counted.mean())
        elif not len(counted) and len(flagged):
            out[str(group)] = float(flagged.mean())
    return out


def final_means(sweep: Sweep, column: str = "final_test_acc") -> dict[str, float]:
    """{group: mean of ``column``}: over the counted runs, else (a group that never learned) over its
    ``not_learning`` runs (``not_learning_groups``)."""
    return {**counted_runs(sweep).groupby("group")[column].mean().to_dict(), **not_learning_groups(sweep)}


def best_groups(sweep: Sweep, keys: Sequence[str]) -> tuple[list[str], str]:
    """Each activation's best group at every setting of ``keys`` (the other swept keys are chosen
    over), on the mean final validation accuracy when the runs recorded one, else on the mean final
    test accuracy; and the basis ("validation" or "test (optimistic: ...)")."""
    counted = counted_runs(sweep)
    on_val = sweep.selected_on == "val" and "final_val_acc" in counted and counted["final_val_acc"].notna().any()
    col = "final_val_acc" if on_val else "final_test_acc"
    means = counted.groupby("group")[col].mean().dropna()
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    picks = []
    for _, members in firsts.loc[firsts.index.isin(means.index)].groupby(["activation", *keys], sort=False):
        picks.append(str(means.loc[members.index].idxmax()))
    return picks, ("validation" if on_val else "test (optimistic: chosen on the set it reports)")
