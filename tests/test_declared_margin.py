"""A sweep's report.margin and report.baseline belong to its record: a rebuild (actcompare-report) and a
merge use what the runs declared, an explicit --margin/--baseline overrides it (and says so), and
sweeps that declared different values are refused in one line naming both and the fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from actcompare.errors import UserError
from actcompare.report import build_report, load_sweep
from actcompare.report.build import judge
from actcompare.report.cli import main as report_main

from .conftest import write_run


def _sweep(root: Path, margin: float | None = 0.3, baseline: str | None = None, first_seed: int = 0) -> Path:
    """Three seeds of relu, tanh and sigmoid; report.* as the recorder writes the resolved config
    (margin None: a run recorded before report.* existed)."""
    extra = {} if margin is None else {"report": {"margin": margin, "baseline": baseline}}
    for a, act in enumerate(("relu", "tanh", "sigmoid")):
        for seed in range(first_seed, first_seed + 3):
            acc = 0.95 + 0.001 * a + 0.0005 * seed
            write_run(root / f"activation={act},seed={seed}", act, seed, (0.9, acc), **extra)
    return root


def _margins(folder: Path) -> set[float]:
    return set(pd.read_csv(folder / "comparisons.csv")["margin"].round(6))


def test_a_rebuild_uses_the_margin_and_baseline_the_runs_declared(tmp_path):
    sweep = _sweep(tmp_path / "s", margin=5.0, baseline="tanh")
    assert report_main([str(sweep)]) == 0
    comp = pd.read_csv(sweep / "comparisons.csv")
    assert _margins(sweep) == {0.05} and set(comp["baseline"]) == {"tanh"}
    margin, baseline, sources = judge(load_sweep([sweep]), None, None)
    assert (margin, baseline) == (0.05, "tanh")
    assert sources == {"margin_source": "declared by the runs", "baseline_source": "declared by the runs"}


def test_an_explicit_margin_or_baseline_overrides_and_says_so(tmp_path):
    sweep = _sweep(tmp_path / "s", margin=5.0)
    margin, baseline, sources = judge(load_sweep([sweep]), 0.002, "sigmoid")  # --margin 0.2 --baseline sigmoid
    assert (margin, baseline) == (0.002, "sigmoid")
    assert sources["margin_source"] == "--margin (the runs declared ±5.00)"
    assert sources["baseline_source"] == "--baseline (the runs declared none)"
    _, _, same = judge(load_sweep([sweep]), 0.05, None)  # what the sweep's own callback passes
    assert same["margin_source"] == "declared by the runs"


@pytest.mark.parametrize("order", ["wide first", "narrow first"])
def test_merging_sweeps_that_declared_different_margins_is_refused(tmp_path, capsys, order):
    wide, narrow = _sweep(tmp_path / "wide", margin=5.0), _sweep(tmp_path / "narrow", margin=0.3, first_seed=3)
    paths = [wide, narrow] if order == "wide first" else [narrow, wide]
    assert report_main([*map(str, paths), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "±5.00" in err and "±0.30" in err and "--margin" in err, err
    assert not (tmp_path / "r" / "report.md").exists()
    assert judge(load_sweep(paths), 0.003, None)[0] == 0.003  # explicit: merged at that margin


def test_merging_sweeps_that_declared_different_baselines_is_refused(tmp_path):
    a, b = _sweep(tmp_path / "a", baseline="tanh"), _sweep(tmp_path / "b", baseline="sigmoid", first_seed=3)
    with pytest.raises(UserError, match=r"report\.baseline.*tanh.*sigmoid.*--baseline"):
        build_report([a, b], tmp_path / "r")
    assert judge(load_sweep([a, b]), None, "relu")[1] == "relu"


def test_runs_recorded_before_report_keys_declared_the_defaults(tmp_path):
    old, new = _sweep(tmp_path / "old", margin=None), _sweep(tmp_path / "new", margin=0.3, first_seed=3)
    margin, baseline, sources = judge(load_sweep([old, new]), None, None)  # the same margin: merged
    assert (margin, baseline, sources["margin_source"]) == (0.003, None, "declared by the runs")
    with pytest.raises(UserError, match=r"±5\.00"):
        build_report([old, _sweep(tmp_path / "wide", margin=5.0, first_seed=6)], tmp_path / "r2")


def test_the_same_runs_rebuilt_under_another_margin_are_two_declarations(tmp_path):
    """The same runs in two sweep folders (one counted once), declared at ±0.30 and ±5.00: refused."""
    with pytest.raises(UserError, match=r"±0\.30.*±5\.00|±5\.00.*±0\.30"):
        build_report([_sweep(tmp_path / "a", margin=0.3), _sweep(tmp_path / "b", margin=5.0)], tmp_path / "r")


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_a_margin_that_is_not_a_finite_positive_number_is_refused(tmp_path, capsys, value):
    sweep = _sweep(tmp_path / "s", margin=0.3)
    with pytest.raises(SystemExit) as exit_:
        report_main([str(sweep), "--margin", value, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and f"--margin {float(value)}: use a finite number" in err[-1], err
    assert not (tmp_path / "r").exists()
