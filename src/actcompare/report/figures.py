"""Every figure of the report, and the activation-shape plot of scripts/plot_activations.py.

Conventions, the same in every report:

- one fixed colour per activation name (``color``); legends below the panels, never over data;
- the headline figure is ``plot_forest``: the paired per-seed differences to the baseline, their
  mean and CI, and the ±margin band, with each comparison's verdict and number of pairs;
- values of a swept key in natural order everywhere ("2" < "4" < "16", ``natural_key``);
- a numeric key swept over decades (a learning rate) on a log10 axis, a positive integer key
  swept over powers (depth, width, batch size) on a log2 axis (``axis_scale``);
- y-axes zoomed to the data; groups that never learned (``not_learning_groups``: mean final test
  accuracy below ``NOT_LEARNING_ACC``, or an outcome ``not_learning``) are drawn apart, marked at
  the edge with their value, and never set a scale;
- the number of seeds in every title; spread over seeds (sd band, min-max bars or CI) drawn;
- small multiples (one panel per setting of the other swept keys), except for a *searched* key
  (``searched_keys``: numeric with more than ``MAX_PANELS`` distinct values, e.g. an Optuna lr):
  never one panel per trial; see ``plot_curves`` for what is drawn instead;
- every figure saved as PNG and, beside it, as PDF (``save``), each written atomically.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..files import atomic_path
from .load import COUNTED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep

VECTOR = "pdf"  # the vector copy saved beside every PNG
# One colour per shipped activation (conf/activation/*.yaml), fixed across reports; others: hashed.
COLORS = {
    "relu": "#1f77b4",
    "sigmoid": "#ff7f0e",
    "tanh": "#2ca02c",
    "leaky_relu": "#d62728",
    "relu6": "#9467bd",
    "elu": "#8c564b",
    "selu": "#e377c2",
    "gelu": "#7f7f7f",
    "silu": "#bcbd22",
    "mish": "#17becf",
    "softplus": "#393b79",
    "hardswish": "#b5820c",
    "prelu": "#7b4173",
    "identity": "#000000",
}
CURVES = (  # (column, y label, file, log scale)
    ("train_loss", "train loss (cross-entropy)", "train_loss.png", True),
    ("test_loss", "test loss (cross-entropy)", "test_loss.png", True),
    ("test_acc", "test accuracy (%)", "test_accuracy.png", False),
)
MAX_PANELS = 8  # a numeric key with more distinct values than this is searched, not a panel per value
LEVEL = 0.95  # confidence level of every interval drawn (unadjusted; the verdicts are Holm-adjusted)


def color(name: str) -> str:
    """The activation's colour: fixed for the shipped ones, else from a stable hash of its name."""
    if name in COLORS:
        return COLORS[name]
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360, 0.35 + (h >> 9) % 20 / 100, 0.55 + (h >> 15) % 30 / 100)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def save(fig: Any, path: Path) -> list[Path]:
    """Save ``fig`` as ``path`` (PNG) and as the vector copy beside it; close it. Returns both paths."""
    import matplotlib.pyplot as plt

    out = []
    for p, fmt in ((path, path.suffix.lstrip(".") or "png"), (path.with_suffix(f".{VECTOR}"), VECTOR)):
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=120, format=fmt)
        out.append(p)
        fig.set_layout_engine("none")  # the layout is done: the vector copy keeps it (a third faster)
    plt.close(fig)
    return out


def _log_ticks(ax: Any, axis: str = "y") -> None:
    """Labelled ticks on a log axis: 1..9 within a decade, 1-2-5 within three, decades beyond."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    if not ax.has_data():
        return
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 10
    if decades <= 3:
        subs = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 0.8 else (1.0, 2.0, 5.0)
        a.set_major_locator(LogLocator(base=10, subs=subs))
        a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        a.set_major_locator(LogLocator(base=10, numticks=8))
    a.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------- order, scales, groups


def natural_key(value: Any) -> tuple:
    """Sort key: numbers by value ("0.001" < "2" < "16"), text with its digit runs compared as numbers
    ("[64, 64]" < "[128]" < "[256, 64]"; "layer 2" < "layer 10"); numbers before text."""
    text = str(value)
    try:
        return (0, float(text), ())
    except ValueError:
        pass
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", text) if p)
    return (1, 0.0, parts)


def natural_sorted(values: Sequence[Any]) -> list:
    return sorted(dict.fromkeys(values), key=natural_key)


def _numbers(values: Sequence[Any]) -> np.ndarray | None:
    num = pd.to_numeric(pd.Series(list(values), dtype=object).astype(str), errors="coerce")
    return None if num.isna().any() or not len(num) else num.to_numpy(float)


def axis_scale(values: Sequence[Any]) -> str:
    """How to draw a swept key's values on an axis: "log2" for positive integers spanning a factor of
    4 or more (depth, width, batch size: 2, 4, 8, 16), "log10" for other positive numbers spanning a
    factor of 10 or more (a learning rate over decades), else "linear" ("category" for text)."""
    x = _numbers(values)
    if x is None:
        return "category"
    x = np.unique(x)
    if len(x) < 2 or x.min() <= 0:
        return "linear"
    ratio = x.max() / x.min()
    if np.all(x == np.round(x)) and ratio >= 4:
        return "log2"
    return "log10" if ratio >= 10 else "linear"


def _style_x(ax: Any, scale: str, values: Sequence[float], labels: Sequence[str] | None = None) -> None:
    """Apply ``axis_scale``'s choice; ticks at the swept values (when few), labelled as given."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    xs = sorted(set(values))
    if scale == "log2":
        ax.set_xscale("log", base=2)
    elif scale == "log10":
        ax.set_xscale("log")
    if scale == "category" or len(xs) <= MAX_PANELS:
        ax.set_xticks(xs, labels if labels is not None else [f"{v:g}" for v in xs])
        ax.xaxis.set_minor_locator(NullLocator())
        if len(xs) > 5 and max(len(t) for t in (labels or [f"{v:g}" for v in xs])) > 5:
            ax.tick_params(axis="x", labelrotation=30)
    elif scale in ("log2", "log10"):
        ax.xaxis.set_major_locator(LogLocator(base=2 if scale == "log2" else 10, numticks=8))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def searched_keys(sweep: Sweep) -> list[str]:
    """Swept keys with more than MAX_PANELS numeric values (an Optuna search): never one panel each."""
    runs = sweep.runs
    return [
        k
        for k in sweep.setting_cols
        if k in runs and runs[k].nunique() > MAX_PANELS and _numbers(runs[k].unique()) is not None
    ]


