"""The decision rule of report/verdicts.py, calibrated by Monte-Carlo on synthetic paired data.

Fixed seeds, a few seconds on a CPU. Monte-Carlo bounds: with R repetitions a true rate alpha is
seen above alpha + 3 * sqrt(alpha (1 - alpha) / R) with probability < 0.2 %.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from actcompare.report import verdicts as V

SD = 0.0015  # sd of paired differences, fraction (0.15 points: what MNIST seeds give)
M = 0.002  # margin


@pytest.fixture(autouse=True)
def _no_gc_per_call(monkeypatch):
    """statsmodels' multipletests calls gc.collect() on every call (~0.15 s in a test process);
    the simulations below call it thousands of times."""
    import gc

    monkeypatch.setattr(gc, "collect", lambda *a, **k: 0)


def _mc_bound(rate: float, reps: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / reps)


def _family(d: np.ndarray, margin: float = M) -> list[list[str]]:
    """Verdicts of R families: d has shape (R, k, n)."""
    t = V.paired_tests(d, margin)
    return [V.decide(t["diff"][r], t["p_diff"][r], t["p_equiv"][r])[0] for r in range(d.shape[0])]


def test_paired_tests_agree_with_scipy_and_statsmodels():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.98, 0.002, 8), rng.normal(0.979, 0.002, 8)
    t = V.paired_tests((a - b)[None], M)
    ref = stats.ttest_rel(a, b)
    lo, hi = ref.confidence_interval(0.95)
    assert t["ci_low"][0] == pytest.approx(lo) and t["ci_high"][0] == pytest.approx(hi)
    assert t["p_diff"][0] >= ref.pvalue - 1e-12  # never below the t-test's own p
    tost_p = ttost_paired(a, b, -M, M)[0]
    assert t["p_equiv"][0] >= tost_p - 1e-12


def test_ci_coverage_is_95_percent():
    reps, n, mu = 4000, 6, 0.001
    d = np.random.default_rng(2).normal(mu, SD, (reps, n))
    t = V.paired_tests(d, M)
    coverage = np.mean((t["ci_low"] <= mu) & (mu <= t["ci_high"]))
    assert 0.93 <= coverage <= 0.97


def test_no_false_better_or_worse_when_nothing_differs():
    reps, k, n = 600, 3, 10
    d = np.random.default_rng(3).normal(0.0, SD, (reps, k, n))
    false = np.mean([any(v in (V.BETTER, V.WORSE) for v in fam) for fam in _family(d)])
    assert false <= _mc_bound(V.ALPHA, reps)


def test_no_false_equivalent_at_the_margin():
    reps, k, n = 600, 3, 16
    rng = np.random.default_rng(4)
    d = rng.normal(M, SD, (reps, k, n)) * rng.choice([-1, 1], (reps, k, 1))  # true |diff| = m exactly
    false = np.mean([V.EQUIVALENT in fam for fam in _family(d)])
    assert false <= _mc_bound(V.ALPHA, reps)


def test_the_rule_can_decide():
    """Power: with enough seeds a true difference of 2 m is found and a true 0 is called equivalent."""
    rng = np.random.default_rng(5)
    k = 3
    n = V.seeds_needed(SD, M, k)
    better = _family(rng.normal(2 * M, SD, (200, k, n)))
    same = _family(rng.normal(0.0, SD, (200, k, n)))
    assert np.mean([fam.count(V.BETTER) == k for fam in better]) > 0.8
    assert np.mean([fam.count(V.EQUIVALENT) for fam in same]) / k > 0.7


@pytest.mark.parametrize("n", [2, 3, 5])
def test_tied_whole_image_differences_claim_nothing(n):
    """Every seed 14 images (0.14 points) apart: a bare t-test gives p ~ 1e-14; here p is what the
    pairs can show (2**(1-n)) and, below min_pairs, the verdict is undecided."""
    d = np.full((1, n), 14 / 10_000)
    t = V.paired_tests(d, M)
    assert t["p_diff"][0] == pytest.approx(2.0 ** (1 - n))
    assert np.isnan(t["ci_low"][0])
    verdicts, _, _ = V.decide(t["diff"], t["p_diff"], t["p_equiv"])
    assert n < V.min_pairs(1) and verdicts == [V.UNDECIDED]


def test_min_pairs_is_the_first_n_that_can_decide():
    for k in (1, 3, 13):
        n = V.min_pairs(k)
        same_sign = np.full((1, n), 0.01) + np.linspace(0, 1e-4, n)
        t = V.paired_tests(same_sign, M)
        assert V.decide(t["diff"] * np.ones(k), t["p_diff"] * np.ones(k), t["p_equiv"] * np.ones(k))[0][0] == V.BETTER
        t = V.paired_tests(same_sign[:, 1:], M)
        assert V.decide(t["diff"] * np.ones(k), t["p_diff"] * np.ones(k), t["p_equiv"] * np.ones(k))[0][0] != V.BETTER


def test_pairing_uses_shared_seeds_and_lists_the_rest():
    seeds, d, only_a, only_b = V.paired_diffs({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.7, 2: 0.6, 10: 0.5})
    assert seeds == [1, 2] and d == pytest.approx([0.1, 0.1]) and only_a == [0] and only_b == [10]


def test_seeds_auto_keeps_both_error_rates():
    """Internal pilot: a pilot's pooled sd sets n, then one decision over all seeds."""
    rng = np.random.default_rng(6)
    reps, k, pilot, cap = 400, 3, V.min_pairs(3), 40

    def run(mu: np.ndarray) -> list[list[str]]:  # mu: (reps, k) true differences
        first = rng.normal(mu[..., None], SD, (reps, k, pilot))
        ns = [V.plan_seeds(V.pooled_sd(f.std(axis=1, ddof=1), [pilot] * k), M, k, pilot, cap) for f in first]
        out: list[list[str]] = [[] for _ in range(reps)]
        for n in set(ns):  # one vectorised call per planned seed count
            idx = [r for r in range(reps) if ns[r] == n]
            rest = rng.normal(mu[idx][..., None], SD, (len(idx), k, n - pilot))
            fams = _family(np.concatenate([first[idx], rest], axis=-1))
            for r, fam in zip(idx, fams, strict=True):
                out[r] = fam
        return out

    null = run(np.zeros((reps, k)))
    edge = run(M * rng.choice([-1, 1], (reps, k)))
    assert np.mean([any(v in (V.BETTER, V.WORSE) for v in fam) for fam in null]) <= _mc_bound(V.ALPHA, reps)
    assert np.mean([V.EQUIVALENT in fam for fam in edge]) <= _mc_bound(V.ALPHA, reps)
    assert np.mean([fam.count(V.EQUIVALENT) for fam in null]) / k > 0.5  # and it decides


def test_seeds_needed_grows_with_noise_and_family():
    assert V.seeds_needed(0.001, M, 1) < V.seeds_needed(0.002, M, 1) < V.seeds_needed(0.002, M, 10)
    assert V.seeds_needed(math.nan, M, 3) > V.MAX_SEEDS_PLANNED
    assert V.plan_seeds(0.0001, M, 3, pilot=9, max_seeds=30) == 9
    assert V.plan_seeds(0.01, M, 3, pilot=9, max_seeds=30) == 30


def test_seeds_needed_prints_no_solver_warning():
    """A root finder that fails (a large effect: fewer than 2 pairs would do) is handled, not printed;
    in a fresh interpreter, where statsmodels' import puts its own "always" warning filters first."""
    import subprocess
    import sys

    code = "from actcompare.report.verdicts import seeds_needed; print(seeds_needed(0.01, 0.3, 1))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert int(res.stdout) == V.min_pairs(1)
