"""Turn sweep folders on disk into one tidy table, a summary with statistics, plots and report.md.

Everything is read from the run folders (``run.json``, ``metrics.csv``, ``diagnostics.csv``...),
so a report can be rebuilt at any time, from several sweeps at once, whichever launcher ran the
jobs. Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import UserError

ACC_TARGET = 0.97  # "epochs to reach 97 %" in the summary
ALPHA = 0.05  # significance level of the Welch t-tests
# Overrides that never define a compared group: bookkeeping, paths and the seed itself.
NOT_GROUPS = {"seed", "resume", "device", "threads", "data.root", "data.download", "diagnostics",
              "save_model", "experiment"}  # fmt: skip
CURVES = (  # (column, y label, file, log scale)
    ("train_loss", "train loss (cross-entropy)", "train_loss.png", True),
    ("test_loss", "test loss (cross-entropy)", "test_loss.png", True),
    ("test_acc", "test accuracy (%)", "test_accuracy.png", False),
)


@dataclass
class Sweep:
    runs: pd.DataFrame  # one row per run: run, path, status, group columns, seed, final metrics
    results: pd.DataFrame  # one row per run and epoch (tidy long format)
    diagnostics: pd.DataFrame  # one row per run, epoch and layer (may be empty)
    group_cols: list[str]  # the keys the sweep varied (activation first), seed excluded


# ---------------------------------------------------------------- files


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place once fully written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def find_run_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise UserError(f"{p} does not exist or is not a folder: give a sweep folder, "
                            f"e.g. outputs/sweeps/<date>/<time>")  # fmt: skip
        dirs += sorted(f.parent for f in p.rglob("run.json"))
    return dirs


def _parse_override(text: str) -> tuple[str, str]:
    key, _, value = text.lstrip("+~").partition("=")
    return key, value


def _lookup(record: dict, key: str) -> str:
    """A key's value in one run: the chosen config-group option, or the resolved config value."""
    if key in record.get("choices", {}):
        return str(record["choices"][key])
    node: Any = record.get("config", {})
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return json.dumps(node) if isinstance(node, (list, dict)) else str(node)


def load_sweep(paths: Sequence[str | os.PathLike]) -> Sweep:
    """Read every run below ``paths`` (sweep folders or run folders)."""
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise UserError(f"no runs (run.json files) found in {', '.join(map(str, paths))}: "
                        "give a folder written by 'python run.py -m ...'")  # fmt: skip
    records = [json.loads((d / "run.json").read_text()) for d in run_dirs]
    roots = [Path(p).resolve() for p in paths]

    def name(d: Path) -> str:
        for root in roots:
            if d.resolve().is_relative_to(root):
                rel = d.resolve().relative_to(root).as_posix()
                prefix = f"{root.name}/" if len(roots) > 1 else ""
                return prefix + (rel if rel != "." else root.name)
        return d.name

    keys = sorted({_parse_override(o)[0] for r in records for o in r.get("overrides", [])})
    keys = [k for k in keys if k not in NOT_GROUPS and not k.startswith("hydra.")]
    values = {k: [_lookup(r, k) for r in records] for k in keys}
    varied = [k for k in keys if len(set(values[k])) > 1 and k != "activation"]
    group_cols = ["activation", *varied]

    runs = pd.DataFrame(
        {
            "run": [name(d) for d in run_dirs],
            "path": [str(d) for d in run_dirs],
            "status": [r.get("status", "unknown") for r in records],
            "activation": [r.get("activation", _lookup(r, "activation.name")) for r in records],
            **{k: values[k] for k in varied},
            "seed": [r.get("seed") for r in records],
            "epochs_completed": [r.get("epochs_completed", 0) for r in records],
            "diverged_epoch": [r.get("diverged_epoch") for r in records],
            "error": [r.get("error") for r in records],
            "wall_seconds": [r.get("wall_seconds") for r in records],
            "git_commit": [r.get("git_commit") for r in records],
            "torch": [r.get("torch") for r in records],
            "device": [r.get("device") for r in records],
        }
    )
    runs["group"] = runs.apply(lambda row: _label(row, group_cols), axis=1)

    def read_all(file: str) -> pd.DataFrame:
        frames = []
        for d, (_, run) in zip(run_dirs, runs.iterrows(), strict=True):
            f = d / file
            if f.exists() and f.stat().st_size > 0:
                df = pd.read_csv(f)
                if len(df):
                    df.insert(0, "run", run["run"])
                    df.insert(1, "status", run["status"])
                    for k in varied:
                        df[k] = run[k]
                    df["group"] = run["group"]
                    frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    results = read_all("metrics.csv")
    diagnostics = read_all("diagnostics.csv")
    if len(results):
        last = results.sort_values("epoch").groupby("run").tail(1).set_index("run")
        best = results.groupby("run")["test_acc"].max()
        reached = results[results["test_acc"] >= ACC_TARGET].groupby("run")["epoch"].min()
        for col in ("train_loss", "test_loss", "test_acc"):
            runs[f"final_{col}"] = runs["run"].map(last[col])
        runs["best_test_acc"] = runs["run"].map(best)
        runs["epochs_to_97"] = runs["run"].map(reached)
        runs["epoch_seconds"] = runs["run"].map(results.groupby("run")["epoch_seconds"].mean())
    return Sweep(runs=runs, results=results, diagnostics=diagnostics, group_cols=group_cols)


