"""The comparisons with the baseline: the forest plot (the headline figure) and the differences per epoch.

Every number drawn comes from ``report.stats``: the paired per-seed differences, the interval each
verdict was decided on (``decision_low``/``decision_high`` of the comparisons), the per-epoch bands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import stats as S
from ..load import Sweep
from . import style
from .style import (
    activations,
    apart_note,
    color,
    grid,
    in_setting,
    label_axes,
    legend_below,
    natural_key,
    panel_keys,
    title,
    ylim_from,
)
from .style import settings as all_settings


def margin_of(summary: pd.DataFrame | None) -> float:
    """The declared equivalence margin (accuracy fraction) the statistics used: ``summary.attrs["margin"]``,
    else verdicts.DEFAULT_MARGIN."""
    from ..verdicts import DEFAULT_MARGIN

    m = summary.attrs.get("margin") if summary is not None else None
    return float(m) if isinstance(m, (int, float)) and math.isfinite(m) else float(DEFAULT_MARGIN)


def _interval(comp: pd.DataFrame) -> tuple[str, str, str | None]:
    """(low column, high column, level column or None): the interval each verdict was decided on when
    the comparisons carry it, else the unadjusted 95 % CI of the mean."""
    if {"decision_low", "decision_high"} <= set(comp.columns):
        return "decision_low", "decision_high", "decision_level" if "decision_level" in comp else None
    return "diff_ci_low", "diff_ci_high", None


def _pct(value: Any) -> float:
    return 100 * float(value) if pd.notna(value) else math.nan


def _forest_rows(sweep: Sweep, comp: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    """One entry per comparison: its paired differences, mean, interval, level, n, verdict, in points."""
    acts = sweep.runs.drop_duplicates("group").set_index("group")["activation"]
    apart = S.not_learning_groups(sweep)
    low, high, level = _interval(comp)
    means = None
    rows = []
    for _, c in comp.iterrows():
        d = 100 * S.paired_seed_diffs(sweep, c["group"], c["baseline"], column)
        diff = _pct(c.get("diff")) if pd.notna(c.get("diff")) else (d.mean() if len(d) else math.nan)
        far = c["group"] in apart or c["baseline"] in apart
        if far and not np.isfinite(diff):  # runs that never learned are not counted: their mean, written
            means = S.final_means(sweep, column) if means is None else means
            diff = 100 * (means.get(c["group"], math.nan) - means.get(c["baseline"], math.nan))
        verdict = c.get("verdict")
        rows.append(
            {
                "group": c["group"],
                "baseline": c["baseline"],
                "d": d,
                "diff": diff,
                "lo": _pct(c.get(low)),
                "hi": _pct(c.get(high)),
                "level": float(c[level]) if level and pd.notna(c.get(level)) else (None if level else S.BAND_LEVEL),
                "n": int(c["n_pairs"]) if pd.notna(c.get("n_pairs")) else len(d),
                "far": far,
                "verdict": str(verdict) if isinstance(verdict, str) and verdict else "",
                "act": acts.get(c["group"], str(c["group"])),
            }
        )
    return rows


def _level_text(rows: list[dict[str, Any]], decided: bool) -> str:
    """What the bar is: "95 % CI of the mean (unadjusted)", or the verdicts' own interval and its levels."""
    if not decided:
        return f"{S.BAND_LEVEL:.0%} CI of the mean (unadjusted)"
    levels = sorted({r["level"] for r in rows if r["level"] is not None and np.isfinite(r["level"])})
    if not levels:
        return "interval the verdict used"
    span = f"{100 * levels[0]:.3g} %" + (f"-{100 * levels[-1]:.3g} %" if len(levels) > 1 else "")
    return f"interval the verdict used ({span}, Holm level)"


