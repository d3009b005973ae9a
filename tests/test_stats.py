"""report/stats.py: per-comparison numbers (the decision rule itself: tests/test_verdicts.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from actcompare.report.stats import ci95, compare, family


def test_compare_pairs_on_shared_seeds_only():
    a = {0: 0.980, 1: 0.975, 2: 0.979, 7: 0.5}
    b = {0: 0.978, 1: 0.974, 2: 0.976, 9: 0.99}
    r = compare(a, b, 0.003)
    assert r["n_pairs"] == 3 and r["seeds_dropped"] == "group: 7; baseline: 9"
    ref = stats.ttest_rel([0.980, 0.975, 0.979], [0.978, 0.974, 0.976])
    assert r["diff"] == pytest.approx(0.002) and (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx(
        ref.confidence_interval(0.95)
    )
    assert r["p_diff"] >= max(ref.pvalue, 0.25)  # the sign-flip floor of 3 pairs


def test_one_seed_against_a_mean_is_never_compared():
    r = compare({0: 0.98}, {0: 0.97, 1: 0.99, 2: 0.99}, 0.003)
    assert r["n_pairs"] == 1 and math.isnan(r["p_diff"]) and "one shared seed" in r["why"]
    assert r["diff"] == pytest.approx(0.01)  # the same-seed difference, not against the 3-seed mean
    r = compare({5: 0.98}, {0: 0.97}, 0.003)
    assert r["n_pairs"] == 0 and "no seed completed on both sides" in r["why"]


def test_ties_give_no_interval_and_say_why():
    r = compare({0: 0.9814, 1: 0.9790}, {0: 0.9800, 1: 0.9776}, 0.003)  # 14 images apart on both seeds
    assert math.isnan(r["diff_ci_low"]) and r["p_diff"] == pytest.approx(0.5) and "same difference" in r["why"]


def test_family_settles_with_a_pooled_sd():
    rng = np.random.default_rng(0)
    base = dict(enumerate(rng.normal(0.98, 0.002, 4)))
    rows = [
        {"group": g, "baseline": "relu", **compare({s: v + rng.normal(0, 0.002) for s, v in base.items()}, base, 0.003)}
        for g in ("a", "b")
    ]
    comp = family(rows, 0.003)
    assert list(comp["verdict"]) == ["undecided", "undecided"]  # 4 pairs < min_pairs
    sds = comp["sd_diff"].to_numpy()
    assert comp.attrs["pooled_sd"] == pytest.approx(math.sqrt((sds**2).mean()))
    assert comp.attrs["k"] == 2 and comp.attrs["seeds_needed"] >= comp.attrs["min_pairs"] > 4


def test_ci95() -> None:
    lo, hi = ci95([0.975, 0.98, 0.985])
    assert lo == pytest.approx(0.98 - stats.t.ppf(0.975, 2) * 0.005 / math.sqrt(3))
    assert hi == pytest.approx(0.98 + stats.t.ppf(0.975, 2) * 0.005 / math.sqrt(3))
    assert all(math.isnan(v) for v in ci95([0.9]))
    assert ci95([0.999, 1.0])[1] == 1.0  # clipped to the range of an accuracy
