"""Statistics of a sweep: pure functions over DataFrames (no plotting, no files).

The design: runs that share a seed share their initial weights (same shapes) and their batch
order, across activations. So two groups run on the same seeds are compared *paired by seed*
(``scipy.stats.ttest_rel`` on the per-seed differences); otherwise, or when the seeds differ,
by Welch's unpaired t-test. Every group is compared with a *declared* baseline activation at the
same setting of the other swept keys (or every pair, on request), never with a winner picked
from the data, and the p-values of all comparisons made are corrected together with Holm's
method (statsmodels). Each comparison also gives its mean difference with a 95 % CI and the
minimum detectable difference: the smallest true difference the design would find with 80 %
power at alpha 0.05 (per comparison) given its seed count and observed spread.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .load import COUNTED, Sweep

ALPHA = 0.05  # significance level, after the Holm correction
POWER = 0.80  # for the minimum detectable difference
PAIRED = "paired t"
WELCH = "Welch t"
NO_TEST = "none"
COMPARISON_COLUMNS = ["group", "baseline", "diff", "diff_ci_low", "diff_ci_high", "p", "p_adj", "test", "n_pairs",
                      "n", "n_baseline", "mdd", "significant", "why"]  # fmt: skip


def ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """95 % confidence interval of the mean (Student t over seeds), clipped to [0, 1]; NaN below 2 runs."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return (max(v.mean() - half, 0.0), min(v.mean() + half, 1.0))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN entries stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