def panel_keys(sweep: Sweep) -> list[str]:
    """The swept keys that get one panel (or row) per setting: the other keys, searched ones aside."""
    searched = set(searched_keys(sweep))
    return [k for k in sweep.setting_cols if k not in searched]


def _settings(sweep: Sweep, keys: Sequence[str] | None = None) -> list[tuple]:
    """The settings of ``keys`` (default: ``panel_keys``) present in the sweep, in natural order."""
    keys = panel_keys(sweep) if keys is None else list(keys)
    if not keys:
        return [()]
    combos = {tuple(str(v) for v in r) for r in sweep.runs[keys].itertuples(index=False)}
    return sorted(combos, key=lambda c: tuple(natural_key(v) for v in c))


def _in_setting(df: pd.DataFrame, keys: Sequence[str], setting: tuple) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in zip(keys, setting, strict=True):
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    return df[mask]


def _title(keys: Sequence[str], setting: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, setting, strict=True))


def _grid(n: int, max_cols: int = 4, w: float = 4.2, h: float = 3.2, **kw: Any) -> tuple[Any, np.ndarray]:
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(n / max_cols))
    cols = max(1, math.ceil(n / rows))  # balanced: 5 panels as 3 + 2, not 4 + 1
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(w * cols, 6.5), h * rows + 0.9), layout="constrained", squeeze=False, **kw
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _legend_below(fig: Any, activations: Sequence[str], extra: Sequence[tuple[Any, str]] = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color(a), lw=2.5, marker="o", ms=4) for a in activations]
    labels = list(activations)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    ncol = len(labels) if len(labels) <= 9 else math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _activations(sweep: Sweep) -> list[str]:
    return list(dict.fromkeys(sweep.runs["activation"]))


def _counted(sweep: Sweep) -> pd.DataFrame:
    return sweep.runs[sweep.runs["outcome"] == COUNTED]


def _drawn(sweep: Sweep) -> pd.DataFrame:
    """Counted runs and runs that never learned: both are drawn (the latter apart, never in a mean)."""
    return sweep.runs[sweep.runs["outcome"].isin([COUNTED, NOT_LEARNING])]


def seeds_text(runs: pd.DataFrame, by: str = "group") -> str:
    """ "n = 3 seeds" (per group), "n = 2-3 seeds" when groups differ; over the rows given."""
    counts = runs.groupby(by)["seed"].nunique() if len(runs) else pd.Series(dtype=int)
    if not len(counts):
        return "n = 0 seeds"
    lo, hi = int(counts.min()), int(counts.max())
    return f"n = {lo} seed{'s' if hi != 1 else ''}" if lo == hi else f"n = {lo}-{hi} seeds"


def not_learning_groups(sweep: Sweep) -> dict[str, float]:
    """{group: mean final test accuracy} of the groups that never learned: every finished run of the
    group has outcome ``not_learning``, or the counted runs' mean final test accuracy is below
    NOT_LEARNING_ACC."""
    runs = sweep.runs
    out: dict[str, float] = {}
    for group, g in runs.groupby("group", sort=False):
        counted = g[g["outcome"] == COUNTED]["final_test_acc"].dropna()
        flagged = g[g["outcome"] == NOT_LEARNING]["final_test_acc"].dropna()
        if len(counted) and counted.mean() < NOT_LEARNING_ACC:
            out[str(group)] = float(counted.mean())
        elif not len(counted) and len(flagged):
            out[str(group)] = float(flagged.mean())
    return out


def best_groups(sweep: Sweep) -> tuple[list[str], str]:
    """Each activation's best group at every setting of the panel keys, chosen over the searched
    keys on the mean final validation accuracy when the runs recorded one, else on the mean final
    test accuracy; and the basis ("validation" or "test (optimistic)")."""
    counted = _counted(sweep)
    on_val = sweep.selected_on == "val" and "final_val_acc" in counted and counted["final_val_acc"].notna().any()
    col = "final_val_acc" if on_val else "final_test_acc"
    means = counted.groupby("group")[col].mean().dropna()
    keys = panel_keys(sweep)
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    picks = []
    for _, members in firsts.loc[firsts.index.isin(means.index)].groupby(["activation", *keys], sort=False):
        picks.append(str(means.loc[members.index].idxmax()))
    return picks, ("validation" if on_val else "test (optimistic: chosen on the set it reports)")


