"""The report's figures on small synthetic sweeps (run folders written directly, no training): what each
figure draws, read back from its matplotlib axes (``style.save`` is replaced so the figure stays open).
The numbers drawn are the statistics module's (``S``): a figure and a table cannot disagree."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from actcompare.report import figures as F
from actcompare.report import stats as S
from actcompare.report.figures import style
from actcompare.report.load import load_sweep

from .conftest import write_run

matplotlib.use("Agg")
SEEDS = (0, 1, 2)


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures drawn (instead of being saved), in order; closed afterwards."""
    import matplotlib.pyplot as plt

    figs: list = []

    def keep(fig, path, pdf=False):
        figs.append(fig)
        return [Path(path)]

    monkeypatch.setattr(style, "save", keep)
    yield figs
    for fig in figs:
        plt.close(fig)


def run(
    root: Path,
    act: str,
    seed: int,
    final: float,
    epochs: int = 3,
    confusion: np.ndarray | None = None,
    diagnostics: pd.DataFrame | None = None,
    **config,
) -> Path:
    """A run whose test accuracy climbs to ``final``; folder named after its settings."""
    label = ",".join([f"activation={act}", *(f"{k}={v}" for k, v in sorted(config.items())), f"seed={seed}"])
    curve = [final - 0.01 * (epochs - 1 - e) for e in range(epochs)]
    cfg: dict = {}
    for key, value in config.items():  # "optimizer.lr" -> {"optimizer": {"lr": ...}}
        head, _, leaf = key.partition(".")
        base = {
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001},
            "model": {"hidden_sizes": [32, 32], "depth": None},
        }.get(head, {})
        cfg[head] = {**base, **cfg.get(head, {}), leaf: value}
    folder = write_run(root / label.replace(".", "_"), act, seed, curve, **cfg)
    if confusion is not None:
        pd.DataFrame(confusion.astype(int)).to_csv(folder / "confusion.csv")
    if diagnostics is not None:
        diagnostics.assign(activation=act, seed=seed).to_csv(folder / "diagnostics.csv", index=False)
    return folder


def comparisons_of(sweep, baseline: str = "relu", verdicts: dict | None = None) -> pd.DataFrame:
    """Comparisons in the shape the statistics give them: each group against the baseline at its setting."""
    runs = sweep.runs[sweep.runs["outcome"].isin(["counted", "not_learning"])]  # never-learned groups listed too
    keys = sweep.setting_cols
    rows = []
    for group, g in runs.groupby("group", sort=False):
        act = g["activation"].iloc[0]
        if act == baseline:
            continue
        same = runs[(runs["activation"] == baseline)]
        for k in keys:
            same = same[same[k].astype(str) == str(g[k].iloc[0])]
        base = same["group"].iloc[0]
        d = S.paired_seed_diffs(sweep, group, base)
        lo, hi = stats.ttest_1samp(d.to_numpy(), 0).confidence_interval() if d.std() > 0 else (math.nan, math.nan)
        row = {
            "group": group,
            "baseline": base,
            "diff": d.mean(),
            "diff_ci_low": lo,
            "diff_ci_high": hi,
            "n_pairs": len(d),
        }
        if verdicts is not None:
            row["verdict"] = verdicts.get(act, "undecided")
        rows.append(row)
    return pd.DataFrame(rows)


def points(ax) -> list:
    """The marker-only lines of an axes (dots), as arrays of x values."""
    return [line for line in ax.get_lines() if line.get_linestyle() in ("None", "none", "")]


# ---------------------------------------------------------------- order and scales


def test_natural_order_and_axis_scales() -> None:
    assert F.natural_sorted(["16", "2", "8", "4"]) == ["2", "4", "8", "16"]
    assert F.natural_sorted(["0.01", "0.0001", "0.001"]) == ["0.0001", "0.001", "0.01"]
    assert F.natural_sorted(["[256, 64]", "[64, 64]", "[128]"]) == ["[64, 64]", "[128]", "[256, 64]"]
    assert F.axis_scale([2, 4, 8, 16]) == "log2"  # depth, width: powers of two
    assert F.axis_scale([1e-4, 3e-4, 1e-3, 1e-2]) == "log10"  # a learning rate over decades
    assert F.axis_scale([0.1, 0.2, 0.3]) == "linear" and F.axis_scale([1, 2, 3]) == "linear"
    assert F.axis_scale(["adam", "sgd"]) == "category"


