"""What every figure shares: colours, the natural order of settings, panels, axes, legends, saving.

No statistics here (they come from ``report.stats``) and no drawing of data.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...files import atomic_path
from ...order import natural_key, natural_sorted
from ..load import Sweep

__all__ = ["natural_key", "natural_sorted"]  # the one natural sort, re-exported for the figures

VECTOR = "pdf"  # the vector copy saved beside a PNG when asked (report.pdf=true, --pdf)
DPI = 100  # PNG resolution: sharp in a browser or a Markdown viewer, quick to render and encode
PNG_OPTIONS = {"compress_level": 3}  # zlib level: the default 6 takes twice as long for ~5 % less
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
MAX_PANELS = 8  # a numeric key with more distinct values than this is searched, not a panel per value


def color(name: str) -> str:
    """The activation's colour: fixed for the shipped ones, else from a stable hash of its name."""
    if name in COLORS:
        return COLORS[name]
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360, 0.35 + (h >> 9) % 20 / 100, 0.55 + (h >> 15) % 30 / 100)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def save(fig: Any, path: Path, pdf: bool = False) -> list[Path]:
    """Save ``fig`` as ``path`` (PNG) and, with ``pdf``, as the vector copy beside it; close it.
    Each file is written atomically. Returns the paths written."""
    import matplotlib.pyplot as plt

    path = Path(path)
    out = []
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png", pil_kwargs=PNG_OPTIONS)
        out.append(path)
        if pdf:
            fig.set_layout_engine("none")  # the layout is done: the vector copy keeps it (a third faster)
            with atomic_path(path.with_suffix(f".{VECTOR}")) as tmp:
                fig.savefig(tmp, format=VECTOR)
            out.append(path.with_suffix(f".{VECTOR}"))
    finally:
        plt.close(fig)
    return out


def log_ticks(ax: Any, axis: str = "y") -> None:
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


# ---------------------------------------------------------------- scales of a swept key


def numbers(values: Sequence[Any]) -> np.ndarray | None:
    """The values as floats, or None when any is not a number."""
    num = pd.to_numeric(pd.Series(list(values), dtype=object).astype(str), errors="coerce")
    return None if num.isna().any() or not len(num) else num.to_numpy(float)


def axis_scale(values: Sequence[Any]) -> str:
    """How to draw a swept key's values on an axis: "log2" for positive integers spanning a factor of
    4 or more (depth, width, batch size: 2, 4, 8, 16), "log10" for other positive numbers spanning a
    factor of 10 or more (a learning rate over decades), else "linear" ("category" for text)."""
    x = numbers(values)
    if x is None:
        return "category"
    x = np.unique(x)
    if len(x) < 2 or x.min() <= 0:
        return "linear"
    ratio = x.max() / x.min()
    if np.all(x == np.round(x)) and ratio >= 4:
        return "log2"
    return "log10" if ratio >= 10 else "linear"


def style_x(ax: Any, scale: str, values: Sequence[float], labels: Sequence[str] | None = None) -> None:
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


# ---------------------------------------------------------------- panels: one per setting


def searched_keys(sweep: Sweep) -> list[str]:
    """Swept keys with more than MAX_PANELS numeric values (an Optuna search): never one panel each."""
    runs = sweep.runs
    return [
        k
        for k in sweep.setting_cols
        if k in runs and runs[k].nunique() > MAX_PANELS and numbers(runs[k].unique()) is not None
    ]


def panel_keys(sweep: Sweep) -> list[str]:
    """The swept keys that get one panel (or row) per setting: the other keys, searched ones aside."""
    searched = set(searched_keys(sweep))
    return [k for k in sweep.setting_cols if k not in searched]


def settings(sweep: Sweep, keys: Sequence[str] | None = None) -> list[tuple]:
    """The settings of ``keys`` (default: ``panel_keys``) present in the sweep, in natural order."""
    keys = panel_keys(sweep) if keys is None else list(keys)
    if not keys:
        return [()]
    combos = {tuple(str(v) for v in r) for r in sweep.runs[keys].itertuples(index=False)}
    return sorted(combos, key=lambda c: tuple(natural_key(v) for v in c))


def in_setting(df: pd.DataFrame, keys: Sequence[str], setting: tuple) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in zip(keys, setting, strict=True):
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    return df[mask]


def title(keys: Sequence[str], setting: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, setting, strict=True))


def activations(sweep: Sweep) -> list[str]:
    """The activations in sweep order (the order of every legend)."""
    return list(dict.fromkeys(sweep.runs["activation"]))


def seeds_text(runs: pd.DataFrame, by: str = "group") -> str:
    """ "n = 3 seeds" (per group), "n = 2-3 seeds" when groups differ; over the rows given."""
    counts = runs.groupby(by)["seed"].nunique() if len(runs) else pd.Series(dtype=int)
    if not len(counts):
        return "n = 0 seeds"
    lo, hi = int(counts.min()), int(counts.max())
    return f"n = {lo} seed{'s' if hi != 1 else ''}" if lo == hi else f"n = {lo}-{hi} seeds"


# ---------------------------------------------------------------- figure, axes, legend


def grid(n: int, max_cols: int = 4, w: float = 4.2, h: float = 3.2, **kw: Any) -> tuple[Any, np.ndarray]:
    """A figure of ``n`` panels, balanced rows (5 as 3 + 2), unused axes off; constrained layout."""
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(n / max_cols))
    cols = max(1, math.ceil(n / rows))
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(w * cols, 6.5), h * rows + 0.9), layout="constrained", squeeze=False, **kw
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def label_axes(axes: np.ndarray, xlabel: str, ylabel: str, integer_x: bool = False) -> None:
    """The x label on every panel in use, the y label on the first column; integer x ticks (epochs)."""
    for ax in axes.flat:
        if ax.axison:
            ax.set_xlabel(xlabel)
            if integer_x:
                ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)


def legend_below(fig: Any, names: Sequence[str], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """One legend entry per activation (its colour), then ``extra`` (handle, label), below the panels."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color(a), lw=2.5, marker="o", ms=4) for a in names]
    labels = list(names)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    ncol = len(labels) if len(labels) <= 9 else math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def ylim_from(ax: Any, values: Sequence[float], pad: float = 0.08, floor: float | None = None) -> tuple[float, float]:
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


def log_ylim(ax: Any, values: Sequence[float]) -> None:
    """A log y-axis zoomed to positive ``values``, with labelled ticks (one point: a band around it)."""
    lo, hi = min(values), max(values)
    pad = (hi / lo) ** 0.05 if hi > lo else 1.1
    ax.set_yscale("log")
    ax.set_ylim(lo / pad, hi * pad)
    log_ticks(ax)


def apart_note(items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """A title line naming the groups drawn apart (dotted, not setting the axis) with their last value."""
    if not items:
        return ""
    return "\nnever learned (dotted, off the zoom):\n" + ", ".join(f"{a} {v:.3g}{unit}" for a, v in items)