def _label(row: pd.Series, group_cols: list[str]) -> str:
    parts = [str(row["activation"])] + [f"{k}={row[k]}" for k in group_cols[1:]]
    return ", ".join(parts)


def failed_runs(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(run, error) for every run below ``paths`` that failed or was interrupted."""
    try:
        runs = load_sweep(paths).runs
    except UserError:
        return []
    bad = runs[runs["status"].isin(["failed", "interrupted", "running"])]
    return [(r.run, r.error or r.status) for r in bad.itertuples()]


# ---------------------------------------------------------------- statistics


def _ci95(values: np.ndarray) -> tuple[float, float]:
    """95 % confidence interval of the mean (Student t over seeds); NaN below two runs."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    # Accuracies live in [0, 1]; a t interval from few seeds can overshoot, so clip it.
    return (max(values.mean() - half, 0.0), min(values.mean() + half, 1.0))


def compare_to_best(finals: dict[str, np.ndarray]) -> pd.DataFrame:
    """Welch's t-test of each group's final accuracies against the group with the best mean.

    Returns index = group, columns p_vs_best and same_as_best (p >= ALPHA, or the best itself).
    A p-value needs at least two runs on both sides.
    """
    means = {g: v.mean() for g, v in finals.items() if len(v)}
    if not means:
        return pd.DataFrame(columns=["p_vs_best", "same_as_best"])
    best = max(means, key=means.get)
    rows = {}
    for g, v in finals.items():
        if g == best:
            rows[g] = (math.nan, True)
        elif len(v) >= 2 and len(finals[best]) >= 2:
            with warnings.catch_warnings():
                # A group whose seeds all give the same accuracy (e.g. a deep sigmoid net stuck at
                # chance, 11.35 %) makes scipy warn about precision loss; the p-value is still right.
                warnings.simplefilter("ignore", RuntimeWarning)
                p = stats.ttest_ind(finals[best], v, equal_var=False).pvalue
            p = 1.0 if math.isnan(p) else float(p)  # identical constant samples
            rows[g] = (p, p >= ALPHA)
        else:
            rows[g] = (math.nan, None)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["p_vs_best", "same_as_best"])