# ---------------------------------------------------------------- the forest plot


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    """relu, tanh, sigmoid on seeds 0-2, and sigmoid also on seed 3 (relu lacks it: never paired)."""
    root = tmp_path_factory.mktemp("paired")
    finals = {"relu": [0.970, 0.972, 0.968], "tanh": [0.971, 0.970, 0.969], "sigmoid": [0.960, 0.964, 0.959]}
    for act, accs in finals.items():
        for seed, acc in zip(SEEDS, accs, strict=True):
            run(root, act, seed, acc)
    run(root, "sigmoid", 3, 0.990)
    return root


def test_forest_one_dot_per_shared_seed_ci_margin_and_verdicts(paired: Path, drawn: list) -> None:
    sweep = load_sweep([paired])
    comp = comparisons_of(sweep, verdicts={"tanh": "equivalent", "sigmoid": "worse"})
    assert F.plot_forest(sweep, comp, 0.001, Path("forest.png"))
    (ax,) = [a for a in drawn[0].axes if a.get_yticklabels()]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == {"tanh", "sigmoid"}
    for i, label in enumerate(labels):
        want = sorted(100 * S.paired_seed_diffs(sweep, label, "relu").to_numpy())
        dots = [ln for ln in points(ax) if ln.get_marker() == "o" and np.allclose(ln.get_ydata(), -i, atol=0.4)]
        assert len(dots) == 1 and len(dots[0].get_xdata()) == 3  # seeds 0-2 only: sigmoid's seed 3 has no pair
        assert sorted(dots[0].get_xdata()) == pytest.approx(want)
    # The mean with its CI (in points), the ±margin band, a zero line, the verdicts and n at the right.
    row = comp.set_index("group").loc["sigmoid"]
    bars = [ln for ln in ax.get_lines() if ln.get_linewidth() == pytest.approx(2.4)]
    assert any(
        sorted(b.get_xdata()) == pytest.approx([100 * row["diff_ci_low"], 100 * row["diff_ci_high"]]) for b in bars
    )
    band = [p for p in ax.patches if p.get_alpha() == pytest.approx(0.13)]
    assert len(band) == 1
    x0, width = band[0].get_x(), band[0].get_width()  # axvspan: a rectangle in data x
    assert x0 == pytest.approx(-0.1) and x0 + width == pytest.approx(0.1)  # margin 0.001 = 0.1 points
    assert any(ln.get_xdata()[0] == 0 and ln.get_xdata()[-1] == 0 for ln in ax.get_lines())
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "equivalent" in texts and "worse" in texts and texts.count("n = 3") == 2
    assert "3 shared seeds" in drawn[0]._suptitle.get_text()


