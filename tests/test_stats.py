"""actcompare.report.stats: pairing, Holm, confidence intervals, detectable differences (no files)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from actcompare.report.stats import NO_TEST, PAIRED, WELCH, ci95, compare, holm, mdd_paired, mdd_welch


def power_two_sided(t_nc: float, df: int, alpha: float = 0.05) -> float:
    """Power of a two-sided t-test with noncentrality ``t_nc``: P(|T| > t_crit), T ~ nct(df, t_nc)."""
    crit = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(crit, df, t_nc) + sps.nct.cdf(-crit, df, t_nc)


def test_holm_known_values() -> None:
    # Holm: sorted p (0.01, 0.03, 0.04) x (3, 2, 1) = (0.03, 0.06, 0.04) -> monotone (0.03, 0.06, 0.06).
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])
    out = holm([0.01, math.nan, 0.02])  # NaN (no test) is not part of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert len(holm([])) == 0


def test_same_seeds_are_paired() -> None:
    a = {0: 0.975, 1: 0.980, 2: 0.985}  # seed effect: +-0.5 points, shared by both groups
    b = {0: 0.9725, 1: 0.9765, 2: 0.9825}
    r = compare(a, b)
    assert r["test"] == PAIRED and r["n_pairs"] == 3
    d = np.array([a[s] - b[s] for s in (0, 1, 2)])
    assert r["diff"] == pytest.approx(d.mean())
    assert r["p"] == pytest.approx(sps.ttest_rel(list(a.values()), list(b.values())).pvalue)
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # Pairing removes the shared seed effect: the unpaired test on the same numbers is far weaker.
    assert r["p"] < sps.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue


def test_different_seeds_fall_back_to_welch() -> None:
    a = {0: 0.979, 1: 0.981, 2: 0.978}
    b = {0: 0.975, 1: 0.976}  # seed 2 missing
    r = compare(a, b)
    assert r["test"] == WELCH and r["why"] == "the seeds differ" and r["n_pairs"] == 0
    assert r["p"] == pytest.approx(sps.ttest_ind([*a.values()], [*b.values()], equal_var=False).pvalue)
    va, vb = np.array([*a.values()]), np.array([*b.values()])
    se2a, se2b = va.var(ddof=1) / 3, vb.var(ddof=1) / 2
    df = (se2a + se2b) ** 2 / (se2a**2 / 2 + se2b**2 / 1)
    half = sps.t.ppf(0.975, df) * math.sqrt(se2a + se2b)
    assert r["diff_ci_high"] - r["diff_ci_low"] == pytest.approx(2 * half)


def test_single_seed_means_no_test() -> None:
    r = compare({0: 0.98}, {0: 0.97})
    assert r["test"] == NO_TEST and math.isnan(r["p"]) and math.isnan(r["mdd"])
    assert r["diff"] == pytest.approx(0.01) and r["why"] == "a single seed"


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_detectable_difference_has_80_percent_power(n: int) -> None:
    sd = 0.002
    mdd = mdd_paired(n, sd)
    assert power_two_sided(mdd / (sd / math.sqrt(n)), n - 1) == pytest.approx(0.80, abs=1e-3)
    assert mdd_paired(3, 0.001) == pytest.approx(3.2640 * 0.001, rel=1e-3)  # Cohen's d for n = 3 pairs


def test_detectable_difference_two_samples() -> None:
    n_a, n_b, sd = 3, 3, 0.002
    mdd = mdd_welch(n_a, n_b, sd, sd)
    t_nc = mdd / (sd * math.sqrt(1 / n_a + 1 / n_b))
    assert power_two_sided(t_nc, n_a + n_b - 2) == pytest.approx(0.80, abs=1e-3)
    assert math.isnan(mdd_welch(1, 3, 0.0, sd))


def test_ci95() -> None:
    lo, hi = ci95([0.975, 0.98, 0.985])
    half = sps.t.ppf(0.975, 2) * 0.005 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.98 - half, 0.98 + half))
    assert all(math.isnan(v) for v in ci95([0.9]))
    assert ci95([0.999, 1.0])[1] == 1.0  # clipped to the range of an accuracy
