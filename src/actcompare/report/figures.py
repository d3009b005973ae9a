"""Every figure of the report, and the activation-shape plot of scripts/plot_activations.py.

Conventions, the same in every report: one fixed colour per activation name (``color``); when the
sweep varies another key, one panel per setting of it (small multiples) with colour = activation;
legends below the panels, never over data; log axes with labelled ticks; every figure saved as PNG
and, beside it, as PDF (``save``), each written atomically.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..files import atomic_path
from .load import COUNTED, Sweep

VECTOR = "pdf"  # the vector copy saved beside every PNG
# One colour per shipped activation (conf/activation/*.yaml), fixed across reports; others: hashed.
COLORS = {
    "relu": "#1f77b4", "sigmoid": "#ff7f0e", "tanh": "#2ca02c", "leaky_relu": "#d62728", "relu6": "#9467bd",
    "elu": "#8c564b", "selu": "#e377c2", "gelu": "#7f7f7f", "silu": "#bcbd22", "mish": "#17becf",
    "softplus": "#393b79", "hardswish": "#b5820c", "prelu": "#7b4173", "identity": "#000000",
}  # fmt: skip
CURVES = (  # (column, y label, file, log scale)
    ("train_loss", "train loss (cross-entropy)", "train_loss.png", True),
    ("test_loss", "test loss (cross-entropy)", "test_loss.png", True),
    ("test_acc", "test accuracy (%)", "test_accuracy.png", False),
)


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


def _settings(sweep: Sweep) -> list[tuple]:
    """The settings of the non-activation swept keys, in natural order (numbers by value)."""
    keys = sweep.setting_cols
    if not keys:
        return [()]
    combos = sweep.runs[keys].drop_duplicates()

    def natural(col: pd.Series) -> pd.Series:
        num = pd.to_numeric(col, errors="coerce")
        return num if num.notna().all() else col.astype(str)

    combos = combos.assign(**{f"__{k}": natural(combos[k]) for k in keys}).sort_values([f"__{k}" for k in keys])
    return [tuple(r) for r in combos[keys].itertuples(index=False)]


def _in_setting(df: pd.DataFrame, keys: Sequence[str], setting: tuple) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in zip(keys, setting, strict=True):
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    return df[mask]


def _title(keys: Sequence[str], setting: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, setting, strict=True))


def _grid(n: int, max_cols: int = 4, w: float = 4.2, h: float = 3.2, **kw: Any) -> tuple[Any, np.ndarray]:
    import matplotlib.pyplot as plt

    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(w * cols, 6.5), h * rows + 0.9), layout="constrained",
                             squeeze=False, **kw)  # fmt: skip
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
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7), fontsize=8, frameon=False)


def _activations(sweep: Sweep) -> list[str]:
    return list(dict.fromkeys(sweep.runs["activation"]))


# ---------------------------------------------------------------- curves over epochs


def plot_curves(sweep: Sweep, metric: str, ylabel: str, path: Path, log: bool) -> list[Path]:
    """Mean over the counted seeds of each group, ±std band; diverged runs drawn alone, ending in ×.
    One panel per setting of the other swept keys; colour = activation."""
    from matplotlib.lines import Line2D

    df = sweep.results.copy()
    scale = 100.0 if metric.endswith("_acc") else 1.0
    df[metric] = df[metric] * scale
    keys, settings, acts = sweep.setting_cols, _settings(sweep), _activations(sweep)
    fig, axes = _grid(len(settings), sharex=True, sharey=True)
    any_diverged = False
    for ax, setting in zip(axes.flat, settings, strict=False):
        part = _in_setting(df, keys, setting)
        for act in acts:
            g = part[(part["activation"] == act) & np.isfinite(part[metric])]
            counted = g[g["outcome"] == COUNTED]
            if len(counted):
                stat = counted.groupby("epoch")[metric].agg(["mean", "std", "count"])
                ax.plot(stat.index, stat["mean"], marker="o", ms=3, lw=1.8, color=color(act))
                if stat["count"].max() > 1:
                    ax.fill_between(stat.index, stat["mean"] - stat["std"], stat["mean"] + stat["std"],
                                    color=color(act), alpha=0.18, lw=0)  # fmt: skip
            for _, run in g[g["outcome"] == "diverged"].groupby("run"):
                any_diverged = True
                ax.plot(run["epoch"], run[metric], lw=0.8, ls=":", color=color(act))
                ax.plot(run["epoch"].iloc[-1:], run[metric].iloc[-1:], "x", ms=9, mew=2, color=color(act))
        if keys:
            ax.set_title(_title(keys, setting), fontsize=9)
        ax.grid(alpha=0.3)
        if log and ax.has_data():
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if log:
        for ax in axes.flat[: len(settings)]:
            _log_ticks(ax)
    n_seeds = sweep.runs.loc[sweep.runs["outcome"] == COUNTED].groupby("group")["seed"].nunique()
    seeds = f"{n_seeds.min()}" if len(n_seeds) and n_seeds.min() == n_seeds.max() else (
        f"{n_seeds.min()}-{n_seeds.max()}" if len(n_seeds) else "0")  # fmt: skip
    fig.suptitle(f"{ylabel.split(' (')[0].capitalize()}: mean ± std over {seeds} seed(s)", fontsize=11)
    extra = [(Line2D([], [], color="gray", ls=":", marker="x", mew=2), "diverged run (not in the mean)")]
    _legend_below(fig, acts, extra if any_diverged else ())
    return save(fig, path)


# ---------------------------------------------------------------- final accuracy against a swept key


def plot_vs_key(sweep: Sweep, summary: pd.DataFrame, key: str, path: Path) -> list[Path]:
    """Final test accuracy (mean ± std over seeds, seeds as dots) against one swept key, a line per
    activation; one panel per setting of any third swept key (never averaged over it)."""
    df = summary.dropna(subset=["final_test_acc_mean"]).copy()
    x_num = pd.to_numeric(df[key], errors="coerce")
    numeric = bool(x_num.notna().all())
    cats = sorted(df[key].astype(str).unique())
    df["x"] = x_num if numeric else df[key].astype(str).map({c: i for i, c in enumerate(cats)})
    runs = sweep.runs[sweep.runs["outcome"] == COUNTED].copy()
    runs["x"] = pd.to_numeric(runs[key], errors="coerce") if numeric else runs[key].astype(str).map(
        {c: i for i, c in enumerate(cats)})  # fmt: skip
    others = [k for k in sweep.setting_cols if k != key]
    sub = Sweep(runs=sweep.runs, results=sweep.results, diagnostics=sweep.diagnostics,
                group_cols=["activation", *others])
    settings = _settings(sub)
    fig, axes = _grid(len(settings), max_cols=3, w=4.8, h=3.6, sharey=True)
    acts = _activations(sweep)
    log_x = numeric and df["x"].min() > 0 and df["x"].max() / df["x"].min() >= 50
    for ax, setting in zip(axes.flat, settings, strict=False):
        part, rpart = _in_setting(df, others, setting), _in_setting(runs, others, setting)
        for act in acts:
            g = part[part["activation"] == act].sort_values("x")
            if g.empty:
                continue
            ax.errorbar(g["x"], 100 * g["final_test_acc_mean"], yerr=100 * g["final_test_acc_std"].fillna(0),
                        marker="o", capsize=3, color=color(act))  # fmt: skip
            r = rpart[rpart["activation"] == act]
            ax.plot(r["x"], 100 * r["final_test_acc"], ".", ms=4, alpha=0.45, color=color(act))
        if log_x:
            ax.set_xscale("log")
        xs = sorted(df["x"].unique())
        ax.set_xticks(xs, [f"{v:g}" for v in xs] if numeric else cats)
        ax.minorticks_off() if log_x else None
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
        if others:
            ax.set_title(_title(others, setting), fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("final test accuracy (%)")
    fig.suptitle(f"Final test accuracy against {key}: mean ± std over seeds (dots: single seeds)", fontsize=11)
    _legend_below(fig, acts)
    return save(fig, path)


# ---------------------------------------------------------------- diagnostics


def _dodged(ax: Any, data: pd.DataFrame, y: str, acts: Sequence[str], scale: float, kind: str,
            overlay: str | None = None) -> None:  # fmt: skip
    """Layers as categories on x; one bar (or point) per activation side by side; no joining lines."""
    layers = sorted(data["layer"].unique())
    pos = {layer: i for i, layer in enumerate(layers)}
    present = [a for a in acts if (data["activation"] == a).any()]
    width = 0.8 / max(len(present), 1)
    for j, act in enumerate(present):
        m = data[data["activation"] == act].groupby("layer")[y].mean().dropna()
        if m.empty:
            continue
        x = np.array([pos[layer] for layer in m.index]) - 0.4 + width * (j + 0.5)
        if kind == "bar":
            ax.bar(x, m.to_numpy() * scale, width=width * 0.92, color=color(act))
            if overlay is not None:
                o = data[data["activation"] == act].groupby("layer")[overlay].mean().reindex(m.index)
                ax.bar(x, o.to_numpy() * scale, width=width * 0.92, facecolor="none", edgecolor="black",
                       hatch="////", lw=0.6)  # fmt: skip
        else:
            ax.plot(x, m.to_numpy() * scale, "o", ms=4, color=color(act), ls="none")
    last = max(layers) if layers else 0
    ax.set_xticks(range(len(layers)), [("out" if (layer == last and kind != "bar") else str(int(layer)))
                                       for layer in layers], fontsize=7 if len(layers) > 8 else 9)  # fmt: skip
    ax.set_xlim(-0.6, len(layers) - 0.4)


def plot_diagnostics(sweep: Sweep, path: Path) -> list[Path]:
    """Per setting (a row): first-layer gradient norm over epochs; per layer at the final epoch
    (layers as categories): gradient norm, inactive units (hatched: dead), saturated units."""
    from matplotlib.patches import Patch

    d = sweep.diagnostics
    d = d[d["outcome"].isin([COUNTED, "diverged"])]
    d = d[d["epoch"] == d.groupby("run")["epoch"].transform("max")].copy() if len(d) else d
    full = sweep.diagnostics[sweep.diagnostics["outcome"] == COUNTED]
    keys, settings, acts = sweep.setting_cols, _settings(sweep), _activations(sweep)
    fig, axes = _grid(4 * len(settings), max_cols=4, w=3.6, h=2.9)
    legacy = bool(sweep.diagnostics.attrs.get("legacy"))
    for r, setting in enumerate(settings):
        row = axes[r]
        part, fpart = _in_setting(d, keys, setting), _in_setting(full, keys, setting)
        first = fpart[fpart["layer"] == 1]
        for act in acts:
            g = first[first["activation"] == act].groupby("epoch")["grad_norm"].mean()
            if len(g):
                row[0].plot(g.index, g.to_numpy(), marker="o", ms=3, color=color(act))
        if row[0].has_data():
            row[0].set_yscale("log")
        row[0].set_xlabel("epoch")
        row[0].xaxis.get_major_locator().set_params(integer=True)
        hidden = part[part["dead_frac"].notna()] if "dead_frac" in part else part.iloc[0:0]
        if len(part):
            _dodged(row[1], part, "grad_norm", acts, 1.0, "point")
            row[1].set_yscale("log")
        if len(hidden):
            _dodged(row[2], hidden, "inactive_frac", acts, 100.0, "bar", overlay="dead_frac")
            _dodged(row[3], hidden, "saturated_frac", acts, 100.0, "bar")
        for ax in row[1:]:
            ax.set_xlabel("layer (1 = input side)")
        row[2].set_ylim(0, 100)
        row[3].set_ylim(0, 100)
        titles = ("first-layer gradient norm", "weight gradient norm, final epoch", "inactive units (%), final epoch",
                  "saturated units (%), final epoch")  # fmt: skip
        for ax, t in zip(row, titles, strict=True):
            ax.set_title(t + (f"\n{_title(keys, setting)}" if keys else ""), fontsize=8.5)
            ax.grid(alpha=0.3, axis="y")
        row[0].grid(alpha=0.3)
        for ax in row[:2]:
            _log_ticks(ax)
    note = (" (older diagnostics.csv: inactive/saturated split from its one number by activation shape; "
            "NaN where ambiguous)") if legacy else ""  # fmt: skip
    fig.suptitle("Diagnostics on a fixed probe batch. Inactive: output exactly 0 for most images (ReLU-like off); "
                 "saturated: in a flat tail\nof a bounded activation (f' < 1 % of its max) for most images" + note,
                 fontsize=9.5)  # fmt: skip
    _legend_below(fig, acts, [(Patch(facecolor="white", edgecolor="black", hatch="////"),
                               "dead: off for every probe image")])  # fmt: skip
    return save(fig, path)


# ---------------------------------------------------------------- confusion matrices


def plot_confusion(sweep: Sweep, path: Path, order: Sequence[str]) -> list[Path]:
    """Error counts (diagonal removed) per group, summed over counted seeds; one colour scale for
    every panel, with its colourbar. [] when no run saved a confusion matrix."""
    mats, n_runs = {}, {}
    for group in order:
        paths = sweep.runs[(sweep.runs["group"] == group) & (sweep.runs["outcome"] == COUNTED)]["path"]
        files = [Path(p) / "confusion.csv" for p in paths if (Path(p) / "confusion.csv").exists()]
        loaded = []
        for f in files:
            try:
                loaded.append(pd.read_csv(f, index_col=0).to_numpy(dtype=float))
            except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
                sweep.problems.append(f"{f}: not a readable confusion matrix; left out of confusion.png")
        if loaded and len({m.shape for m in loaded}) == 1:
            mats[group], n_runs[group] = sum(loaded), len(loaded)
    if not mats:
        return []
    errors = {}
    for g, m in mats.items():
        e = m.copy()
        np.fill_diagonal(e, 0)
        errors[g] = e
    vmax = max(e.max() for e in errors.values()) or 1
    fig, axes = _grid(len(mats), max_cols=5, w=2.9, h=2.9)
    im = None
    for ax, (group, e) in zip(axes.flat, errors.items(), strict=False):
        im = ax.imshow(e, cmap="Reds", vmin=0, vmax=vmax)
        ax.set_title(f"{group}\n{int(e.sum())} errors / {int(mats[group].sum())} ({n_runs[group]} seeds)", fontsize=8)
        ax.set_xticks(range(e.shape[1]))
        ax.set_yticks(range(e.shape[0]))
        ax.tick_params(labelsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="errors (summed over seeds)")
    fig.suptitle("Test-set confusions (diagonal removed), summed over seeds; one colour scale", fontsize=10)
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
    fig, axes = plt.subplots(2 * rows, 1, figsize=(1.6 * cols, 3.3 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.8, 1] * rows, "hspace": 0.3,
                                          "left": 0.05, "right": 0.99, "bottom": 0.06, "top": 0.86})  # fmt: skip
    gap = np.zeros((28, 4), dtype=np.float32)
    height = pitch * 28 / 32  # square pixels in data units
    for r in range(rows):
        img_ax, bar_ax = axes[2 * r, 0], axes[2 * r + 1, 0]
        items = range(r * cols, min(n, (r + 1) * cols))
        img_ax.imshow(np.hstack([np.hstack([images[i], gap]) for i in items]), cmap="gray_r",
                      extent=(-1, len(items) * pitch - 1, 0, height), aspect="auto")  # fmt: skip
        img_ax.set_xlim(-1, len(items) * pitch - 1)
        img_ax.set_ylim(0, height * 1.45)
        img_ax.axis("off")
        ticks, tick_labels = [], []
        for j, i in enumerate(items):
            prob, label = probs[i], int(labels[i])
            pred = int(prob.argmax())
            img_ax.text(j * pitch + 5, height * 1.03, f"true {label}, pred {pred}\n{100 * prob[pred]:.1f} %",
                        ha="center", va="bottom", fontsize=8, color="black" if pred == label else "red")  # fmt: skip
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


def plot_activation_shapes(modules: Mapping[str, Any], path: str | Path,
                           x_range: tuple[float, float] | None = None) -> Path:  # fmt: skip
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
    fig.legend(handles, ["f(x), in the activation's colour", "f'(x)"], loc="outside lower center", ncol=2,
               fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle("Activation functions (solid) and their derivatives (dashed, autograd)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path)
    return path