def test_forest_without_verdicts_and_without_comparisons(paired: Path, drawn: list) -> None:
    sweep = load_sweep([paired])
    assert F.plot_forest(sweep, comparisons_of(sweep), 0.002, Path("forest.png"))
    ax = drawn[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["n = 3", "n = 3"]  # no verdict column yet: n alone
    assert F.plot_forest(sweep, pd.DataFrame(columns=["group", "baseline", "diff"]), 0.002, Path("f.png")) == []


def test_forest_puts_a_group_that_never_learned_off_the_scale(tmp_path: Path, drawn: list) -> None:
    for seed in SEEDS:
        run(tmp_path, "relu", seed, 0.97 + 0.001 * seed)
        run(tmp_path, "tanh", seed, 0.968 + 0.002 * seed)
        run(tmp_path, "sigmoid", seed, 0.1135)  # stuck on one digit
    sweep = load_sweep([tmp_path])
    assert set(S.not_learning_groups(sweep)) == {"sigmoid"}
    F.plot_forest(sweep, comparisons_of(sweep), 0.002, Path("forest.png"))
    ax = drawn[0].axes[0]
    lo, hi = ax.get_xlim()
    assert lo > -5 and hi < 5  # -85.8 points does not set the scale...
    assert any("-85.8" in t.get_text() and "never learned" in t.get_text() for t in ax.texts)  # ... it is written
    sigmoid_row = -[t.get_text() for t in ax.get_yticklabels()].index("sigmoid")
    assert not [ln for ln in points(ax) if np.allclose(ln.get_ydata(), sigmoid_row, atol=0.4)]


# ---------------------------------------------------------------- difference curves


def test_difference_curves_are_paired_by_seed_with_t_bands(paired: Path, drawn: list) -> None:
    sweep = load_sweep([paired])
    st = S.paired_epoch_diffs(sweep, "sigmoid", "relu")
    res = sweep.results.merge(sweep.runs[["run", "group"]], on=["run", "group"])
    for epoch, row in st.iterrows():
        at = res[res["epoch"] == epoch]
        a = at[at["group"] == "sigmoid"].set_index("seed")["test_acc"]
        b = at[at["group"] == "relu"].set_index("seed")["test_acc"]
        shared = sorted(set(a.index) & set(b.index))
        assert row["n"] == 3 and shared == [0, 1, 2]
        ci = stats.ttest_rel(a[shared], b[shared]).confidence_interval()
        assert row["diff"] == pytest.approx((a[shared] - b[shared]).mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert F.plot_diff_curves(sweep, comparisons_of(sweep), Path("d.png"), margin=0.002)
    ax = drawn[0].axes[0]
    sig = [ln for ln in ax.get_lines() if ln.get_color() == F.color("sigmoid")]
    assert sig and list(sig[0].get_ydata()) == pytest.approx(list(100 * st["diff"]))
    assert "n = 3 pairs" in ax.get_title()


# ---------------------------------------------------------------- accuracy against a swept key


@pytest.fixture(scope="module")
def depth(tmp_path_factory) -> Path:
    """relu and sigmoid at depths 2, 4, 8, 16; sigmoid never learns at 16."""
    root = tmp_path_factory.mktemp("depth")
    for d, relu, sigmoid in ((2, 0.975, 0.970), (4, 0.976, 0.965), (8, 0.972, 0.91), (16, 0.95, 0.1135)):
        for seed in SEEDS:
            m = np.full((10, 10), 2.0) + np.diag(np.full(10, 980.0))
            m[3, 5] += 10 * (1 + seed)  # some confusion, the same scale as the others
            collapsed = np.zeros((10, 10))
            collapsed[:, 1] = 1000.0
            run(root, "relu", seed, relu + 0.001 * seed, confusion=m, **{"model.depth": d})
            run(
                root,
                "sigmoid",
                seed,
                sigmoid + (0.002 * seed if d < 16 else 0.0),
                confusion=collapsed if d == 16 else m,
                **{"model.depth": d},
            )
    return root


def test_depth_axis_is_log2_in_natural_order_and_zoomed_past_the_collapsed_group(depth: Path, drawn: list) -> None:
    sweep = load_sweep([depth])
    assert sweep.setting_cols == ["model.depth"]
    F.plot_vs_key(sweep, None, "model.depth", Path("v.png"))
    ax = drawn[0].axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8", "16"]
    lo, hi = ax.get_ylim()
    assert lo > 85 and hi < 100  # zoomed to the data, not 0-100, and not stretched down to 11 %
    assert any("sigmoid 11.3 %" in t.get_text() for t in ax.texts)  # the collapsed group is marked, with its value
    assert "n = 3 seeds" in ax.get_title()


def test_lr_axis_is_log10(tmp_path: Path, drawn: list) -> None:
    for lr, acc in ((1e-4, 0.94), (1e-3, 0.975), (1e-2, 0.96)):
        for act in ("relu", "tanh"):
            for seed in (0, 1):
                run(tmp_path, act, seed, acc + 0.001 * seed, **{"optimizer.lr": lr})
    sweep = load_sweep([tmp_path])
    F.plot_vs_key(sweep, None, "optimizer.lr", Path("v.png"))
    ax = drawn[0].axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 10
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0001", "0.001", "0.01"]


def test_curve_panels_in_natural_order_with_seed_counts(depth: Path, drawn: list) -> None:
    sweep = load_sweep([depth])
    F.plot_curves(sweep, "test_acc", "test accuracy (%)", Path("c.png"), log=False)
    titles = [ax.get_title() for ax in drawn[0].axes if ax.axison]
    assert [t.split(";")[0] for t in titles] == [f"model.depth={d}" for d in (2, 4, 8, 16)]
    assert all("n = 3 seeds" in t for t in titles)
    last = [ax for ax in drawn[0].axes if ax.axison][-1]
    assert last.get_ylim()[0] > 80 and "sigmoid 11.3 %" in titles[-1]  # the collapsed group: apart, named


def test_searched_key_gets_no_panel_per_trial(tmp_path: Path, drawn: list) -> None:
    """An Optuna-like sweep: 12 distinct lrs per activation, one seed each: one panel per activation."""
    rng = np.random.default_rng(0)
    m = np.full((10, 10), 1.0) + np.diag(np.full(10, 990.0))
    for act in ("relu", "tanh"):
        for i, lr in enumerate(np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), 12))):
            run(
                tmp_path,
                act,
                0,
                0.90 + 0.005 * i,
                confusion=m,
                diagnostics=diag_rows([0.1, 0.1], [0.0, 0.0]),
                **{"optimizer.lr": float(f"{lr:.3g}")},
            )
    sweep = load_sweep([tmp_path])
    assert F.searched_keys(sweep) == ["optimizer.lr"] and F.panel_keys(sweep) == []
    F.plot_curves(sweep, "test_acc", "test accuracy (%)", Path("c.png"), log=False)
    panels = [ax for ax in drawn[0].axes if ax.axison and ax.get_label() != "<colorbar>"]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["relu", "tanh"]
    assert all("12 settings of optimizer.lr" in ax.get_title() for ax in panels)
    assert any(ax.get_label() == "<colorbar>" for ax in drawn[0].axes)
    best, _ = S.best_groups(sweep, F.panel_keys(sweep))
    assert len(best) == 2  # each activation's best setting, drawn thick
    F.plot_vs_key(sweep, None, "optimizer.lr", Path("v.png"))
    assert drawn[1].axes[0].get_xscale() == "log"
    # Confusions and diagnostics: each activation's best setting only, not 24 panels / rows.
    F.plot_confusion(sweep, Path("c.png"))
    assert sorted(ax.get_title().split(",")[0] for ax in drawn[2].axes if ax.images) == ["relu", "tanh"]
    F.plot_diagnostics(sweep, Path("d.png"))
    assert len([ax for ax in drawn[3].axes if ax.axison]) == 3
    assert "best setting of optimizer.lr" in drawn[3]._suptitle.get_text()