def summarize(sweep: Sweep) -> pd.DataFrame:
    """One row per group: run counts, accuracy mean/std/95 % CI, losses, speed, significance."""
    runs = sweep.runs
    rows = []
    finals: dict[str, np.ndarray] = {}
    for group, g in runs.groupby("group", sort=False):
        done = g[g["status"] == "completed"]
        final = done["final_test_acc"].to_numpy(dtype=float) if "final_test_acc" in g else np.array([])
        best = done["best_test_acc"].to_numpy(dtype=float) if "best_test_acc" in g else np.array([])
        finals[group] = final
        row: dict[str, Any] = {"group": group, **{k: g[k].iloc[0] for k in sweep.group_cols}}
        row.update(
            runs=len(g), completed=len(done), diverged=int((g["status"] == "diverged").sum()),
            failed=int(g["status"].isin(["failed", "interrupted", "running"]).sum()),
        )  # fmt: skip
        for name, v in (("final_test_acc", final), ("best_test_acc", best)):
            lo, hi = _ci95(v)
            row.update({f"{name}_mean": v.mean() if len(v) else math.nan,
                        f"{name}_std": v.std(ddof=1) if len(v) > 1 else math.nan,
                        f"{name}_ci95_low": lo, f"{name}_ci95_high": hi})  # fmt: skip
        for col in ("final_train_loss", "final_test_loss", "epoch_seconds"):
            row[f"{col}_mean"] = done[col].mean() if col in done and len(done) else math.nan
        if "epochs_to_97" in done:
            reached = done["epochs_to_97"].dropna()
            row["epochs_to_97_mean"] = reached.mean() if len(reached) else math.nan
            row["reached_97"] = f"{len(reached)}/{len(done)}"
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("group")
    summary = summary.join(compare_to_best(finals))
    return summary.sort_values("final_test_acc_mean", ascending=False, na_position="last")


def best_settings(sweep: Sweep, summary: pd.DataFrame) -> pd.DataFrame | None:
    """Each activation at its best setting of the other swept keys (e.g. its best lr), or None.

    Comparing activations each at their own best learning rate is the fair comparison.
    """
    if len(sweep.group_cols) < 2 or summary["final_test_acc_mean"].isna().all():
        return None
    picks = summary.dropna(subset=["final_test_acc_mean"]).groupby("activation")["final_test_acc_mean"].idxmax()
    best = summary.loc[picks.to_numpy()].drop(columns=["p_vs_best", "same_as_best"])
    done = sweep.runs[sweep.runs["status"] == "completed"]
    finals = {g: done.loc[done["group"] == g, "final_test_acc"].to_numpy(float) for g in best.index}
    return best.join(compare_to_best(finals)).sort_values("final_test_acc_mean", ascending=False)


def finding(summary: pd.DataFrame) -> str:
    """The significance result as a sentence for report.md."""
    s = summary.dropna(subset=["final_test_acc_mean"])
    if s.empty:
        return "No run completed, so there is nothing to compare."
    top = s.index[0]
    n = int(s.loc[top, "completed"])
    head = f"**{top}** has the best final test accuracy ({_pct_pm(s.loc[top])}, {n} run(s))."
    if s["completed"].min() < 2:
        return head + (" Some groups have a single completed run, so no significance test is "
                       "possible; sweep seed=0,1,2 for one.")  # fmt: skip
    # same_as_best holds True, False or None (no test possible); numpy bools compare with ==.
    same = [g for g in s.index[1:] if s.loc[g, "same_as_best"] in (True,)]
    worse = [g for g in s.index[1:] if s.loc[g, "same_as_best"] in (False,)]
    text = head
    if same:
        text += (f" Statistically indistinguishable from it (Welch's t-test over seeds, p ≥ {ALPHA}): "
                 + ", ".join(f"{g} (p = {s.loc[g, 'p_vs_best']:.2g})" for g in same) + ".")  # fmt: skip
    if worse:
        text += (f" Significantly worse (p < {ALPHA}): "
                 + ", ".join(f"{g} (p = {s.loc[g, 'p_vs_best']:.2g})" for g in worse) + ".")  # fmt: skip
    if not same and worse:
        text += f" So {top} is the clear winner of this comparison."
    return text


def _pct_pm(row: pd.Series) -> str:
    mean, std = 100 * row["final_test_acc_mean"], 100 * row["final_test_acc_std"]
    return f"{mean:.2f} %" + ("" if math.isnan(std) else f" ± {std:.2f}")


# ---------------------------------------------------------------- plots