def plot_forest(
    sweep: Sweep,
    comparisons: pd.DataFrame,
    margin: float,
    path: Path,
    column: str = "final_test_acc",
    pdf: bool = False,
) -> list[Path]:
    """The headline figure: each comparison's paired per-seed differences to its baseline.

    One row per row of ``comparisons`` (group, baseline, diff, the interval, n_pairs; ``verdict`` when
    present), settings in natural order, rows of one setting in the given order, a line between
    settings. Per row: one dot per shared seed (``stats.paired_seed_diffs``), the mean (◆) and the
    interval the verdict was decided on (bar: ``decision_low``/``decision_high`` at
    ``decision_level``; the unadjusted 95 % CI when the comparisons lack them; absent without
    spread), the equivalence band ±``margin`` shaded, a line at 0, the verdict and n at the right.
    Fractions are drawn in points. A comparison involving a group that never learned is drawn
    apart: an arrow at the edge with its mean written. [] when there is no comparison.
    """
    import matplotlib.pyplot as plt

    if comparisons is None or not len(comparisons):
        return []
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    keys = panel_keys(sweep)
    comp = comparisons.reset_index(drop=True)
    comp = comp[comp["group"].isin(firsts.index) & comp["baseline"].isin(firsts.index)]
    if not len(comp):
        return []
    setting_of = {g: tuple(str(firsts.loc[g, k]) for k in keys) for g in firsts.index}
    order = sorted(
        range(len(comp)), key=lambda i: (tuple(natural_key(v) for v in setting_of[comp["group"].iloc[i]]), i)
    )
    comp = comp.iloc[order]
    rows = _forest_rows(sweep, comp, column)
    decided = _interval(comp)[2] is not None
    m = 100 * float(margin)
    x_lo, x_hi = _forest_limits(rows, m)
    fig, ax = plt.subplots(figsize=(8.8, 1.9 + 0.42 * len(rows)), layout="constrained")
    ax.axvspan(-m, m, color="tab:green", alpha=0.13, lw=0)
    ax.axvline(0, color="black", lw=0.8)
    for i, r in enumerate(rows):
        if i and setting_of[r["group"]] != setting_of[rows[i - 1]["group"]]:
            ax.axhline(-i + 0.5, color="0.6", lw=0.6)
        _forest_row(ax, -i, r, x_lo, x_hi, decided)
    one_baseline = comp["baseline"].map(firsts["activation"]).nunique() == 1
    labels = [r["group"] if one_baseline else f"{r['group']} − {r['baseline']}" for r in rows]
    ax.set_yticks([-i for i in range(len(rows))], labels, fontsize=8.5)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_xlim(x_lo, x_hi)
    ax.grid(alpha=0.3, axis="x")
    base = firsts["activation"].get(comp["baseline"].iloc[0], comp["baseline"].iloc[0]) if one_baseline else None
    ax.set_xlabel(
        "paired difference in final test accuracy (percentage points)"
        + (f": group − {base} at the same setting" if base else ": group − baseline")
    )
    npairs = sorted({r["n"] for r in rows})
    n_txt = f"n = {npairs[0]}" if len(npairs) == 1 else f"n = {npairs[0]}-{npairs[-1]}"
    at_right = "verdict and n (pairs)" if any(r["verdict"] for r in rows) else "n (pairs)"
    bar = _level_text(rows, decided)
    fig.suptitle(
        f"Paired differences to the baseline, {n_txt} shared seeds per comparison\n"
        f"dots = seeds, ◆ = mean, bar = {bar}; {at_right} at the right",
        fontsize=10,
    )
    _forest_legend(fig, m, bar)
    return style.save(fig, path, pdf)


def _forest_limits(rows: list[dict[str, Any]], m: float) -> tuple[float, float]:
    """The x range: the margin and every value of a comparison that learned, padded; room for arrows."""
    near = [r for r in rows if not r["far"]]
    values = [-m, m, *(v for r in near for v in [r["diff"], r["lo"], r["hi"], *r["d"]] if np.isfinite(v))]
    pad = 0.06 * (max(values) - min(values))
    x_lo, x_hi = min(values) - pad, max(values) + pad
    if any(r["far"] for r in rows):  # room for the arrows of what is off the scale
        x_lo, x_hi = x_lo - 4 * pad, x_hi + 4 * pad
    return x_lo, x_hi


def _forest_row(ax: Any, y: float, r: dict[str, Any], x_lo: float, x_hi: float, decided: bool) -> None:
    """One comparison at height ``y``: seeds, mean and interval, or an arrow when it is off the scale."""
    c = color(r["act"])
    if r["far"]:
        left = (r["diff"] if np.isfinite(r["diff"]) else -1) < 0
        edge, start = (x_lo, x_lo + 0.25 * (x_hi - x_lo)) if left else (x_hi, x_hi - 0.25 * (x_hi - x_lo))
        ax.annotate("", xy=(edge, y), xytext=(start, y), arrowprops={"arrowstyle": "->", "color": c, "lw": 1.6})
        text = f" {r['diff']:+.1f}: never learned, off the scale "
        ax.text(start, y, text, ha="left" if left else "right", va="center", fontsize=7.5, color=c)
    else:
        if len(r["d"]):
            jitter = (np.arange(len(r["d"])) % 5 - 2) * 0.05 if len(r["d"]) > 1 else np.zeros(1)
            ax.plot(r["d"].to_numpy(), y + 0.12 + jitter, "o", ms=4, alpha=0.55, color=c, mec="none")
        if np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
            ax.plot([r["lo"], r["hi"]], [y - 0.12, y - 0.12], lw=2.4, color="black", solid_capstyle="butt")
        if np.isfinite(r["diff"]):
            ax.plot([r["diff"]], [y - 0.12], "D", ms=6.5, color=c, mec="black", mew=0.8, zorder=4)
    right = f"{r['verdict']}  " if r["verdict"] else ""
    level = f", {100 * r['level']:.3g} %" if decided and r["level"] is not None and np.isfinite(r["lo"]) else ""
    ax.text(
        1.01,
        y,
        f"{right}n = {r['n']}{level}",
        transform=ax.get_yaxis_transform(),
        va="center",
        fontsize=8.5,
        fontweight="bold" if r["verdict"] in ("better", "worse", "equivalent") else "normal",
    )