# ---------------------------------------------------------------- confusion matrices


def test_confusion_scale_is_not_set_by_a_collapsed_group(depth: Path, drawn: list) -> None:
    sweep = load_sweep([depth])
    F.plot_confusion(sweep, Path("c.png"))
    fig = drawn[0]
    images = [(ax.get_title(), ax.images[0]) for ax in fig.axes if ax.images]  # subfigures included
    shared = [im for title, im in images if not title.startswith("sigmoid, model.depth=16")]
    apart = [im for title, im in images if title.startswith("sigmoid, model.depth=16")]
    assert len(shared) == 7 and len(apart) == 1
    limits = {im.get_clim() for im in shared}
    assert len(limits) == 1  # one colour scale ...
    ((vmin, vmax),) = limits
    assert vmin == 0 and vmax == pytest.approx(2 + 10 * (1 + 2 + 3) / 3)  # ... set by the largest mean error cell
    assert apart[0].get_clim()[1] == pytest.approx(1000.0)  # the collapsed group on its own scale
    assert all(im.colorbar is not None for im in shared[-1:] + apart)
    # natural order of the settings: depth 2 before 16
    titles = [t for t, _ in images]
    assert titles.index(next(t for t in titles if "depth=2\n" in t)) < titles.index(
        next(t for t in titles if "depth=16" in t)
    )


# ---------------------------------------------------------------- diagnostics


def diag_rows(no_grad: list[float], no_grad_all: list[float], legacy: bool = False) -> pd.DataFrame:
    rows = []
    for epoch in (1, 2):
        for layer, (most, every) in enumerate(zip(no_grad, no_grad_all, strict=True), start=1):
            row = {
                "epoch": epoch,
                "layer": layer,
                "grad_norm": 0.1 * layer,
                "inactive_frac": most / 2,
                "dead_frac": every,
                "saturated_frac": most / 2,
                "zero_frac": 0.1,
                "act_mean": 0.5,
                "act_std": 1.0,
            }
            if not legacy:
                row.update(no_grad_frac=most, no_grad_all_frac=every)
            rows.append(row)
        rows.append({"epoch": epoch, "layer": len(no_grad) + 1, "grad_norm": 0.3})
    return pd.DataFrame(rows)