def _colors(groups: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    return {g: cmap(i % cmap.N) for i, g in enumerate(groups)}


def plot_curves(sweep: Sweep, metric: str, ylabel: str, path: Path, log: bool, order: Sequence[str]) -> None:
    """One line per group over epochs: mean over seeds with a ±std band; diverged runs marked x."""
    import matplotlib.pyplot as plt

    df = sweep.results.copy()
    scale = 100.0 if metric.endswith("_acc") else 1.0
    df[metric] = df[metric] * scale
    colors = _colors(order)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for group in order:
        g = df[(df["group"] == group) & np.isfinite(df[metric])]
        if g.empty:
            continue
        stat = g.groupby("epoch")[metric].agg(["mean", "std", "count"])
        runs = sweep.runs[sweep.runs["group"] == group]
        n_div = int((runs["status"] == "diverged").sum())
        label = group + (f" ({n_div} of {len(runs)} diverged)" if n_div else "")
        ax.plot(stat.index, stat["mean"], marker="o", ms=3, lw=1.8, color=colors[group], label=label)
        if stat["count"].max() > 1:
            ax.fill_between(stat.index, stat["mean"] - stat["std"], stat["mean"] + stat["std"],
                            color=colors[group], alpha=0.18, lw=0)  # fmt: skip
        for run in runs[runs["status"] == "diverged"]["run"]:
            last = g[g["run"] == run].tail(1)
            ax.plot(last["epoch"], last[metric], "x", ms=10, mew=2, color=colors[group])
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if df["epoch"].nunique() <= 20:
        ax.set_xticks(sorted(df["epoch"].unique()))
    seeds = sweep.runs.groupby("group")["seed"].nunique().max()
    band = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    ax.set_title(f"{ylabel.split(' (')[0].capitalize()} per activation ({band})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(order) > 6 else 1)
    _save(fig, path)


def plot_vs_key(summary: pd.DataFrame, key: str, path: Path) -> None:
    """Final test accuracy against one swept key (depth, lr...), one line per activation."""
    import matplotlib.pyplot as plt

    df = summary.dropna(subset=["final_test_acc_mean"]).copy()
    x_num = pd.to_numeric(df[key], errors="coerce")
    numeric = x_num.notna().all()
    if numeric:
        df["x"] = x_num
    else:
        cats = sorted(df[key].astype(str).unique())
        df["x"] = df[key].astype(str).map({c: i for i, c in enumerate(cats)})
    acts = list(dict.fromkeys(summary["activation"]))
    colors = _colors(acts)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for act in acts:
        g = df[df["activation"] == act].groupby("x")[["final_test_acc_mean", "final_test_acc_std"]].mean()
        if g.empty:
            continue
        ax.errorbar(g.index, 100 * g["final_test_acc_mean"], yerr=100 * g["final_test_acc_std"].fillna(0),
                    marker="o", capsize=3, color=colors[act], label=act)  # fmt: skip
    if numeric and df["x"].min() > 0 and df["x"].max() / df["x"].min() >= 50:
        ax.set_xscale("log")
    if numeric:
        ax.set_xticks(sorted(df["x"].unique()), [f"{v:g}" for v in sorted(df["x"].unique())])
    else:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(key)
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"Final test accuracy against {key} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_diagnostics(sweep: Sweep, path: Path, order: Sequence[str]) -> None:
    """Gradient norm of the first layer over epochs; per-layer gradient norm, dead and
    saturated fractions in the final epoch; one line per group (mean over seeds)."""
    import matplotlib.pyplot as plt

    d = sweep.diagnostics
    colors = _colors(order)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained")
    final = d[d["epoch"] == d.groupby("run")["epoch"].transform("max")]
    panels = (
        (axes[0, 0], d[d["layer"] == 1], "epoch", "grad_norm", "first-layer weight gradient norm", True),
        (axes[0, 1], final, "layer", "grad_norm", "weight gradient norm, final epoch", True),
        (axes[1, 0], final, "layer", "dead_frac", "dead units (never active), final epoch", False),
        (axes[1, 1], final, "layer", "saturated_frac", "saturated units (f' < 1 % of max), final epoch",
         False),
    )  # fmt: skip
    for ax, data, x, y, title, log in panels:
        for group in order:
            g = data[(data["group"] == group)].dropna(subset=[y])
            if g.empty:
                continue
            m = g.groupby(x)[y].mean()
            ax.plot(m.index, m.to_numpy() * (1 if log else 100), marker="o", ms=3, color=colors[group],
                    label=group)  # fmt: skip
        ax.set_xlabel("epoch" if x == "epoch" else "layer (1 = input side; last = output layer)")
        ax.set_ylabel(y.replace("_", " ") + ("" if log else " (%)"))
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=2 if len(order) > 6 else 1)
    fig.suptitle("Training diagnostics on a fixed probe batch of 512 test images")
    _save(fig, path)


def plot_confusion(sweep: Sweep, path: Path, order: Sequence[str]) -> bool:
    """Error counts (diagonal removed) per group, summed over seeds. False if none saved."""
    import matplotlib.pyplot as plt

    mats = {}
    for group in order:
        paths = sweep.runs[(sweep.runs["group"] == group) & (sweep.runs["status"] == "completed")]["path"]
        files = [Path(p) / "confusion.csv" for p in paths if (Path(p) / "confusion.csv").exists()]
        if files:
            mats[group] = sum(pd.read_csv(f, index_col=0).to_numpy() for f in files)
    if not mats:
        return False
    cols = min(4, len(mats))
    rows = math.ceil(len(mats) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), layout="constrained",
                             squeeze=False)  # fmt: skip
    for ax in axes.flat[len(mats):]:
        ax.axis("off")
    for ax, (group, m) in zip(axes.flat, mats.items(), strict=False):
        errors = m.copy()
        np.fill_diagonal(errors, 0)
        ax.imshow(errors, cmap="Reds")
        ax.set_title(f"{group}\n{errors.sum()} errors / {m.sum()}", fontsize=9)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    fig.suptitle("Test-set confusions (diagonal removed), summed over seeds")
    _save(fig, path)
    return True


