"""Curves over epochs (mean ± sd per group) and final test accuracy against a swept key.

The means, sds and the groups that never learned come from ``report.stats``; this module draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import stats as S
from ..load import COUNTED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep
from . import style
from .style import (
    activations,
    apart_note,
    axis_scale,
    color,
    grid,
    in_setting,
    label_axes,
    legend_below,
    log_ylim,
    natural_sorted,
    panel_keys,
    searched_keys,
    seeds_text,
    settings,
    style_x,
    title,
    ylim_from,
)

CURVES = (  # (column, y label, file, log scale)
    ("train_loss", "train loss (cross-entropy)", "train_loss.png", True),
    ("test_loss", "test loss (cross-entropy)", "test_loss.png", True),
    ("test_acc", "test accuracy (%)", "test_accuracy.png", False),
)


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("_acc") else 1.0


def plot_curves(sweep: Sweep, metric: str, ylabel: str, path: Path, log: bool, pdf: bool = False) -> list[Path]:
    """Mean over the counted seeds of each group, ±sd band (``stats.epoch_curves``); diverged runs
    drawn alone, ending in ×.

    One panel per setting of the other swept keys (natural order), colour = activation; each
    panel's y-axis zoomed to its groups that learned (a group that never learned is drawn dotted
    without setting the scale, and named in the panel with its final value).

    A *searched* key (``searched_keys``: more than MAX_PANELS numeric values, e.g. 40 Optuna trials
    over optimizer.lr) never gets a panel per value. Instead: one panel per activation (per setting
    of any other key), each trial a thin line coloured by the searched key's value (a sequential
    colour map, log-scaled for a key swept over decades, with its colourbar), and the activation's
    best setting (``stats.best_groups``) drawn thick in the activation's colour.
    """
    if searched_keys(sweep):
        return _plot_curves_searched(sweep, metric, ylabel, path, log, pdf)
    from matplotlib.lines import Line2D

    keys, panels = panel_keys(sweep), settings(sweep)
    scale = _scale(metric)
    curves = S.epoch_curves(sweep, metric)
    curves[["mean", "std"]] *= scale
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    curves = curves.join(firsts[keys], on="group") if keys else curves
    diverged = sweep.results[(sweep.results["outcome"] == "diverged") & np.isfinite(sweep.results[metric])]
    apart = S.not_learning_groups(sweep)
    counted = S.counted_runs(sweep)
    fig, axes = grid(len(panels))
    seen = {"diverged": False, "apart": False}
    for ax, setting in zip(axes.flat, panels, strict=False):
        part = in_setting(curves, keys, setting)
        notes = _curve_panel(ax, part, in_setting(diverged, keys, setting), metric, scale, log, apart, seen)
        n = seeds_text(in_setting(counted, keys, setting))
        unit = " %" if metric.endswith("_acc") else ""
        ax.set_title((title(keys, setting) + "; " if keys else "") + n + apart_note(notes, unit), fontsize=8.5)
        ax.grid(alpha=0.3)
    label_axes(axes, "epoch", ylabel, integer_x=True)
    fig.suptitle(
        f"{ylabel.split(' (')[0].capitalize()}: mean ± sd over seeds ({seeds_text(counted)} per group); "
        "y zoomed per panel",
        fontsize=11,
    )
    extra = []
    if seen["diverged"]:
        extra.append((Line2D([], [], color="gray", ls=":", marker="x", mew=2), "diverged run (not in the mean)"))
    if seen["apart"]:
        extra.append((Line2D([], [], color="gray", ls=":"), "never learned (does not set the axis)"))
    legend_below(fig, activations(sweep), extra)
    return style.save(fig, path, pdf)


def _curve_panel(
    ax: Any,
    part: pd.DataFrame,
    diverged: pd.DataFrame,
    metric: str,
    scale: float,
    log: bool,
    apart: dict[str, float],
    seen: dict[str, bool],
) -> list[tuple[str, float]]:
    """One setting's panel of plot_curves; returns the groups drawn apart (activation, last mean)."""
    zoom, notes = [], []
    learning_here = set(part["group"]) - set(apart)
    for group, stat in part.groupby("group", sort=False):
        c = color(stat["activation"].iloc[0])
        if group in apart and learning_here:
            seen["apart"] = True
            ax.plot(stat["epoch"], stat["mean"], ls=":", lw=1.2, color=c, scaley=False)
            notes.append((stat["activation"].iloc[0], float(stat["mean"].iloc[-1])))
            continue
        ax.plot(stat["epoch"], stat["mean"], marker="o", ms=3, lw=1.8, color=c)
        sd = stat["std"].fillna(0)
        lo, hi = stat["mean"] - sd, stat["mean"] + sd
        if stat["count"].max() > 1:
            ax.fill_between(stat["epoch"], lo, hi, color=c, alpha=0.18, lw=0)
        zoom += [*lo, *hi]
    for _, run in diverged.groupby("run"):
        seen["diverged"] = True
        c, y = color(run["activation"].iloc[0]), run[metric] * scale
        ax.plot(run["epoch"], y, lw=0.8, ls=":", color=c, scaley=False)
        ax.plot(run["epoch"].iloc[-1:], y.iloc[-1:], "x", ms=9, mew=2, color=c, scaley=False)
    if log and zoom and min(zoom) > 0:
        log_ylim(ax, zoom)
    elif zoom:
        ylim_from(ax, zoom, floor=0.0 if metric.endswith("_acc") else None)
    return notes