def test_diagnostics_one_no_gradient_category_with_spread_and_labels(tmp_path: Path, drawn: list) -> None:
    for seed, (a, b) in enumerate(((0.5, 0.2), (0.7, 0.4))):  # relu: layer 1 without gradient for 50 % / 70 %
        run(tmp_path, "relu", seed, 0.97, epochs=2, diagnostics=diag_rows([a, b], [0.1, 0.05]))
        run(tmp_path, "tanh", seed, 0.97, epochs=2, diagnostics=diag_rows([0.0, 0.02], [0.0, 0.0]))
    sweep = load_sweep([tmp_path])
    F.plot_diagnostics(sweep, Path("d.png"))
    fig = drawn[0]
    used = [ax for ax in fig.axes if ax.axison]
    assert len(used) == 3 and all(ax.get_ylabel() for ax in used)
    assert all("n = 2 seeds" in ax.get_title() for ax in used)
    bars = used[2].patches
    heights = sorted(round(p.get_height(), 6) for p in bars)
    assert 60.0 in heights and 30.0 in heights  # relu's mean over the two seeds, in %, layers 1 and 2
    assert 10.0 in heights  # its darker part: no gradient for every probe image
    spread = [c for c in used[2].collections if len(c.get_segments())]
    assert any(np.allclose(sorted(s[:, 1]), [50.0, 70.0]) for c in spread for s in c.get_segments())
    assert "older" not in fig._suptitle.get_text()


def test_diagnostics_of_an_older_file_say_so(tmp_path: Path, drawn: list) -> None:
    for seed in (0, 1):
        run(tmp_path, "relu", seed, 0.97, epochs=2, diagnostics=diag_rows([0.5, 0.2], [0.1, 0.0], legacy=True))
        run(tmp_path, "tanh", seed, 0.97, epochs=2, diagnostics=diag_rows([0.1, 0.0], [0.0, 0.0], legacy=True))
    F.plot_diagnostics(load_sweep([tmp_path]), Path("d.png"))
    assert "older diagnostics.csv (every run" in drawn[0]._suptitle.get_text()
    # A merged sweep with newer runs too: the older ones still drawn (from their own columns), and counted.
    for seed in (2, 3):
        run(tmp_path, "relu", seed, 0.97, epochs=2, diagnostics=diag_rows([0.7, 0.4], [0.1, 0.0]))
        run(tmp_path, "tanh", seed, 0.97, epochs=2, diagnostics=diag_rows([0.1, 0.0], [0.0, 0.0]))
    F.plot_diagnostics(load_sweep([tmp_path]), Path("d.png"))
    assert "older diagnostics.csv (4 run(s)" in drawn[1]._suptitle.get_text()
    bars = [ax for ax in drawn[1].axes if ax.axison][2].patches
    assert sorted({round(p.get_height(), 6) for p in bars}) == [0.0, 10.0, 30.0, 60.0]  # means over all 4 seeds


# ---------------------------------------------------------------- through build_report


def test_build_report_writes_the_headline_figures(paired: Path, tmp_path: Path) -> None:
    from actcompare.report import build_report

    written = build_report([paired], out=tmp_path / "r")
    for name in ("forest.png", "diff_curves.png"):
        assert name in written and (tmp_path / "r" / name).read_bytes()[:4] == b"\x89PNG"
        assert not (tmp_path / "r" / name).with_suffix(".pdf").exists()  # PDFs only on request
    written = build_report([paired], out=tmp_path / "r", pdf=True)
    for name in ("forest.png", "diff_curves.png"):
        pdf = (tmp_path / "r" / name).with_suffix(".pdf")
        assert pdf.name in written and pdf.read_bytes()[:4] == b"%PDF"
    text = (tmp_path / "r" / "report.md").read_text()
    assert "(forest.pdf)" in text
    build_report([paired], out=tmp_path / "r")  # again without: the earlier PDFs are removed, none linked
    assert not list((tmp_path / "r").glob("*.pdf")) and ".pdf)" not in (tmp_path / "r" / "report.md").read_text()