def plot_examples(run_path: Path, title: str, path: Path) -> bool:
    """A few test digits with the model's softmax probabilities. False if none saved.

    Two axes per row of up to 8 digits (the digits side by side in one image, their 10-class
    bar charts side by side in one plot): one small axes per digit and chart made this the
    slowest figure of the report (32 axes took ~0.45 s to create alone).
    """
    import matplotlib.pyplot as plt

    f = run_path / "examples.npz"
    if not f.exists():
        return False
    ex = np.load(f)
    n = len(ex["label"])
    cols = min(8, n)
    rows = math.ceil(n / cols)
    pitch = 12  # bar slots per digit: 10 classes + 2 of gap
    fig, axes = plt.subplots(2 * rows, 1, figsize=(1.6 * cols, 3.3 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.8, 1] * rows, "hspace": 0.3,
                                          "left": 0.05, "right": 0.99, "bottom": 0.06, "top": 0.86})  # fmt: skip
    # 28x28 digits side by side with a 4-pixel white gap, in slots `pitch` bar-widths wide.
    gap = np.zeros((28, 4), dtype=np.float32)
    height = pitch * 28 / 32  # square pixels in data units
    for r in range(rows):
        img_ax, bar_ax = axes[2 * r, 0], axes[2 * r + 1, 0]
        items = range(r * cols, min(n, (r + 1) * cols))
        img_ax.imshow(np.hstack([np.hstack([ex["image"][i], gap]) for i in items]), cmap="gray_r",
                      extent=(-1, len(items) * pitch - 1, 0, height), aspect="auto")  # fmt: skip
        img_ax.set_xlim(-1, len(items) * pitch - 1)
        img_ax.set_ylim(0, height * 1.45)  # room for the titles inside the axes
        img_ax.axis("off")
        ticks, labels = [], []
        for j, i in enumerate(items):
            prob, label = ex["prob"][i], int(ex["label"][i])
            pred = int(prob.argmax())
            img_ax.text(j * pitch + 5, height * 1.03, f"true {label}, pred {pred}\n{100 * prob[pred]:.1f} %",
                        ha="center", va="bottom", fontsize=8, color="black" if pred == label else "red")  # fmt: skip
            x = j * pitch + np.arange(10)
            bar_ax.bar(x, prob, width=0.8, color=["tab:green" if c == label else "tab:gray" for c in range(10)])
            ticks.extend(x.tolist())
            labels.extend(str(c) for c in range(10))
        bar_ax.set_xticks(ticks, labels, fontsize=5)
        bar_ax.set_xlim(-1, len(items) * pitch - 1)
        bar_ax.set_ylim(0, 1)
        bar_ax.set_yticks([0, 0.5, 1])
        bar_ax.tick_params(axis="y", labelsize=6)
        bar_ax.set_ylabel("p(class)", fontsize=7)
    fig.suptitle(f"Softmax probabilities of {title} (green = true class; red title = mistake)")
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip("."))
    plt.close(fig)