def mdd_paired(n: int, sd_diff: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean difference a two-sided paired t-test over ``n`` pairs detects with ``power``."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not math.isfinite(sd_diff):
        return math.nan
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(d) * sd_diff


def mdd_welch(n_a: int, n_b: int, sd_a: float, sd_b: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest difference of means a two-sided two-sample t-test detects with ``power`` (pooled sd)."""
    from statsmodels.stats.power import TTestIndPower

    if n_a < 2 or n_b < 2:
        return math.nan
    pooled = math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / (n_a + n_b - 2))
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_a, ratio=n_b / n_a, alpha=alpha, power=power,
                                    alternative="two-sided")  # fmt: skip
    return float(d) * pooled


def compare(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[str, Any]:
    """Group ``a`` against group ``b``, each {seed: value}: diff = mean(a) - mean(b).

    Paired by seed when both have the same seeds (at least two); else Welch's t-test (at least two
    runs each); else no test. Returns diff, its 95 % CI, p, test, n_pairs, n, n_baseline, mdd, why.
    """
    va, vb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    out: dict[str, Any] = {"diff": va.mean() - vb.mean() if len(va) and len(vb) else math.nan,
                           "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p": math.nan, "test": NO_TEST,
                           "n_pairs": 0, "n": len(va), "n_baseline": len(vb), "mdd": math.nan, "why": ""}  # fmt: skip
    if not len(va) or not len(vb):
        out["why"] = "no completed run on one side"
        return out
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        d = np.array([a[s] - b[s] for s in seeds], float)
        n, sd = len(d), d.std(ddof=1)
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        if sd > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
        else:  # every seed gives the same difference: exact
            p = 1.0 if d.mean() == 0 else 0.0
        out.update(diff=d.mean(), diff_ci_low=d.mean() - half, diff_ci_high=d.mean() + half, p=p, test=PAIRED,
                   n_pairs=n, mdd=mdd_paired(n, sd))  # fmt: skip
        return out
    if len(va) < 2 or len(vb) < 2:
        out["why"] = "a single seed" + ("" if len(va) == len(vb) == 1 else " on one side")
        return out
    sa, sb = va.std(ddof=1), vb.std(ddof=1)
    se2a, se2b = sa**2 / len(va), sb**2 / len(vb)
    se = math.sqrt(se2a + se2b)
    if se > 0:
        df = (se2a + se2b) ** 2 / (se2a**2 / (len(va) - 1) + se2b**2 / (len(vb) - 1))  # Welch-Satterthwaite
        half = stats.t.ppf(0.975, df) * se
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
    else:
        half, p = 0.0, (1.0 if out["diff"] == 0 else 0.0)
    out.update(diff_ci_low=out["diff"] - half, diff_ci_high=out["diff"] + half, p=p, test=WELCH,
               mdd=mdd_welch(len(va), len(vb), sa, sb),
               why="the seeds differ" if set(a) != set(b) else "")  # fmt: skip
    return out


# ---------------------------------------------------------------- the sweep


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


def finals(sweep: Sweep, group: str, column: str = "final_test_acc") -> dict[Any, float]:
    """{seed: value} over the counted runs of ``group``."""
    r = sweep.runs[(sweep.runs["group"] == group) & (sweep.runs["outcome"] == COUNTED)]
    r = r.dropna(subset=[column])
    return dict(zip(r["seed"], r[column].astype(float), strict=True))


def _setting(sweep: Sweep, group: str) -> tuple:
    row = sweep.runs[sweep.runs["group"] == group].iloc[0]
    return tuple(row[k] for k in sweep.setting_cols)


def compare_groups(sweep: Sweep, groups: Sequence[str], baseline: str, all_pairs: bool = False,
                   column: str = "final_test_acc") -> pd.DataFrame:  # fmt: skip
    """One row per comparison among ``groups`` (one family for the Holm correction).

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
    rows = [{"group": g, "baseline": b, **compare(finals(sweep, g, column), finals(sweep, b, column))}
            for g, b in pairs]  # fmt: skip
    out = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_adj", "significant")])
    out["p_adj"] = holm(out["p"]) if len(out) else []
    out["significant"] = [None if math.isnan(p) else bool(p < ALPHA) for p in out["p_adj"]]
    return out[COMPARISON_COLUMNS]


def summarize(sweep: Sweep, baseline: str | None = None, all_pairs: bool = False) -> pd.DataFrame:
    """One row per group: run counts, final test accuracy mean/std/95 % CI, selection-based
    figures, losses, speed, and the comparison with the baseline (diff, CI, p, p_adj, test, mdd).

    Sorted by the other swept keys, then by final test accuracy (best first). The table of every
    comparison made (one family) is in ``summary.attrs["comparisons"]``.
    """
    runs = sweep.runs
    rows = []
    for group, g in runs.groupby("group", sort=False):
        done = g[g["outcome"] == COUNTED]
        final = done["final_test_acc"].dropna().to_numpy(float)
        selected = done["selected_test_acc"].dropna().to_numpy(float)
        row: dict[str, Any] = {"group": group, **{k: g[k].iloc[0] for k in sweep.group_cols}}
        row.update(
            runs=len(g), completed=len(done), diverged=int((g["outcome"] == "diverged").sum()),
            failed=int((g["outcome"] == "failed").sum()),
            interrupted=int(g["outcome"].isin(["interrupted", "running"]).sum()),
            excluded=int((g["outcome"] == "excluded").sum()),
            seeds=" ".join(map(str, sorted(done["seed"].tolist()))),
        )  # fmt: skip
        lo, hi = ci95(final)
        row.update(final_test_acc_mean=final.mean() if len(final) else math.nan,
                   final_test_acc_std=final.std(ddof=1) if len(final) > 1 else math.nan,
                   final_test_acc_ci95_low=lo, final_test_acc_ci95_high=hi,
                   selected_test_acc_mean=selected.mean() if len(selected) else math.nan,
                   selected_on=sweep.selected_on)  # fmt: skip
        for col in ("final_val_acc", "best_epoch", "final_train_loss", "final_test_loss", "epoch_seconds"):
            row[f"{col}_mean"] = done[col].mean() if len(done) else math.nan
        reached = done["epochs_to_97"].dropna()
        row["epochs_to_97_mean"] = reached.mean() if len(reached) else math.nan
        row["reached_97"] = f"{len(reached)}/{len(done)}"
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("group")
    base = choose_baseline(sweep, baseline)
    comparisons = compare_groups(sweep, list(summary.index), base, all_pairs)
    vs = comparisons[comparisons["baseline"].map(summary["activation"]) == base].drop_duplicates("group")
    vs = vs.set_index("group").drop(columns=["why"]).rename(columns={"n": "n_runs"})
    summary = summary.join(vs.drop(columns=["n_baseline"]))
    summary["baseline"] = [b if isinstance(b, str) else (g if summary.loc[g, "activation"] == base else "")
                           for g, b in summary["baseline"].items()]  # fmt: skip
    summary = _sort(summary, sweep.setting_cols)
    summary.attrs["comparisons"] = comparisons
    summary.attrs["baseline"] = base
    return summary


def _sort(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    def natural(col: pd.Series) -> pd.Series:
        num = pd.to_numeric(col, errors="coerce")
        return num if num.notna().all() else col.astype(str)

    tmp = summary.assign(**{f"__{k}": natural(summary[k]) for k in keys}, __acc=summary["final_test_acc_mean"])
    tmp = tmp.sort_values([*(f"__{k}" for k in keys), "__acc"], ascending=[*([True] * len(keys)), False],
                          na_position="last", kind="stable")  # fmt: skip
    return summary.loc[tmp.index]


def best_settings(sweep: Sweep, summary: pd.DataFrame, baseline: str, all_pairs: bool = False) -> pd.DataFrame | None:
    """Each activation at its best setting of the other swept keys (e.g. its best lr), or None.

    The setting is chosen on mean final validation accuracy when the runs recorded one, else on
    mean final test accuracy (then the reported accuracy is optimistic). The chosen groups are
    compared with the baseline activation's chosen group, as their own Holm family.
    """
    if not sweep.setting_cols:
        return None
    key = "final_val_acc_mean" if sweep.selected_on == "val" else "final_test_acc_mean"
    ok = summary.dropna(subset=[key])
    if ok.empty:
        return None
    picks = ok.groupby("activation")[key].idxmax()
    best = summary.loc[picks.to_numpy()].drop(columns=[c for c in COMPARISON_COLUMNS if c in summary] + ["n_runs"],
                                              errors="ignore")  # fmt: skip
    if baseline not in set(best["activation"]):
        baseline = best["activation"].iloc[0]
    # Compare across settings: the chosen groups form one family regardless of their setting.
    acts = dict(zip(best.index, best["activation"], strict=True))
    base_group = next(g for g, a in acts.items() if a == baseline)
    others = [g for g in best.index if g != base_group]
    pairs = ([(o, base_group) for o in others] if not all_pairs else
             [(y, x) for i, x in enumerate([base_group, *others]) for y in [base_group, *others][i + 1:]])  # fmt: skip
    rows = [{"group": g, "baseline": b, **compare(finals(sweep, g), finals(sweep, b))} for g, b in pairs]
    comp = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_adj", "significant")])
    comp["p_adj"] = holm(comp["p"]) if len(comp) else []
    comp["significant"] = [None if math.isnan(p) else bool(p < ALPHA) for p in comp["p_adj"]]
    vs = comp[comp["baseline"] == base_group].set_index("group").drop(columns=["why", "n_baseline"])
    best = best.join(vs.rename(columns={"n": "n_runs"}))
    best["baseline"] = best["baseline"].fillna(base_group)
    best = best.sort_values("final_test_acc_mean", ascending=False, na_position="last")
    best.attrs["comparisons"] = comp[COMPARISON_COLUMNS]
    best.attrs["baseline"] = baseline
    best.attrs["chosen_on"] = "validation" if sweep.selected_on == "val" else "test"
    return best