def _plot_curves_searched(sweep: Sweep, metric: str, ylabel: str, path: Path, log: bool, pdf: bool) -> list[Path]:
    """plot_curves for a sweep with a searched key: one panel per activation (see plot_curves)."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    key, keys, acts = searched_keys(sweep)[0], panel_keys(sweep), activations(sweep)
    counted = S.counted_runs(sweep)
    panels = [
        (a, s) for s in settings(sweep) for a in acts if len(in_setting(counted[counted["activation"] == a], keys, s))
    ]
    values = pd.to_numeric(sweep.runs[key].astype(str), errors="coerce")
    vmin, vmax = float(values.min()), float(values.max())
    log_key = axis_scale(values.unique()) in ("log10", "log2") and vmin > 0
    norm = mpl.colors.LogNorm(vmin, vmax) if log_key else mpl.colors.Normalize(vmin, vmax)
    cmap = mpl.colormaps["viridis"]
    best, basis = S.best_groups(sweep, keys)
    scale = _scale(metric)
    curves = S.epoch_curves(sweep, metric, outcomes=(COUNTED,))
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    curves = curves.join(firsts[[key, *keys]], on="group")
    fig, axes = grid(len(panels), max_cols=4, w=3.9, h=3.0)
    floor = 100 * NOT_LEARNING_ACC if metric.endswith("_acc") else -np.inf
    for ax, (act, setting) in zip(axes.flat, panels, strict=False):
        part = in_setting(curves[curves["activation"] == act], keys, setting)
        zoom = []
        for group, stat in part.groupby("group", sort=False):
            y = stat["mean"].to_numpy() * scale
            v = float(pd.to_numeric(pd.Series([stat[key].iloc[0]]).astype(str), errors="coerce").iloc[0])
            is_best = group in best
            ax.plot(
                stat["epoch"],
                y,
                lw=2.6 if is_best else 0.9,
                zorder=3 if is_best else 2,
                color=color(act) if is_best else cmap(norm(v)),
                alpha=1 if is_best else 0.8,
            )
            if len(y) and y[-1] >= floor:
                zoom += list(y)
        n = seeds_text(in_setting(counted[counted["activation"] == act], keys, setting))
        head = f"{act}" + (f", {title(keys, setting)}" if keys else "")
        ax.set_title(f"{head}: {part['group'].nunique()} settings of {key}\n{n} each", fontsize=8.5)
        ax.grid(alpha=0.3)
        if zoom:
            log_ylim(ax, zoom) if log and min(zoom) > 0 else ylim_from(ax, zoom)
    label_axes(axes, "epoch", ylabel, integer_x=True)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes.flat[: len(panels)]), shrink=0.8, label=key)
    fig.suptitle(
        f"{ylabel.split(' (')[0].capitalize()} per setting of the searched {key} (mean over seeds; "
        f"thick: each activation's best setting, chosen on {basis})",
        fontsize=10,
    )
    fig.legend(
        [Line2D([], [], color="gray", lw=0.9), Line2D([], [], color="black", lw=2.6)],
        [f"one setting of {key} (colour: its value)", "the activation's best setting (its colour)"],
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    return style.save(fig, path, pdf)


# ---------------------------------------------------------------- final accuracy against a swept key


def plot_vs_key(sweep: Sweep, summary: pd.DataFrame | None, key: str, path: Path, pdf: bool = False) -> list[Path]:
    """Final test accuracy (mean ± sd over the counted seeds, seeds as dots) against one swept key, a
    line per activation; one panel per setting of any other (non-searched) swept key, never averaged
    over it. x: log10 for a key swept over decades, log2 for powers of two (``axis_scale``), values
    in natural order; y zoomed to the groups that learned, a group that never learned marked ▼ at
    the bottom edge with its value. ``summary`` is not needed (kept for callers)."""
    runs = sweep.runs[sweep.runs["outcome"].isin([COUNTED, NOT_LEARNING])].dropna(subset=["final_test_acc"]).copy()
    if runs.empty:
        return []
    runs["acc"] = 100 * runs["final_test_acc"].astype(float)
    values = runs[key].astype(str)
    kind = axis_scale(values.unique())
    cats = natural_sorted(values.unique())
    runs["x"] = (
        pd.to_numeric(values, errors="coerce") if kind != "category" else values.map({c: i for i, c in enumerate(cats)})
    )
    others = [k for k in panel_keys(sweep) if k != key]
    panels = settings(sweep, others)
    apart = S.not_learning_groups(sweep)
    fig, axes = grid(len(panels), max_cols=3, w=4.8, h=3.6)
    ticks = sorted(runs["x"].unique())
    for ax, setting in zip(axes.flat, panels, strict=False):
        part = in_setting(runs, others, setting)
        _vs_key_panel(ax, part, activations(sweep), apart)
        style_x(ax, kind, ticks, cats if kind == "category" else None)
        ax.set_xlabel(key + {"log2": " (log2 scale)", "log10": " (log scale)"}.get(kind, ""))
        ax.grid(alpha=0.3)
        ax.set_title((title(others, setting) + "; " if others else "") + seeds_text(part), fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("final test accuracy (%)")
    fig.suptitle(
        f"Final test accuracy against {key}: mean ± sd over seeds ({seeds_text(runs)} per group)\n"
        "dots: single seeds" + ("; ▼ at the bottom: never learned (its mean written)" if apart else ""),
        fontsize=10,
    )
    legend_below(fig, activations(sweep))
    return style.save(fig, path, pdf)


def _vs_key_panel(ax: Any, part: pd.DataFrame, acts: list[str], apart: dict[str, float]) -> None:
    """One panel of plot_vs_key: per activation mean ± sd per setting, the seeds, the groups apart."""
    zoom, notes = [], []
    for act in acts:
        r = part[part["activation"] == act]
        if r.empty:
            continue
        stat = r.groupby("group", sort=False).agg(x=("x", "first"), mean=("acc", "mean"), sd=("acc", "std"))
        stat = stat.sort_values("x")
        ok = ~stat.index.isin(list(apart))
        sd = stat["sd"][ok].fillna(0)
        ax.errorbar(stat["x"][ok], stat["mean"][ok], yerr=sd, marker="o", capsize=3, color=color(act), ms=4.5)
        learned = r[~r["group"].isin(list(apart))]
        ax.plot(learned["x"], learned["acc"], ".", ms=4, alpha=0.45, color=color(act))
        zoom += [*(stat["mean"][ok] - sd), *(stat["mean"][ok] + sd), *learned["acc"]]
        notes += [(act, x, mean) for x, mean in zip(stat["x"][~ok], stat["mean"][~ok], strict=True)]
    if zoom:
        lo, _ = ylim_from(ax, zoom)
        stacked: dict[float, int] = {}
        for act, x, m in notes:
            i = stacked[x] = stacked.get(x, -1) + 1
            ax.plot([x], [lo], "v", ms=8, color=color(act), clip_on=False, zorder=5)
            ax.annotate(
                f"{act} {m:.1f} %",
                (x, lo),
                xytext=(-6, 6 + 10 * i),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color=color(act),
            )
    else:  # nothing learned in this panel: draw what there is
        for act, x, m in notes:
            ax.plot([x], [m], "o", color=color(act))