# ---------------------------------------------------------------- report


def _table(summary: pd.DataFrame, group_cols: list[str]) -> str:
    def pct(v: float) -> str:
        return "–" if pd.isna(v) else f"{100 * v:.2f}"

    out = pd.DataFrame(index=summary.index)
    out["runs (ok/div/fail)"] = [f"{r.completed}/{r.diverged}/{r.failed}" for r in summary.itertuples()]
    out["final test acc %"] = [pct(m) + ("" if pd.isna(s) else f" ± {100 * s:.2f}")
                               for m, s in zip(summary["final_test_acc_mean"], summary["final_test_acc_std"],
                                               strict=True)]  # fmt: skip
    out["95 % CI"] = [
        "–" if pd.isna(lo) else f"[{pct(lo)}, {pct(hi)}]"
        for lo, hi in zip(summary["final_test_acc_ci95_low"], summary["final_test_acc_ci95_high"], strict=True)
    ]
    out["best test acc %"] = summary["best_test_acc_mean"].map(pct)
    if "epochs_to_97_mean" in summary:
        out["epochs to 97 %"] = [
            "never" if pd.isna(e) else f"{e:.1f} ({r})"
            for e, r in zip(summary["epochs_to_97_mean"], summary["reached_97"], strict=True)
        ]
    out["final train loss"] = summary["final_train_loss_mean"].map(lambda v: f"{v:.4f}")
    out["final test loss"] = summary["final_test_loss_mean"].map(lambda v: f"{v:.4f}")
    out["s / epoch"] = summary["epoch_seconds_mean"].map(lambda v: f"{v:.2f}")
    out["p vs best"] = ["best" if i == 0 else ("–" if pd.isna(p) else f"{p:.2g}")
                        for i, p in enumerate(summary["p_vs_best"])]  # fmt: skip
    out.index.name = " · ".join(group_cols) if len(group_cols) > 1 else "activation"
    return out.to_markdown()


def _activation_modules(sweep: Sweep) -> dict[str, dict]:
    """{activation name: its module config} for the activations in the sweep."""
    found: dict[str, dict] = {}
    for p in sweep.runs["path"]:
        cfg = json.loads((Path(p) / "run.json").read_text()).get("config", {})
        act = cfg.get("activation", {})
        if act.get("name") and act.get("module"):
            found.setdefault(act["name"], act["module"])
    return found