def _ylim_from(ax: Any, values: Sequence[float], pad: float = 0.08, floor: float | None = None) -> tuple[float, float]:
    """Zoom the y-axis to ``values`` (finite ones), with ``pad`` of their range on each side."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return ax.get_ylim()
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.05
    lo, hi = lo - pad * span, hi + pad * span
    if floor is not None:
        lo = max(lo, floor)
    ax.set_ylim(lo, hi)
    return lo, hi


def _apart_note(items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """A title line naming the groups drawn apart (dotted, not setting the axis) with their last value."""
    if not items:
        return ""
    return "\nnever learned (dotted, off the zoom):\n" + ", ".join(f"{a} {v:.3g}{unit}" for a, v in items)


# ---------------------------------------------------------------- curves over epochs


def plot_curves(sweep: Sweep, metric: str, ylabel: str, path: Path, log: bool) -> list[Path]:
    """Mean over the counted seeds of each group, ±sd band; diverged runs drawn alone, ending in ×.

    One panel per setting of the other swept keys (natural order), colour = activation; each
    panel's y-axis zoomed to its groups that learned (a group that never learned is drawn dotted
    without setting the scale, and named in the panel with its final value).

    A *searched* key (``searched_keys``: more than MAX_PANELS numeric values, e.g. 40 Optuna trials
    over optimizer.lr) never gets a panel per value. Instead: one panel per activation (per setting
    of any other key), each trial a thin line coloured by the searched key's value (a sequential
    colour map, log-scaled for a key swept over decades, with its colourbar), and the activation's
    best setting (``best_groups``) drawn thick in the activation's colour. That keeps every trial
    visible (how the curves change with the searched key) and still reads at a glance, which
    showing only the best setting would not; the best one is marked since the report compares it.
    """
    df = sweep.results.copy()
    scale = 100.0 if metric.endswith("_acc") else 1.0
    df[metric] = df[metric] * scale
    if searched_keys(sweep):
        return _plot_curves_searched(sweep, df, metric, ylabel, path, log)
    from matplotlib.lines import Line2D

    keys, settings, acts = panel_keys(sweep), _settings(sweep), _activations(sweep)
    apart = not_learning_groups(sweep)
    fig, axes = _grid(len(settings))
    any_diverged = any_apart = False
    for ax, setting in zip(axes.flat, settings, strict=False):
        part = _in_setting(df, keys, setting)
        zoom, notes = [], []
        learning_here = set(part["group"]) - set(apart)
        for act in acts:
            g = part[(part["activation"] == act) & np.isfinite(part[metric])]
            for group, gg in g.groupby("group", sort=False):
                counted = gg[gg["outcome"].isin([COUNTED, NOT_LEARNING])]
                if not len(counted):
                    continue
                stat = counted.groupby("epoch")[metric].agg(["mean", "std", "count"])
                off = group in apart and bool(learning_here)
                if off:
                    any_apart = True
                    ax.plot(stat.index, stat["mean"], ls=":", lw=1.2, color=color(act), scaley=False)
                    notes.append((act, float(stat["mean"].iloc[-1])))
                    continue
                ax.plot(stat.index, stat["mean"], marker="o", ms=3, lw=1.8, color=color(act))
                lo, hi = stat["mean"] - stat["std"].fillna(0), stat["mean"] + stat["std"].fillna(0)
                if stat["count"].max() > 1:
                    ax.fill_between(stat.index, lo, hi, color=color(act), alpha=0.18, lw=0)
                zoom += [*lo, *hi]
            for _, run in g[g["outcome"] == "diverged"].groupby("run"):
                any_diverged = True
                ax.plot(run["epoch"], run[metric], lw=0.8, ls=":", color=color(act), scaley=False)
                ax.plot(run["epoch"].iloc[-1:], run[metric].iloc[-1:], "x", ms=9, mew=2, color=color(act), scaley=False)
        n = seeds_text(_in_setting(_counted(sweep), keys, setting))
        unit = " %" if metric.endswith("_acc") else ""
        ax.set_title((_title(keys, setting) + "; " if keys else "") + n + _apart_note(notes, unit), fontsize=8.5)
        ax.grid(alpha=0.3)
        if log and zoom and min(zoom) > 0:
            ax.set_yscale("log")
            lo, hi = min(zoom), max(zoom)
            pad = (hi / lo) ** 0.05 if hi > lo else 1.1  # one point (one epoch, one run): a band around it
            ax.set_ylim(lo / pad, hi * pad)
        elif zoom:
            _ylim_from(ax, zoom, floor=0.0 if metric.endswith("_acc") else None)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes.flat:
        if ax.axison:
            ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if log:
        for ax in axes.flat[: len(settings)]:
            if ax.get_yscale() == "log":
                _log_ticks(ax)
    fig.suptitle(
        f"{ylabel.split(' (')[0].capitalize()}: mean ± sd over seeds ({seeds_text(_counted(sweep))} "
        "per group); y zoomed per panel",
        fontsize=11,
    )
    extra = []
    if any_diverged:
        extra.append((Line2D([], [], color="gray", ls=":", marker="x", mew=2), "diverged run (not in the mean)"))
    if any_apart:
        extra.append((Line2D([], [], color="gray", ls=":"), "never learned (does not set the axis)"))
    _legend_below(fig, acts, extra)
    return save(fig, path)


def _plot_curves_searched(
    sweep: Sweep, df: pd.DataFrame, metric: str, ylabel: str, path: Path, log: bool
) -> list[Path]:
    """plot_curves for a sweep with a searched key: one panel per activation (see plot_curves)."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    key = searched_keys(sweep)[0]
    keys = panel_keys(sweep)
    acts = _activations(sweep)
    panels = [
        (a, s)
        for s in _settings(sweep)
        for a in acts
        if len(_in_setting(sweep.runs[sweep.runs["activation"] == a], keys, s))
    ]
    values = pd.to_numeric(sweep.runs[key].astype(str), errors="coerce")
    kind = axis_scale(values.unique())
    vmin, vmax = float(values.min()), float(values.max())
    norm = (
        mpl.colors.LogNorm(vmin, vmax) if kind in ("log10", "log2") and vmin > 0 else mpl.colors.Normalize(vmin, vmax)
    )
    cmap = mpl.colormaps["viridis"]
    best, basis = best_groups(sweep)
    fig, axes = _grid(len(panels), max_cols=4, w=3.9, h=3.0)
    counted = df[df["outcome"] == COUNTED]
    for ax, (act, setting) in zip(axes.flat, panels, strict=False):
        part = _in_setting(counted[counted["activation"] == act], keys, setting)
        zoom = []
        for group, g in part.groupby("group", sort=False):
            stat = g.groupby("epoch")[metric].mean()
            v = float(pd.to_numeric(pd.Series([g[key].iloc[0]]).astype(str), errors="coerce").iloc[0])
            is_best = group in best
            ax.plot(
                stat.index,
                stat.to_numpy(),
                lw=2.6 if is_best else 0.9,
                zorder=3 if is_best else 2,
                color=color(act) if is_best else cmap(norm(v)),
                alpha=1 if is_best else 0.8,
            )
            if stat.notna().any() and stat.iloc[-1] >= (100 * NOT_LEARNING_ACC if metric.endswith("_acc") else -np.inf):
                zoom += list(stat.dropna())
        n_trials = part["group"].nunique()
        n = seeds_text(_in_setting(_counted(sweep)[_counted(sweep)["activation"] == act], keys, setting))
        ax.set_title(
            f"{act}" + (f", {_title(keys, setting)}" if keys else "") + f": {n_trials} settings of {key}\n{n} each",
            fontsize=8.5,
        )
        ax.grid(alpha=0.3)
        if zoom:
            if log and min(zoom) > 0:
                ax.set_yscale("log")
                lo, hi = min(zoom), max(zoom)
                ax.set_ylim(lo / (hi / lo) ** 0.05, hi * (hi / lo) ** 0.05)
                _log_ticks(ax)
            else:
                _ylim_from(ax, zoom)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes.flat:
        if ax.axison:
            ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    used = [ax for ax in axes.flat[: len(panels)]]
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=used, shrink=0.8, label=key)
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
    return save(fig, path)


# ---------------------------------------------------------------- final accuracy against a swept key