def _forest_legend(fig: Any, m: float, bar: str) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], ls="none", marker="o", color="gray", alpha=0.6),
        Line2D([], [], ls="none", marker="D", color="gray", mec="black"),
        Line2D([], [], color="black", lw=2.4),
        Patch(color="tab:green", alpha=0.25),
    ]
    labels = ["one seed's paired difference", "mean difference", bar, f"±margin ({m:g} points)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8, frameon=False)


# ---------------------------------------------------------------- differences per epoch


def plot_diff_curves(
    sweep: Sweep,
    comparisons: pd.DataFrame,
    path: Path,
    margin: float | None = None,
    metric: str = "test_acc",
    pdf: bool = False,
) -> list[Path]:
    """Difference from the baseline over epochs, paired by seed: for each comparison (group vs its
    baseline at the same setting; with every pair compared, those against the main baseline) the
    mean over the shared seeds of the per-seed difference of ``metric`` at each epoch, with its
    t band (``stats.paired_epoch_diffs``); the ±margin band shaded. One panel per setting of the
    other swept keys, colour = activation, y zoomed to the comparisons whose groups learned (others
    dotted, named in the panel title). [] without comparisons."""
    if comparisons is None or not len(comparisons) or sweep.results.empty:
        return []
    scale = 100.0 if metric.endswith("_acc") else 1.0
    keys = panel_keys(sweep)
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    comp = comparisons[comparisons["group"].isin(firsts.index) & comparisons["baseline"].isin(firsts.index)]
    if not len(comp):
        return []
    # Every pair compared (--all-pairs): draw the comparisons with the main baseline only (the most
    # frequent baseline activation), so that each line is one activation against one baseline.
    base_act = comp["baseline"].map(firsts["activation"])
    comp = comp[base_act == base_act.value_counts().index[0]]
    panels = [s for s in all_settings(sweep) if len(in_setting(firsts.loc[comp["group"]], keys, s))]
    if not panels:
        return []
    apart = S.not_learning_groups(sweep)
    fig, axes = grid(len(panels), max_cols=3, w=4.6, h=3.3)
    any_apart = False
    for ax, setting in zip(axes.flat, panels, strict=False):
        members = set(in_setting(firsts.loc[comp["group"]].reset_index(), keys, setting)["group"])
        if margin is not None and margin > 0:
            ax.axhspan(-scale * margin, scale * margin, color="tab:green", alpha=0.13, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        notes, ns = _diff_panel(ax, sweep, comp[comp["group"].isin(members)], firsts, apart, metric, scale, margin)
        any_apart |= bool(notes)
        n = (f"n = {min(ns)}" + (f"-{max(ns)}" if max(ns) != min(ns) else "") + " pairs") if ns else "n = 0"
        ax.set_title((title(keys, setting) + "; " if keys else "") + n + apart_note(notes), fontsize=8.5)
        ax.grid(alpha=0.3)
    unit = "points" if scale == 100 else ""
    label_axes(axes, "epoch", f"{metric.replace('_', ' ')} − baseline ({unit or 'difference'})", integer_x=True)
    base = ", ".join(sorted(set(comp["baseline"].map(firsts["activation"]))))
    fig.suptitle(
        f"Difference from the baseline ({base}) at the same setting and seed, per epoch\nmean over the "
        f"shared seeds ± {S.BAND_LEVEL:.0%} CI (t, unadjusted)"
        + (f"; shaded: ±margin {scale * margin:g} {unit}" if margin else ""),
        fontsize=10,
    )
    from matplotlib.lines import Line2D

    extra = [(Line2D([], [], color="gray", ls=":"), "never learned (does not set the axis)")] if any_apart else []
    present = set(firsts.loc[comp["group"], "activation"])
    legend_below(fig, [a for a in activations(sweep) if a in present], extra)
    return style.save(fig, path, pdf)


def _diff_panel(
    ax: Any,
    sweep: Sweep,
    comp: pd.DataFrame,
    firsts: pd.DataFrame,
    apart: dict[str, float],
    metric: str,
    scale: float,
    margin: float | None,
) -> tuple[list[tuple[str, float]], list[int]]:
    """One setting's comparisons of plot_diff_curves; returns (groups drawn apart, n pairs of each)."""
    zoom = [-scale * margin, scale * margin] if margin is not None and margin > 0 else []
    notes, ns = [], []
    for _, c in comp.iterrows():
        act = firsts.loc[c["group"], "activation"]
        st = S.paired_epoch_diffs(sweep, c["group"], c["baseline"], metric) * [1, scale, scale, scale]
        st = st[st["n"] > 0]
        if st.empty:
            continue
        ns.append(int(st["n"].iloc[-1]))
        if c["group"] in apart or c["baseline"] in apart:
            ax.plot(st.index, st["diff"], ls=":", lw=1.2, color=color(act), scaley=False)
            notes.append((act, float(st["diff"].iloc[-1])))
            continue
        ax.plot(st.index, st["diff"], marker="o", ms=3, lw=1.6, color=color(act))
        ax.fill_between(st.index, st["ci_low"], st["ci_high"], color=color(act), alpha=0.18, lw=0)
        zoom += [*st["ci_low"].dropna(), *st["ci_high"].dropna(), *st["diff"].dropna()]
    if zoom:
        ylim_from(ax, zoom)
    return notes, ns