def build_report(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    missing_ok: bool = False,
) -> dict[str, Path]:
    """Write results.csv, summary.csv, plots and report.md for the runs below ``paths``.

    ``out_dir`` defaults to the (first) sweep folder. Returns {name: path} of what was written;
    with ``missing_ok`` an empty dict when there are no runs instead of an error.
    """
    import matplotlib

    matplotlib.use("Agg")
    try:
        sweep = load_sweep(paths)
    except UserError:
        if missing_ok:
            return {}
        raise
    out = Path(out_dir) if out_dir is not None else Path(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def csv(df: pd.DataFrame, name: str, index: bool = False) -> None:
        with atomic(out / name) as tmp:
            df.to_csv(tmp, index=index)
        written[name] = out / name

    csv(sweep.results, "results.csv")
    csv(sweep.runs.drop(columns=["path"]), "runs.csv")
    if len(sweep.diagnostics):
        csv(sweep.diagnostics, "diagnostics.csv")
    if sweep.results.empty:
        summary = pd.DataFrame()
    else:
        summary = summarize(sweep)
        csv(summary, "summary.csv", index=True)
    order = list(summary.index) if len(summary) else sorted(sweep.runs["group"].unique())

    figures: list[tuple[str, str]] = []
    if len(sweep.results):
        for metric, ylabel, file, log in CURVES:
            plot_curves(sweep, metric, ylabel, out / file, log, order)
            figures.append((ylabel.split(" (")[0].capitalize(), file))
    for key in sweep.group_cols[1:] if len(summary) else []:
        file = f"accuracy_vs_{key.replace('.', '_')}.png"
        plot_vs_key(summary, key, out / file)
        figures.append((f"Final test accuracy against {key}", file))
    if len(sweep.diagnostics):
        plot_diagnostics(sweep, out / "diagnostics.png", order)
        figures.append(("Diagnostics", "diagnostics.png"))
    if plot_confusion(sweep, out / "confusion.png", order):
        figures.append(("Confusion matrices", "confusion.png"))
    done = sweep.runs[sweep.runs["status"] == "completed"]
    if len(done) and "final_test_acc" in done and len(summary):
        top = done[done["group"] == summary.index[0]].sort_values("final_test_acc").iloc[-1]
        if plot_examples(Path(top["path"]), f"{top['run']}", out / "examples.png"):
            figures.append(("Predictions of the best model", "examples.png"))
    modules = _activation_modules(sweep)
    if modules:
        from .shapes import plot_activation_shapes

        with contextlib.suppress(Exception):  # a user's activation may not be importable here
            plot_activation_shapes(modules, out / "activations.png")
            figures.append(("Activation functions and their derivatives", "activations.png"))
    for _, file in figures:
        written[file] = out / file

    lines = [
        "# Activation comparison on MNIST",
        "",
        f"Built {datetime.now().isoformat(timespec='seconds')} from {len(sweep.runs)} run(s) in "
        + ", ".join(f"`{p}`" for p in paths) + ".",
        f"Compared by: {', '.join(sweep.group_cols)}; seeds: "
        f"{', '.join(map(str, sorted(sweep.runs['seed'].dropna().unique())))}.",
        f"Code: git {', '.join(sorted({str(c)[:10] for c in sweep.runs['git_commit']}))}; "
        f"torch {', '.join(sorted(set(map(str, sweep.runs['torch']))))}; "
        f"device {', '.join(sorted(set(map(str, sweep.runs['device']))))}.",
        "",
    ]
    if len(summary):
        lines += ["## Summary (sorted by final test accuracy)", "", _table(summary, sweep.group_cols), "",
                  finding(summary), ""]  # fmt: skip
        best = best_settings(sweep, summary)
        if best is not None:
            lines += ["## Each activation at its best setting", "",
                      "The fair comparison: every activation with the value of "
                      f"{', '.join(sweep.group_cols[1:])} that suits it best.", "",
                      _table(best, sweep.group_cols), "", finding(best), ""]  # fmt: skip
    bad = sweep.runs[~sweep.runs["status"].isin(["completed"])]
    if len(bad):
        lines += ["## Runs that did not complete", ""]
        lines += [f"- `{r.run}`: **{r.status}**"
                  + (f" in epoch {int(r.diverged_epoch)}" if pd.notna(r.diverged_epoch) else "")
                  + (f": {r.error}" if r.error else "") for r in bad.itertuples()]  # fmt: skip
        lines.append("")
    for title, file in figures:
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
    lines += ["## Files", "", "- `results.csv`: every run's epoch rows (tidy); `runs.csv`: one row per run;",
              "  `summary.csv`: one row per compared group; `diagnostics.csv`: per-layer diagnostics.", ""]  # fmt: skip
    with atomic(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    written["report"] = out / "report.md"
    return written