def plot_vs_key(sweep: Sweep, summary: pd.DataFrame | None, key: str, path: Path) -> list[Path]:
    """Final test accuracy (mean ± sd over the counted seeds, seeds as dots) against one swept key, a
    line per activation; one panel per setting of any other (non-searched) swept key, never averaged
    over it. x: log10 for a key swept over decades, log2 for powers of two (``axis_scale``), values
    in natural order; y zoomed to the groups that learned, a group that never learned marked ▼ at
    the bottom edge with its value. ``summary`` is not needed (kept for callers); the numbers come
    from ``sweep.runs``."""
    runs = _drawn(sweep).dropna(subset=["final_test_acc"]).copy()
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
    settings = _settings(sweep, others)
    apart = not_learning_groups(sweep)
    fig, axes = _grid(len(settings), max_cols=3, w=4.8, h=3.6)
    acts = _activations(sweep)
    for ax, setting in zip(axes.flat, settings, strict=False):
        part = _in_setting(runs, others, setting)
        zoom, notes = [], []
        for act in acts:
            r = part[part["activation"] == act]
            if r.empty:
                continue
            stat = r.groupby("group", sort=False).agg(x=("x", "first"), mean=("acc", "mean"), sd=("acc", "std"))
            stat = stat.sort_values("x")
            ok = ~stat.index.isin(list(apart))
            ax.errorbar(
                stat["x"][ok],
                stat["mean"][ok],
                yerr=stat["sd"][ok].fillna(0),
                marker="o",
                capsize=3,
                color=color(act),
                ms=4.5,
            )
            ax.plot(
                r["x"][~r["group"].isin(list(apart))],
                r["acc"][~r["group"].isin(list(apart))],
                ".",
                ms=4,
                alpha=0.45,
                color=color(act),
            )
            zoom += [
                *(stat["mean"] - stat["sd"].fillna(0))[ok],
                *(stat["mean"] + stat["sd"].fillna(0))[ok],
                *r["acc"][~r["group"].isin(list(apart))],
            ]
            notes += [(act, x, mean) for x, mean in zip(stat["x"][~ok], stat["mean"][~ok], strict=True)]
        if zoom:
            lo, _ = _ylim_from(ax, zoom)
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
        elif notes:  # nothing learned in this panel: draw what there is
            for act, x, m in notes:
                ax.plot([x], [m], "o", color=color(act))
        ticks = sorted(runs["x"].unique())
        _style_x(ax, kind, ticks, cats if kind == "category" else None)
        ax.set_xlabel(key + {"log2": " (log2 scale)", "log10": " (log scale)"}.get(kind, ""))
        ax.grid(alpha=0.3)
        n = seeds_text(part)
        ax.set_title((_title(others, setting) + "; " if others else "") + n, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("final test accuracy (%)")
    fig.suptitle(
        f"Final test accuracy against {key}: mean ± sd over seeds ({seeds_text(runs)} per group)\n"
        "dots: single seeds" + ("; ▼ at the bottom: never learned (its mean written)" if apart else ""),
        fontsize=10,
    )
    _legend_below(fig, acts)
    return save(fig, path)


# ---------------------------------------------------------------- paired differences to the baseline


def margin_of(summary: pd.DataFrame) -> float:
    """The declared equivalence margin (accuracy fraction): ``summary.attrs["margin"]`` when the
    statistics set it, else verdicts.DEFAULT_MARGIN."""
    m = summary.attrs.get("margin") if summary is not None else None
    if isinstance(m, (int, float)) and math.isfinite(m):
        return float(m)
    try:
        from .verdicts import DEFAULT_MARGIN
    except ImportError:
        return 0.002
    return float(DEFAULT_MARGIN)


def paired_seed_diffs(sweep: Sweep, group: str, baseline: str, column: str = "final_test_acc") -> pd.Series:
    """{seed: value(group) - value(baseline)} over the seeds both groups completed (counted runs),
    in natural seed order: the pairs a comparison is made of (never a seed against a mean)."""
    counted = _counted(sweep).dropna(subset=[column])
    a = counted[counted["group"] == group].drop_duplicates("seed").set_index("seed")[column].astype(float)
    b = counted[counted["group"] == baseline].drop_duplicates("seed").set_index("seed")[column].astype(float)
    shared = natural_sorted([s for s in a.index if s in b.index])
    return pd.Series([a[s] - b[s] for s in shared], index=pd.Index(shared, name="seed"), dtype=float)


def _verdict_text(row: Mapping[str, Any]) -> str:
    v = row.get("verdict")
    return str(v) if isinstance(v, str) and v else ""


def plot_forest(
    sweep: Sweep, comparisons: pd.DataFrame, margin: float, path: Path, column: str = "final_test_acc"
) -> list[Path]:
    """The headline figure: each comparison's paired per-seed differences to its baseline.

    One row per row of ``comparisons`` (columns group, baseline, diff, diff_ci_low, diff_ci_high,
    n_pairs; ``verdict`` when present), settings in natural order, rows of one setting in the given
    order, a line between settings. Per row: one dot per shared seed (the
    paired difference of ``column``, from ``sweep.runs``), the mean (◆) and its CI (bar; from
    ``comparisons``, as the statistics computed it; absent when the differences have no spread), the
    equivalence band ±``margin`` shaded, a line at 0, and at the right the verdict and n. Fractions
    are drawn in percentage points. A comparison involving a group that never learned is drawn apart:
    an arrow at the axis edge with its mean written, so that it does not set the scale. [] when
    there is no comparison.
    """
    import matplotlib.pyplot as plt

    if comparisons is None or not len(comparisons):
        return []
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    acts = firsts["activation"]
    keys = panel_keys(sweep)
    comp = comparisons.reset_index(drop=True)
    comp = comp[comp["group"].isin(firsts.index) & comp["baseline"].isin(firsts.index)]
    if not len(comp):
        return []
    setting_of = {g: tuple(str(firsts.loc[g, k]) for k in keys) for g in firsts.index}
    comp = comp.assign(__rank=range(len(comp)))
    comp = comp.iloc[
        sorted(
            range(len(comp)),
            key=lambda i: (tuple(natural_key(v) for v in setting_of[comp["group"].iloc[i]]), comp["__rank"].iloc[i]),
        )
    ]
    apart = not_learning_groups(sweep)
    one_baseline = comp["baseline"].map(acts).nunique() == 1
    m = 100 * float(margin)
    rows = []
    for _, c in comp.iterrows():
        d = 100 * paired_seed_diffs(sweep, c["group"], c["baseline"], column)
        diff = 100 * float(c["diff"]) if pd.notna(c.get("diff")) else (d.mean() if len(d) else math.nan)
        lo = 100 * float(c["diff_ci_low"]) if pd.notna(c.get("diff_ci_low")) else math.nan
        hi = 100 * float(c["diff_ci_high"]) if pd.notna(c.get("diff_ci_high")) else math.nan
        n = int(c["n_pairs"]) if pd.notna(c.get("n_pairs")) else len(d)
        far = c["group"] in apart or c["baseline"] in apart
        if far and not np.isfinite(diff):  # runs that never learned are not counted: their mean, written
            mean = {**sweep.runs[sweep.runs["outcome"] == COUNTED].groupby("group")["final_test_acc"].mean(), **apart}
            diff = 100 * (mean.get(c["group"], math.nan) - mean.get(c["baseline"], math.nan))
        rows.append(
            {
                "group": c["group"],
                "baseline": c["baseline"],
                "d": d,
                "diff": diff,
                "lo": lo,
                "hi": hi,
                "n": n,
                "far": far,
                "verdict": _verdict_text(c),
                "act": acts.get(c["group"], str(c["group"])),
            }
        )
    near = [r for r in rows if not r["far"]]
    values = [-m, m, *(v for r in near for v in [r["diff"], r["lo"], r["hi"], *r["d"]] if np.isfinite(v))]
    pad = 0.06 * (max(values) - min(values))
    x_lo, x_hi = min(values) - pad, max(values) + pad
    if any(r["far"] for r in rows):  # room for the arrows of what is off the scale
        x_lo, x_hi = x_lo - 4 * pad, x_hi + 4 * pad
    height = 1.9 + 0.42 * len(rows)
    fig, ax = plt.subplots(figsize=(8.8, height), layout="constrained")
    ax.axvspan(-m, m, color="tab:green", alpha=0.13, lw=0, label=f"equivalence margin ±{m:g} points")
    ax.axvline(0, color="black", lw=0.8)
    for i, r in enumerate(rows):
        y = -i
        c = color(r["act"])
        if i and setting_of[r["group"]] != setting_of[rows[i - 1]["group"]]:
            ax.axhline(y + 0.5, color="0.6", lw=0.6)
        if r["far"]:
            left = (r["diff"] if np.isfinite(r["diff"]) else -1) < 0
            edge, start = (x_lo, x_lo + 0.25 * (x_hi - x_lo)) if left else (x_hi, x_hi - 0.25 * (x_hi - x_lo))
            ax.annotate("", xy=(edge, y), xytext=(start, y), arrowprops={"arrowstyle": "->", "color": c, "lw": 1.6})
            ax.text(
                start,
                y,
                f" {r['diff']:+.1f}: never learned, off the scale ",
                ha="left" if left else "right",
                va="center",
                fontsize=7.5,
                color=c,
            )
        else:
            if len(r["d"]):
                jitter = (np.arange(len(r["d"])) % 5 - 2) * 0.05 if len(r["d"]) > 1 else np.zeros(1)
                ax.plot(r["d"].to_numpy(), y + 0.12 + jitter, "o", ms=4, alpha=0.55, color=c, mec="none")
            if np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
                ax.plot([r["lo"], r["hi"]], [y - 0.12, y - 0.12], lw=2.4, color="black", solid_capstyle="butt")
            if np.isfinite(r["diff"]):
                ax.plot([r["diff"]], [y - 0.12], "D", ms=6.5, color=c, mec="black", mew=0.8, zorder=4)
        right = f"{r['verdict']}  " if r["verdict"] else ""
        ax.text(
            1.01,
            y,
            f"{right}n = {r['n']}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=8.5,
            fontweight="bold" if r["verdict"] in ("better", "worse", "equivalent") else "normal",
        )
    labels = [r["group"] if one_baseline else f"{r['group']} − {r['baseline']}" for r in rows]
    ax.set_yticks([-i for i in range(len(rows))], labels, fontsize=8.5)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_xlim(x_lo, x_hi)
    ax.grid(alpha=0.3, axis="x")
    base = acts.get(comp["baseline"].iloc[0], comp["baseline"].iloc[0]) if one_baseline else None
    ax.set_xlabel(
        "paired difference in final test accuracy (percentage points)"
        + (f": group − {base} at the same setting" if base else ": group − baseline")
    )
    npairs = sorted({r["n"] for r in rows})
    n_txt = f"n = {npairs[0]}" if len(npairs) == 1 else f"n = {npairs[0]}-{npairs[-1]}"
    verdicts = "; verdict and n (pairs) at the right" if any(r["verdict"] for r in rows) else "; n (pairs) at the right"
    fig.suptitle(
        f"Paired differences to the baseline, {n_txt} shared seeds per comparison\ndots = seeds, "
        f"◆ = mean, bar = {LEVEL:.0%} CI (unadjusted){verdicts}",
        fontsize=10,
    )
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], ls="none", marker="o", color="gray", alpha=0.6),
        Line2D([], [], ls="none", marker="D", color="gray", mec="black"),
        Line2D([], [], color="black", lw=2.4),
        Patch(color="tab:green", alpha=0.25),
    ]
    fig.legend(
        handles,
        ["one seed's paired difference", "mean difference", f"{LEVEL:.0%} CI of the mean", f"±margin ({m:g} points)"],
        loc="outside lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    return save(fig, path)


def paired_epoch_diffs(sweep: Sweep, group: str, baseline: str, metric: str = "test_acc") -> pd.DataFrame:
    """Per epoch, over the seeds both groups completed (counted runs): n, mean of the paired
    differences of ``metric`` and its t interval at LEVEL (scipy ``t.ppf``: a band of the same kind
    as ttest_rel's interval; NaN below 2 pairs, zero width where every pair ties)."""
    res = sweep.results
    res = res[res["outcome"] == COUNTED]
    seeds = _counted(sweep).set_index("run")["seed"]
    res = res.assign(seed=res["run"].map(seeds))  # the run's seed (run.json), whatever metrics.csv holds

    def per_seed(g: str) -> pd.DataFrame:
        return res[res["group"] == g].pivot_table(index="epoch", columns="seed", values=metric, aggfunc="first")

    a, b = per_seed(group), per_seed(baseline)
    shared = [s for s in a.columns if s in b.columns]
    epochs = a.index.intersection(b.index)
    d = (a.loc[epochs, shared] - b.loc[epochs, shared]).astype(float)
    n = d.notna().sum(axis=1)
    mean = d.mean(axis=1)
    sd = d.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / np.sqrt(n)
    half = half.where(n >= 2)
    return pd.DataFrame({"n": n, "diff": mean, "ci_low": mean - half, "ci_high": mean + half})


def plot_diff_curves(
    sweep: Sweep, comparisons: pd.DataFrame, path: Path, margin: float | None = None, metric: str = "test_acc"
) -> list[Path]:
    """Difference from the baseline over epochs, paired by seed: for each comparison (group vs its
    baseline at the same setting; with every pair compared, those against the main baseline) the
    mean over the shared seeds of the per-seed difference of ``metric`` at each epoch, with its
    t-based CI band (``paired_epoch_diffs``); the ±margin band shaded. One panel per setting of the
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
    settings = [s for s in _settings(sweep) if len(_in_setting(firsts.loc[comp["group"]], keys, s))]
    if not settings:
        return []
    apart = not_learning_groups(sweep)
    acts = _activations(sweep)
    fig, axes = _grid(len(settings), max_cols=3, w=4.6, h=3.3)
    bases = set()
    any_apart = False
    for ax, setting in zip(axes.flat, settings, strict=False):
        members = _in_setting(firsts.loc[comp["group"]].reset_index(), keys, setting)["group"]
        zoom, notes, ns = [], [], []
        if margin is not None and margin > 0:
            ax.axhspan(-scale * margin, scale * margin, color="tab:green", alpha=0.13, lw=0)
            zoom += [-scale * margin, scale * margin]
        ax.axhline(0, color="black", lw=0.8)
        for _, c in comp[comp["group"].isin(set(members))].iterrows():
            act = firsts.loc[c["group"], "activation"]
            bases.add(firsts.loc[c["baseline"], "activation"])
            st = paired_epoch_diffs(sweep, c["group"], c["baseline"], metric) * [1, scale, scale, scale]
            st = st[st["n"] > 0]
            if st.empty:
                continue
            ns.append(int(st["n"].iloc[-1]))
            if c["group"] in apart or c["baseline"] in apart:
                any_apart = True
                ax.plot(st.index, st["diff"], ls=":", lw=1.2, color=color(act), scaley=False)
                notes.append((act, float(st["diff"].iloc[-1])))
                continue
            ax.plot(st.index, st["diff"], marker="o", ms=3, lw=1.6, color=color(act))
            ax.fill_between(st.index, st["ci_low"], st["ci_high"], color=color(act), alpha=0.18, lw=0)
            zoom += [*st["ci_low"].dropna(), *st["ci_high"].dropna(), *st["diff"].dropna()]
        if zoom:
            _ylim_from(ax, zoom)
        n = (f"n = {min(ns)}" + (f"-{max(ns)}" if max(ns) != min(ns) else "") + " pairs") if ns else "n = 0"
        ax.set_title((_title(keys, setting) + "; " if keys else "") + n + _apart_note(notes), fontsize=8.5)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    unit = "points" if scale == 100 else ""
    for ax in axes.flat:
        if ax.axison:
            ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric.replace('_', ' ')} − baseline ({unit or 'difference'})")
    base = ", ".join(sorted(bases))
    fig.suptitle(
        f"Difference from the baseline ({base}) at the same setting and seed, per epoch\nmean over the "
        f"shared seeds ± {LEVEL:.0%} CI (t, unadjusted)"
        + (f"; shaded: ±margin {scale * margin:g} {unit}" if margin else ""),
        fontsize=10,
    )
    from matplotlib.lines import Line2D

    extra = [(Line2D([], [], color="gray", ls=":"), "never learned (does not set the axis)")] if any_apart else []
    present = [a for a in acts if a in set(firsts.loc[comp["group"], "activation"])]
    _legend_below(fig, present, extra)
    return save(fig, path)


# ---------------------------------------------------------------- diagnostics


def no_gradient_columns(diag: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """(most, every, note): the share of a layer's units without gradient for most / for every probe
    image. From ``no_grad_frac`` / ``no_grad_all_frac`` (diagnostics.py's one category); for a
    diagnostics.csv written before them: inactive + saturated (a lower bound: a unit off for some
    images and saturated for others counts in neither) and dead_frac, with a note saying so."""

    def col(name: str) -> pd.Series:
        return diag[name] if name in diag else pd.Series(np.nan, index=diag.index)

    most, every = col("no_grad_frac"), col("no_grad_all_frac")
    hidden = col("inactive_frac").notna() | col("saturated_frac").notna() | most.notna()
    old = hidden & most.isna()  # rows of a run recorded before no_grad_frac (a merged sweep may mix both)
    if not old.any():
        return most, every, ""
    most = most.where(~old, col("inactive_frac") + col("saturated_frac"))
    every = every.where(~old, col("dead_frac"))
    n_old = diag.loc[old, "run"].nunique() if "run" in diag else int(old.sum())
    what = "every run" if old.sum() == hidden.sum() else f"{n_old} run(s)"
    note = (
        f"older diagnostics.csv ({what}: no no_grad_frac): no gradient = inactive + saturated at the old 1 % "
        "level (a lower bound), every image = dead (off)"
    )
    return most, every, note


def _per_layer(
    ax: Any, data: pd.DataFrame, acts: Sequence[str], y: str, scale: float, kind: str, lower: str | None = None
) -> list[float]:
    """Layers as categories on x, one bar (or point) per activation side by side: the mean over the
    runs (seeds) and a min-max bar over them. ``lower``: a column drawn as the darker lower part of
    each bar (a subset of ``y``). Returns the values drawn (for zooming)."""
    layers = sorted(data["layer"].unique())
    pos = {layer: i for i, layer in enumerate(layers)}
    present = [a for a in acts if (data["activation"] == a).any()]
    width = 0.8 / max(len(present), 1)
    drawn: list[float] = []
    for j, act in enumerate(present):
        g = data[data["activation"] == act].groupby("layer")[y].agg(["mean", "min", "max"]).dropna()
        if g.empty:
            continue
        x = np.array([pos[layer] for layer in g.index]) - 0.4 + width * (j + 0.5)
        mean, lo, hi = (g[c].to_numpy() * scale for c in ("mean", "min", "max"))
        if kind == "bar":
            ax.bar(x, mean, width=width * 0.92, color=color(act), alpha=0.45)
            if lower is not None:
                low = data[data["activation"] == act].groupby("layer")[lower].mean().reindex(g.index).to_numpy()
                ax.bar(x, low * scale, width=width * 0.92, color=color(act))
        else:
            ax.plot(x, mean, "o", ms=4, color=color(act), ls="none")
        ax.vlines(x, lo, hi, color="black" if kind == "bar" else color(act), lw=0.9)
        drawn += [*lo, *hi]
    last = max(layers) if layers else 0
    ax.set_xticks(
        range(len(layers)),
        [("out" if (layer == last and kind != "bar") else str(int(layer))) for layer in layers],
        fontsize=7 if len(layers) > 8 else 9,
    )
    ax.set_xlim(-0.6, len(layers) - 0.4)
    return drawn


def plot_diagnostics(sweep: Sweep, path: Path) -> list[Path]:
    """Per setting (a row; for a searched key only each activation's best setting, one row): the
    first-layer weight-gradient norm over epochs (mean over seeds, min-max band); per layer at the
    final epoch (layers as categories): the weight-gradient norm and the units without gradient
    (``no_gradient_columns``: dark = for every probe image, light = for most), each the mean over
    seeds with a min-max bar. Every unit is in exactly one category (dark, light, or passing
    gradient: the rest)."""
    from matplotlib.patches import Patch

    diag = sweep.diagnostics
    if diag.empty or "outcome" not in diag:
        return []
    diag = diag[diag["outcome"].isin([COUNTED, "diverged", NOT_LEARNING])]
    if diag.empty:
        return []
    keys, acts = panel_keys(sweep), _activations(sweep)
    searched = searched_keys(sweep)
    if searched:
        picks, basis = best_groups(sweep)
        diag = diag[diag["group"].isin(picks)]
        settings = _settings(sweep)
    else:
        settings = [s for s in _settings(sweep) if len(_in_setting(diag, keys, s))]
    most, every, note = no_gradient_columns(diag)
    diag = diag.assign(__most=most, __every=every)
    final = diag[diag["epoch"] == diag.groupby("run")["epoch"].transform("max")]
    counted = diag[diag["outcome"] == COUNTED]
    fig, axes = _grid(3 * len(settings), max_cols=3, w=4.3, h=2.9)
    for r, setting in enumerate(settings):
        row = axes[r]
        part, cpart = _in_setting(final, keys, setting), _in_setting(counted, keys, setting)
        n = seeds_text(cpart.drop_duplicates("run"))
        first = cpart[cpart["layer"] == 1]
        for act in acts:
            g = first[first["activation"] == act].groupby("epoch")["grad_norm"].agg(["mean", "min", "max"])
            if len(g):
                row[0].plot(g.index, g["mean"], marker="o", ms=3, color=color(act))
                row[0].fill_between(g.index, g["min"], g["max"], color=color(act), alpha=0.15, lw=0)
        if row[0].has_data():
            row[0].set_yscale("log")
        row[0].set_xlabel("epoch")
        row[0].set_ylabel("first-layer ‖∂L/∂W‖")
        row[0].xaxis.get_major_locator().set_params(integer=True)
        if len(part):
            _per_layer(row[1], part, acts, "grad_norm", 1.0, "point")
            if row[1].has_data():
                row[1].set_yscale("log")
        row[1].set_ylabel("weight-gradient norm ‖∂L/∂W‖")
        hidden = part[part["__most"].notna()]
        if len(hidden):
            drawn = _per_layer(row[2], hidden, acts, "__most", 100.0, "bar", lower="__every")
            row[2].set_ylim(0, min(100.0, max(5.0, 1.15 * max(drawn, default=0))))
        row[2].set_ylabel("units without gradient (%)")
        for ax in row[1:]:
            ax.set_xlabel("layer (1 = input side)")
        what = (_title(keys, setting) + "; " if keys else "") + n
        titles = (
            "first-layer gradient norm per epoch",
            "gradient norm per layer, final epoch",
            "units without gradient, final epoch",
        )
        for ax, t in zip(row, titles, strict=True):
            ax.set_title(f"{t}\n{what}", fontsize=8.5)
            ax.grid(alpha=0.3, axis="y")
        row[0].grid(alpha=0.3)
        for ax in row[:2]:
            if ax.get_yscale() == "log":
                _log_ticks(ax)
    head = (
        "Diagnostics on a fixed probe batch; mean over seeds, band / bars = min-max over seeds. No gradient: "
        "|f'| < 0.1 % of the activation's own maximum slope"
    )
    if searched:
        head += f"\nonly each activation's best setting of {', '.join(searched)} (chosen on {basis})"
    if note:
        head += f"\n{note}"
    fig.suptitle(head, fontsize=9.5)
    _legend_below(
        fig,
        [a for a in acts if (diag["activation"] == a).any()],
        [
            (Patch(facecolor="0.3"), "no gradient for every probe image"),
            (Patch(facecolor="0.3", alpha=0.45), "for most (> half), not all"),
            (Patch(facecolor="white", edgecolor="black", lw=0.5), "rest: passes gradient"),
        ],
    )
    return save(fig, path)


# ---------------------------------------------------------------- confusion matrices


def _confusions(sweep: Sweep, group: str) -> list[np.ndarray]:
    paths = sweep.runs[(sweep.runs["group"] == group) & sweep.runs["outcome"].isin([COUNTED, NOT_LEARNING])]["path"]
    loaded = []
    for p in paths:
        f = Path(p) / "confusion.csv"
        if not f.exists():
            continue
        try:
            loaded.append(pd.read_csv(f, index_col=0).to_numpy(dtype=float))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            sweep.problems.append(f"{f}: not a readable confusion matrix; left out of confusion.png")
    return loaded if len({m.shape for m in loaded}) == 1 else []


def plot_confusion(sweep: Sweep, path: Path, order: Sequence[str] | None = None) -> list[Path]:
    """Test-set errors (diagonal removed) per group, the mean over its seeds (so groups with different
    seed counts compare); ONE colour scale with its colourbar for every group that learned. Groups
    that never learned (``not_learning_groups``: a network stuck on one digit) are drawn apart, in
    their own row with their own scale, and do not set the shared one. Groups in natural order of
    their settings, then activations in sweep order (one row per setting when it fits; ``order`` is
    accepted for older callers and not used); for a searched key only each activation's best setting.
    [] when no run saved a confusion matrix."""
    groups = list(dict.fromkeys(sweep.runs["group"]))  # activations in sweep order within a setting
    if searched_keys(sweep):
        picks = set(best_groups(sweep)[0])
        groups = [g for g in groups if g in picks]
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    keys = panel_keys(sweep)
    rank = {a: i for i, a in enumerate(_activations(sweep))}
    groups.sort(key=lambda g: (tuple(natural_key(firsts.loc[g, k]) for k in keys), rank[firsts.loc[g, "activation"]]))
    mats, n_runs = {}, {}
    for group in groups:
        loaded = _confusions(sweep, group)
        if loaded:
            mats[group], n_runs[group] = np.mean(loaded, axis=0), len(loaded)
    if not mats:
        return []
    import matplotlib.pyplot as plt

    errors = {}
    for g, m in mats.items():
        e = m.copy()
        np.fill_diagonal(e, 0)
        errors[g] = e
    apart = set(not_learning_groups(sweep)) & set(mats)
    shared = [g for g in mats if g not in apart]
    n_acts = len(_activations(sweep))
    cols = n_acts if n_acts <= 6 and keys else min(5, max(len(shared), len(apart), 1))
    n_rows = math.ceil(len(shared) / cols) + (math.ceil(len(apart) / cols) if apart else 0)
    fig = plt.figure(figsize=(max(2.9 * cols + 1.2, 6.5), 2.9 * n_rows + 1.0), layout="constrained")
    subs = (
        fig.subfigures(2, 1, height_ratios=[math.ceil(len(shared) / cols), math.ceil(len(apart) / cols)])
        if (apart and shared)
        else [fig]
    )

    def panel_set(sub: Any, members: list[str], cmap: str, label: str) -> None:
        rows = math.ceil(len(members) / cols)
        axes = np.atleast_1d(sub.subplots(rows, cols, squeeze=False)).ravel()
        for ax in axes[len(members) :]:
            ax.axis("off")
        vmax = max(errors[g].max() for g in members) or 1
        im = None
        for ax, group in zip(axes, members, strict=False):
            e, m = errors[group], mats[group]
            im = ax.imshow(e, cmap=cmap, vmin=0, vmax=vmax)
            acc = 100 * np.trace(m) / m.sum() if m.sum() else math.nan
            what = f"{e.sum():.0f} errors / {m.sum():.0f}"
            if group in apart:
                what = f"predicts {int(m.sum(axis=0).argmax())} for {100 * m.sum(axis=0).max() / m.sum():.0f} %"
            ax.set_title(f"{group}\n{what} ({acc:.1f} % right); n = {n_runs[group]}", fontsize=7.5)
            ax.set_xticks(range(e.shape[1]))
            ax.set_yticks(range(e.shape[0]))
            ax.tick_params(labelsize=6)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
        sub.colorbar(im, ax=axes[: len(members)].tolist(), shrink=0.8, label=label)

    if shared:
        panel_set(subs[0], shared, "Reds", "errors per run (mean over seeds)")
    if apart:
        target = subs[-1] if shared else fig
        panel_set(target, [g for g in mats if g in apart], "Greys", "errors per run (own scale)")
        if shared:
            target.suptitle(
                f"Never learned (mean test accuracy < {100 * NOT_LEARNING_ACC:.0f} %): drawn apart, on their own scale",
                fontsize=9,
            )
    fig.suptitle(
        "Test-set confusions (diagonal removed), mean over each group's seeds (n in each title); one colour "
        "scale for every group that learned",
        fontsize=10,
    )
    return save(fig, path)


# ---------------------------------------------------------------- predictions


def plot_examples(run_path: Path, title: str, path: Path) -> list[Path]:
    """A few test digits with the model's softmax probabilities. [] if the run saved none.

    Two axes per row of up to 8 digits (digits side by side in one image, their 10-class bar
    charts side by side in one plot): one small axes per digit was the slowest figure to draw.
    """
    import matplotlib.pyplot as plt

    f = run_path / "examples.npz"
    if not f.exists():
        return []
    try:
        ex = np.load(f)
        images, probs, labels = ex["image"], ex["prob"], ex["label"]
    except (OSError, ValueError, KeyError):
        return []
    n = len(labels)
    if not n:
        return []
    cols = min(8, n)
    rows = math.ceil(n / cols)
    pitch = 12  # bar slots per digit: 10 classes + 2 of gap
    fig, axes = plt.subplots(
        2 * rows,
        1,
        figsize=(1.6 * cols, 3.3 * rows),
        squeeze=False,
        gridspec_kw={
            "height_ratios": [1.8, 1] * rows,
            "hspace": 0.3,
            "left": 0.05,
            "right": 0.99,
            "bottom": 0.06,
            "top": 0.86,
        },
    )
    gap = np.zeros((28, 4), dtype=np.float32)
    height = pitch * 28 / 32  # square pixels in data units
    for r in range(rows):
        img_ax, bar_ax = axes[2 * r, 0], axes[2 * r + 1, 0]
        items = range(r * cols, min(n, (r + 1) * cols))
        img_ax.imshow(
            np.hstack([np.hstack([images[i], gap]) for i in items]),
            cmap="gray_r",
            extent=(-1, len(items) * pitch - 1, 0, height),
            aspect="auto",
        )
        img_ax.set_xlim(-1, len(items) * pitch - 1)
        img_ax.set_ylim(0, height * 1.45)
        img_ax.axis("off")
        ticks, tick_labels = [], []
        for j, i in enumerate(items):
            prob, label = probs[i], int(labels[i])
            pred = int(prob.argmax())
            img_ax.text(
                j * pitch + 5,
                height * 1.03,
                f"true {label}, pred {pred}\n{100 * prob[pred]:.1f} %",
                ha="center",
                va="bottom",
                fontsize=8,
                color="black" if pred == label else "red",
            )
            x = j * pitch + np.arange(10)
            bar_ax.bar(x, prob, width=0.8, color=["tab:green" if c == label else "tab:gray" for c in range(10)])
            ticks.extend(x.tolist())
            tick_labels.extend(str(c) for c in range(10))
        bar_ax.set_xticks(ticks, tick_labels, fontsize=5)
        bar_ax.set_xlim(-1, len(items) * pitch - 1)
        bar_ax.set_ylim(0, 1)
        bar_ax.set_yticks([0, 0.5, 1])
        bar_ax.tick_params(axis="y", labelsize=6)
        bar_ax.set_ylabel("p(class)", fontsize=7)
    fig.suptitle(f"Softmax probabilities of {title} (green = true class; red title = mistake)")
    return save(fig, path)


# ---------------------------------------------------------------- activation shapes


def feature_range(act: Any, pad: float = 2.0, at_least: tuple[float, float] = (-5.0, 5.0)) -> tuple[float, float]:
    """An x range that shows the activation's features: every point where its derivative changes
    noticeably (kinks like relu6's clip at 6, the bends of sigmoid), with ``pad`` on each side."""
    import torch

    from ..diagnostics import derivative

    x = torch.linspace(-30.0, 30.0, 12001)
    d = derivative(act, x).detach()
    change = (d[1:] - d[:-1]).abs()
    big = change > 0.02 * max(change.max().item(), 1e-12)
    if not big.any():
        return at_least
    xs = x[1:][big]
    return (min(at_least[0], xs.min().item() - pad), max(at_least[1], xs.max().item() + pad))


def plot_activation_shapes(
    modules: Mapping[str, Any], path: str | Path, x_range: tuple[float, float] | None = None
) -> Path:
    """One panel per activation: f(x) and f'(x) (autograd), in the activation's colour.

    ``modules`` maps a name to an activation's module config ({_target_: ..., **kwargs}) or to an
    nn.Module. Each panel covers ``x_range`` when given, else a range that shows its features.
    """
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from hydra.utils import instantiate

    from ..diagnostics import derivative

    fig, axes = _grid(len(modules), max_cols=4, w=3.3, h=2.6)
    for ax, (name, spec) in zip(axes.flat, modules.items(), strict=False):
        act = spec if isinstance(spec, torch.nn.Module) else instantiate(spec)
        lo, hi = x_range or feature_range(act)
        x = torch.linspace(lo, hi, 2001)
        with torch.no_grad():
            y = act(x.clone())
        ax.plot(x, y, lw=2, color=color(name), label="f(x)")
        ax.plot(x, derivative(act, x).detach(), lw=1.3, ls="--", color="0.3", label="f'(x)")
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_xlim(lo, hi)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    handles, _ = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        ["f(x), in the activation's colour", "f'(x)"],
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Activation functions (solid) and their derivatives (dashed, autograd)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path)
    return path
