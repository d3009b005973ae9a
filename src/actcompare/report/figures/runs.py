"""Per-run pictures: diagnostics (gradients, units without gradient), confusion matrices, predictions.

They draw what the runs recorded (diagnostics.csv, confusion.csv, examples.npz); which groups never
learned and which setting is an activation's best come from ``report.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import stats as S
from ..load import COUNTED, NOT_LEARNING, NOT_LEARNING_ACC, Sweep
from . import style
from .style import (
    activations,
    color,
    grid,
    in_setting,
    legend_below,
    log_ticks,
    natural_key,
    panel_keys,
    searched_keys,
    seeds_text,
    settings,
    title,
)


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


DIAGNOSTIC_TITLES = (
    "first-layer gradient norm per epoch",
    "gradient norm per layer, final epoch",
    "units without gradient, final epoch",
)


def plot_diagnostics(sweep: Sweep, path: Path, pdf: bool = False) -> list[Path]:
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
    keys, acts, searched = panel_keys(sweep), activations(sweep), searched_keys(sweep)
    if searched:
        picks, basis = S.best_groups(sweep, keys)
        diag = diag[diag["group"].isin(picks)]
        rows = settings(sweep)
    else:
        rows = [s for s in settings(sweep) if len(in_setting(diag, keys, s))]
    most, every, note = no_gradient_columns(diag)
    diag = diag.assign(__most=most, __every=every)
    final = diag[diag["epoch"] == diag.groupby("run")["epoch"].transform("max")]
    counted = diag[diag["outcome"] == COUNTED]
    fig, axes = grid(3 * len(rows), max_cols=3, w=4.3, h=2.9)
    for r, setting in enumerate(rows):
        what = (title(keys, setting) + "; " if keys else "") + seeds_text(
            in_setting(counted, keys, setting).drop_duplicates("run")
        )
        _diagnostics_row(axes[r], in_setting(final, keys, setting), in_setting(counted, keys, setting), acts, what)
    head = (
        "Diagnostics on a fixed probe batch; mean over seeds, band / bars = min-max over seeds. No gradient: "
        "|f'| < 0.1 % of the activation's own maximum slope"
    )
    if searched:
        head += f"\nonly each activation's best setting of {', '.join(searched)} (chosen on {basis})"
    if note:
        head += f"\n{note}"
    fig.suptitle(head, fontsize=9.5)
    legend_below(
        fig,
        [a for a in acts if (diag["activation"] == a).any()],
        [
            (Patch(facecolor="0.3"), "no gradient for every probe image"),
            (Patch(facecolor="0.3", alpha=0.45), "for most (> half), not all"),
            (Patch(facecolor="white", edgecolor="black", lw=0.5), "rest: passes gradient"),
        ],
    )
    return style.save(fig, path, pdf)


def _diagnostics_row(row: Any, part: pd.DataFrame, cpart: pd.DataFrame, acts: Sequence[str], what: str) -> None:
    """One setting's three panels of plot_diagnostics (``part``: final epoch; ``cpart``: counted runs)."""
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
    for ax, t in zip(row, DIAGNOSTIC_TITLES, strict=True):
        ax.set_title(f"{t}\n{what}", fontsize=8.5)
        ax.grid(alpha=0.3, axis="y")
    row[0].grid(alpha=0.3)
    for ax in row[:2]:
        if ax.get_yscale() == "log":
            log_ticks(ax)


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


def _confusion_groups(sweep: Sweep) -> list[str]:
    """The groups in natural order of their settings, then activations in sweep order; for a
    searched key each activation's best setting only."""
    groups = list(dict.fromkeys(sweep.runs["group"]))
    keys = panel_keys(sweep)
    if searched_keys(sweep):
        picks = set(S.best_groups(sweep, keys)[0])
        groups = [g for g in groups if g in picks]
    firsts = sweep.runs.drop_duplicates("group").set_index("group")
    rank = {a: i for i, a in enumerate(activations(sweep))}
    return sorted(
        groups, key=lambda g: (tuple(natural_key(firsts.loc[g, k]) for k in keys), rank[firsts.loc[g, "activation"]])
    )


def plot_confusion(sweep: Sweep, path: Path, order: Sequence[str] | None = None, pdf: bool = False) -> list[Path]:
    """Test-set errors (diagonal removed) per group, the mean over its seeds (so groups with different
    seed counts compare); ONE colour scale with its colourbar for every group that learned. Groups
    that never learned (``stats.not_learning_groups``: a network stuck on one digit) are drawn apart,
    in their own row with their own scale, and do not set the shared one. Groups in natural order of
    their settings, then activations in sweep order (one row per setting when it fits; ``order`` is
    accepted for older callers and not used); for a searched key only each activation's best
    setting. Digits are labelled on the outer panels only. [] when no run saved a confusion matrix."""
    mats, n_runs = {}, {}
    for group in _confusion_groups(sweep):
        loaded = _confusions(sweep, group)
        if loaded:
            mats[group], n_runs[group] = np.mean(loaded, axis=0), len(loaded)
    if not mats:
        return []
    import matplotlib.pyplot as plt

    apart = set(S.not_learning_groups(sweep)) & set(mats)
    shared = [g for g in mats if g not in apart]
    n_acts = len(activations(sweep))
    cols = n_acts if n_acts <= 6 and panel_keys(sweep) else min(5, max(len(shared), len(apart), 1))
    n_rows = math.ceil(len(shared) / cols) + (math.ceil(len(apart) / cols) if apart else 0)
    fig = plt.figure(figsize=(max(2.5 * cols + 1.2, 6.5), 2.6 * n_rows + 1.0), layout="constrained")
    subs = (
        fig.subfigures(2, 1, height_ratios=[math.ceil(len(shared) / cols), math.ceil(len(apart) / cols)])
        if (apart and shared)
        else [fig]
    )
    if shared:
        _confusion_panels(subs[0], shared, mats, n_runs, apart, cols, "Reds", "errors per run (mean over seeds)")
    if apart:
        target = subs[-1] if shared else fig
        members = [g for g in mats if g in apart]
        _confusion_panels(target, members, mats, n_runs, apart, cols, "Greys", "errors per run (own scale)")
        if shared:
            target.suptitle(
                f"Never learned (mean test accuracy < {100 * NOT_LEARNING_ACC:.0f} %): drawn apart, on their own scale",
                fontsize=9,
            )
    fig.suptitle(
        "Test-set confusions (diagonal removed; rows: true digit, columns: predicted), mean over each group's "
        "seeds (n in each title); one colour scale for every group that learned",
        fontsize=10,
    )
    return style.save(fig, path, pdf)