def test_figure_list_for_report_md(paired: Path, tmp_path: Path, monkeypatch) -> None:
    """build_report hands markdown.render (title, file, kind, has_pdf) per figure, kind by what it is for."""
    from actcompare.report import build as B

    seen = {}

    def render(sweep, paths, summary, best, figures, facts, all_pairs):
        seen["figures"] = list(figures)
        return "report"

    monkeypatch.setattr(B, "render", render)
    B.build_report([paired], out=tmp_path / "r")
    kinds = {file: (kind, has_pdf) for _, file, kind, has_pdf in seen["figures"]}
    assert all(len(f) == 4 for f in seen["figures"])
    for file in ("forest.png", "diff_curves.png", "test_accuracy.png"):
        assert kinds[file] == ("decision", False)
    assert kinds["train_loss.png"] == ("curves", False) and kinds["test_loss.png"] == ("curves", False)
    B.build_report([paired], out=tmp_path / "r", pdf=True)
    assert all(has_pdf for _, _, _, has_pdf in seen["figures"])


def test_forest_draws_the_interval_the_verdict_used(paired: Path, drawn: list) -> None:
    """With decision_low/high/level in the comparisons (verdicts.decision_intervals), the bar is that
    interval, not the unadjusted 95 % CI, and the legend names its level."""
    sweep = load_sweep([paired])
    comp = comparisons_of(sweep, verdicts={"tanh": "equivalent", "sigmoid": "worse"})
    comp["decision_low"], comp["decision_high"] = comp["diff"] - 0.004, comp["diff"] + 0.003
    comp["decision_level"] = [0.975, 0.95]
    F.plot_forest(sweep, comp, 0.001, Path("forest.png"))
    ax = drawn[0].axes[0]
    bars = sorted(x for ln in ax.get_lines() if ln.get_linewidth() == pytest.approx(2.4) for x in ln.get_xdata())
    want = sorted(100 * (d + e) for d in comp["diff"] for e in (-0.004, 0.003))
    assert bars == pytest.approx(want)
    legend = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert any("interval the verdict used (95 %-97.5 %" in t for t in legend), legend


def test_activation_shapes_are_drawn_once_then_cached(tmp_path: Path, monkeypatch) -> None:
    from actcompare.report.figures import activations as A

    monkeypatch.setenv("ACTCOMPARE_CACHE_DIR", str(tmp_path / "cache"))
    modules = {"relu": {"_target_": "torch.nn.ReLU"}, "tanh": {"_target_": "torch.nn.Tanh"}}
    first = A.activation_shapes(modules, tmp_path / "a" / "activations.png")
    assert first == [tmp_path / "a" / "activations.png"] and first[0].read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "cache").glob("activations-*.png"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("drawn again")

    monkeypatch.setattr(A, "plot_activation_shapes", fail)
    (tmp_path / "b").mkdir()
    again = A.activation_shapes(modules, tmp_path / "b" / "activations.png")
    assert again[0].read_bytes() == first[0].read_bytes()  # the cached copy
    with pytest.raises(AssertionError, match="drawn again"):  # other activations: another key
        A.activation_shapes({"relu": {"_target_": "torch.nn.ReLU"}}, tmp_path / "b" / "activations.png")


def test_plot_activations_command_draws_packaged_and_own_configs(tmp_path: Path, capsys) -> None:
    """actcompare-plot-activations: the packaged configs, one of a --config-dir, a typo refused."""
    from actcompare.report.shapes import main

    (tmp_path / "conf" / "activation").mkdir(parents=True)
    own = "name: my_swish\nmodule:\n  _target_: torch.nn.SiLU\n"
    (tmp_path / "conf" / "activation" / "my_swish.yaml").write_text(own)
    out = tmp_path / "shapes.png"
    assert main(["--out", str(out), "--config-dir", str(tmp_path / "conf"), "relu", "my_swish"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and out.with_suffix(".pdf").is_file()
    assert main(["relux"]) == 2
    assert "unknown activation(s) relux; available: elu" in capsys.readouterr().err