def _confusion_panels(
    sub: Any,
    members: list[str],
    mats: dict[str, np.ndarray],
    n_runs: dict[str, int],
    apart: set[str],
    cols: int,
    cmap: str,
    label: str,
) -> None:
    """One block of confusion panels on one colour scale, with its colourbar."""
    rows = math.ceil(len(members) / cols)
    axes = np.atleast_1d(sub.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[len(members) :]:
        ax.axis("off")
    errors = {g: mats[g] * (1 - np.eye(*mats[g].shape)) for g in members}
    vmax = max(e.max() for e in errors.values()) or 1
    im = None
    for i, (ax, group) in enumerate(zip(axes, members, strict=False)):
        e, m = errors[group], mats[group]
        im = ax.imshow(e, cmap=cmap, vmin=0, vmax=vmax)
        acc = 100 * np.trace(m) / m.sum() if m.sum() else math.nan
        what = f"{e.sum():.0f} errors / {m.sum():.0f}"
        if group in apart:
            what = f"predicts {int(m.sum(axis=0).argmax())} for {100 * m.sum(axis=0).max() / m.sum():.0f} %"
        ax.set_title(f"{group}\n{what} ({acc:.1f} % right); n = {n_runs[group]}", fontsize=7.5)
        ax.set_xticks(range(e.shape[1]), [str(d) for d in range(e.shape[1])] if i + cols >= len(members) else [])
        ax.set_yticks(range(e.shape[0]), [str(d) for d in range(e.shape[0])] if i % cols == 0 else [])
        ax.tick_params(labelsize=6, length=2)
        if i + cols >= len(members):
            ax.set_xlabel("predicted", fontsize=7)
        if i % cols == 0:
            ax.set_ylabel("true", fontsize=7)
    sub.colorbar(im, ax=axes[: len(members)].tolist(), shrink=0.8, label=label)


# ---------------------------------------------------------------- predictions


def plot_examples(run_path: Path, title: str, path: Path, pdf: bool = False) -> list[Path]:
    """A few test digits with the model's softmax probabilities. [] if the run saved none.

    One image of every digit side by side and one bar chart of every digit's 10 probabilities per
    row of up to 8 digits: one small axes per digit was the slowest figure to draw.
    """
    f = Path(run_path) / "examples.npz"
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
    import matplotlib.pyplot as plt

    cols = min(8, n)
    rows = math.ceil(n / cols)
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
    for r in range(rows):
        items = range(r * cols, min(n, (r + 1) * cols))
        _examples_row(axes[2 * r, 0], axes[2 * r + 1, 0], images, probs, labels, items)
    fig.suptitle(f"Softmax probabilities of {title} (green = true class; red title = mistake)")
    return style.save(fig, path, pdf)


def _examples_row(img_ax: Any, bar_ax: Any, images: Any, probs: Any, labels: Any, items: range) -> None:
    pitch = 12  # bar slots per digit: 10 classes + 2 of gap
    height = pitch * 28 / 32  # square pixels in data units
    gap = np.zeros((28, 4), dtype=np.float32)
    img_ax.imshow(
        np.hstack([np.hstack([images[i], gap]) for i in items]),
        cmap="gray_r",
        extent=(-1, len(items) * pitch - 1, 0, height),
        aspect="auto",
    )
    img_ax.set_xlim(-1, len(items) * pitch - 1)
    img_ax.set_ylim(0, height * 1.45)
    img_ax.axis("off")
    xs, heights, colours = [], [], []
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
        xs.extend(j * pitch + np.arange(10))
        heights.extend(prob)
        colours.extend("tab:green" if c == label else "tab:gray" for c in range(10))
    bar_ax.bar(xs, heights, width=0.8, color=colours)  # one call for the row: one container, not eight
    bar_ax.set_xticks(xs, [str(c) for _ in items for c in range(10)], fontsize=5)
    bar_ax.set_xlim(-1, len(items) * pitch - 1)
    bar_ax.set_ylim(0, 1)
    bar_ax.set_yticks([0, 0.5, 1])
    bar_ax.tick_params(axis="y", labelsize=6)
    bar_ax.set_ylabel("p(class)", fontsize=7)
