"""Verdicts: better, worse, equivalent or undecided, and the seeds that would settle a comparison.

Pure functions over arrays (no files, no plotting): the decision rule lives apart from the
statistics table so that tests/test_verdicts.py can check its error rates by simulation.

The design, for a family of k comparisons, each a group against its baseline:

- **Paired on shared seeds only.** Runs that share a seed share their initial weights and batch
  order, so the per-seed difference ``d_s = acc(group, s) - acc(baseline, s)`` removes most of the
  noise. A comparison uses exactly the seeds both sides completed; other seeds are listed as
  dropped, never compared with a mean.
- **Two tests per comparison**: a two-sided difference test (H0: mean d = 0) and an equivalence
  test, TOST (H0: |mean d| >= m, for the declared margin m). Each p is the larger of the paired
  t-test's p and the exact sign-flip permutation test's p (``scipy.stats.permutation_test``): the
  t-test is the efficient one when the differences are roughly normal, and the sign-flip test is
  exact whatever their shape, so the larger p is valid when either holds. It also means no p is
  ever smaller than the pairs can show: n pairs give at best 2**(1-n) two-sided (2**-n one-sided),
  which is what rules out the "p = 1e-14 from two tied seeds" of a bare t-test on whole-image ties.
- **One Holm family of 2k tests** (:func:`holm`, vectorised over families; its adjusted p's are
  statsmodels' ``multipletests``): every difference test and every TOST of the report together, so
  the chance of any false claim, of either kind, is at most alpha.
- better/worse when the difference test rejects (the sign of the mean difference); equivalent when
  TOST rejects; otherwise undecided, with the seeds that would settle it.
- **The interval printed is the one decided on** (:func:`decision_intervals`): at the level Holm
  gave the test (better/worse: the (1 - level) interval, excluding 0; equivalent: TOST's
  (1 - 2 level) interval, inside the margin), not the unadjusted 95 % CI; "within margin" marks a
  better/worse whose TOST rejected too and whose interval lies inside the margin.
- **Seeds to settle it** come from the sd of paired differences pooled over the comparisons (not
  each comparison's own 1-3 degrees of freedom) and never from the observed effect: at the Holm
  worst-case level alpha / 2k, 80 % power to call a true difference of m, and 80 % power to call a
  true difference of 0 equivalent (statsmodels ``TTestPower``), and at least ``min_pairs``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..order import natural_key

ALPHA = 0.05  # family-wise error rate over every claim of one report
POWER = 0.80  # for the seeds needed
DEFAULT_MARGIN = 0.003  # accuracy fraction (0.3 points): docs/method.md "The margin" says why
EXACT_MAX = 10  # up to this many pairs the sign-flip test enumerates all 2**n sign patterns (1024)
NO_SPREAD = 1e-9  # sd of paired differences below this (fractions; one test image is 1e-4) is a tie
MAX_SEEDS_PLANNED = 1000  # seeds_needed says "more than this" instead of a number
BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
VERDICTS = (BETTER, WORSE, EQUIVALENT, UNDECIDED)


def paired_diffs(a: Mapping[Any, float], b: Mapping[Any, float]) -> tuple[list, np.ndarray, list, list]:
    """Per-seed differences a - b on the seeds both have: (seeds, d, only_in_a, only_in_b)."""
    shared = sorted(set(a) & set(b), key=natural_key)
    d = np.array([float(a[s]) - float(b[s]) for s in shared], dtype=float)
    return shared, d, sorted(set(a) - set(b), key=natural_key), sorted(set(b) - set(a), key=natural_key)


def signflip_p(d: np.ndarray, alternative: str = "two-sided") -> np.ndarray:
    """Exact sign-flip permutation p of the mean of ``d`` (shape (..., n); along the last axis).

    Exact up to EXACT_MAX pairs: the 2**n sign patterns are enumerated, with the p's of
    ``scipy.stats.permutation_test(permutation_type="samples", n_resamples=inf)`` (tests/
    test_verdicts.py checks they agree), computed here as one matrix product per block of rows so
    that Monte-Carlo families of thousands of rows stay fast and small. Means equal in exact
    arithmetic count as ties (the p's of exact integer arithmetic on whole-image differences, also
    checked), where scipy's tolerance, relative to the observed mean only, has none at 0. Beyond
    EXACT_MAX the floor 2**(1-n) (two-sided) or 2**-n (one-sided) is all the sign-flip test adds to
    the t-test, so that is returned instead of a randomised p.
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n > EXACT_MAX:
        return np.full(d.shape[:-1], 2.0 ** (1 - n) if alternative == "two-sided" else 2.0**-n)
    signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # (2**n, n), all +1 first
    rows = d.reshape(-1, n)
    less = np.empty(len(rows))
    greater = np.empty(len(rows))
    block = max(1, 2**22 // 2**n)  # rows per product: at most 4M null means (32 MB) at a time
    for i in range(0, len(rows), block):
        x = rows[i : i + block]
        null = x @ signs.T / n  # (rows, 2**n); column 0 is the observed mean
        observed = null[:, :1]
        # Means equal in exact arithmetic may differ in the last bits: scipy's relative tolerance,
        # relative to the mean |d| too (with scipy's alone, an observed mean of 0 had none).
        scale = np.maximum(np.abs(observed), np.abs(x).mean(axis=1, keepdims=True))
        gamma = np.finfo(float).eps * 100 * scale
        less[i : i + block] = np.count_nonzero(null <= observed + gamma, axis=1) / 2**n
        greater[i : i + block] = np.count_nonzero(null >= observed - gamma, axis=1) / 2**n
    p = {"less": less, "greater": greater, "two-sided": 2 * np.minimum(less, greater)}[alternative]
    return np.minimum(p, 1.0).reshape(d.shape[:-1])


def _t_p(d: np.ndarray, popmean: float, alternative: str, spread: np.ndarray) -> np.ndarray:
    """The one-sample t p of ``d`` against ``popmean``; 0 where there is no spread (the sign-flip
    p, taken as the maximum with this, then decides alone)."""
    # Near-ties make scipy warn of precision loss: those p's are replaced or floored by the exact test.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_1samp(d, popmean, axis=-1, alternative=alternative).pvalue
    return np.where(spread, np.nan_to_num(np.asarray(p, dtype=float), nan=1.0), 0.0)


def t_half_width(sd: Any, n: Any, level: float | np.ndarray = 0.95) -> np.ndarray:
    """Half-width of the two-sided Student t interval of a mean at confidence ``level``:
    t(0.5 + level / 2, n - 1) * sd / sqrt(n), elementwise over arrays; NaN below 2 values. The one
    t interval of the report: verdicts, group CIs and the figures' bands all use it."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + np.asarray(level, dtype=float) / 2, n - 1) * np.asarray(sd, dtype=float) / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def paired_tests(d: np.ndarray, margin: float, level: float = 0.95) -> dict[str, np.ndarray]:
    """The statistics of paired differences ``d`` (shape (..., n), n >= 2 along the last axis).

    Returns arrays over the leading axes: n, diff (mean), sd, ci_low/ci_high (the paired t
    interval at ``level``, unadjusted; NaN where the differences have no spread, since no interval
    can be estimated from identical values), p_diff (two-sided, H0: mean 0), p_equiv (TOST,
    H0: |mean| >= margin; the larger of its two one-sided p's). Paired t-tests are
    ``scipy.stats.ttest_1samp`` on the differences, which is ``ttest_rel`` (and, for TOST,
    statsmodels' ``ttost_paired``: tests/test_verdicts.py checks both).
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        raise ValueError("paired tests need at least 2 pairs")
    diff = d.mean(axis=-1)
    sd = d.std(axis=-1, ddof=1)
    spread = sd > NO_SPREAD
    half = t_half_width(sd, n, level)
    ci_low = np.where(spread, diff - half, np.nan)
    ci_high = np.where(spread, diff + half, np.nan)
    zero = np.all(d == 0, axis=-1)
    p_diff = np.maximum(_t_p(d, 0.0, "two-sided", spread), signflip_p(d, "two-sided"))
    p_diff = np.where(zero, 1.0, p_diff)
    p_low = np.maximum(_t_p(d, -margin, "greater", spread), signflip_p(d + margin, "greater"))
    p_high = np.maximum(_t_p(d, margin, "less", spread), signflip_p(d - margin, "less"))
    return {
        "n": np.full(diff.shape, n),
        "diff": diff,
        "sd": sd,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_diff": p_diff,
        "p_equiv": np.maximum(p_low, p_high),
    }


def min_pairs(k: int, alpha: float = ALPHA) -> int:
    """The fewest pairs with which any verdict is possible in a family of ``k`` comparisons.

    Holm's first threshold over the 2k tests is alpha / 2k; the sign-flip test cannot go below
    2**(1-n) for a difference (2**-n for each one-sided half of TOST). So a difference needs
    2**(1-n) <= alpha / 2k: with fewer pairs even a difference of the same sign on every seed
    cannot be told from chance, and the verdict is undecided.
    """
    return max(2, math.ceil(1 + math.log2(2 * max(k, 1) / alpha)))


def holm(p: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down over the last axis of ``p`` (shape (..., m): one family per row), vectorised.

    Returns (adjusted p, decision level), each shaped like ``p``. The adjusted p's are statsmodels'
    ``multipletests(method="holm")`` (tests/test_verdicts.py checks it on random families); a test
    is rejected when its adjusted p < alpha. NaN p's do not count in the family (m is the number of
    the others) and get NaN. The decision level of a test is the threshold Holm compared it with:
    for a rejected test at sorted rank r, alpha / (m - r + 1) (tied p's share the lowest rank's, the
    stricter); for a test not rejected, the threshold of the step where Holm stopped,
    alpha / (m - s) after s rejections. So a test is rejected exactly when its p < its level.
    """
    p = np.asarray(p, dtype=float)
    nan = np.isnan(p)
    m = np.sum(~nan, axis=-1, keepdims=True)
    order = np.argsort(np.where(nan, np.inf, p), axis=-1, kind="stable")  # NaN last
    ps = np.take_along_axis(p, order, axis=-1)
    rank = np.arange(1, p.shape[-1] + 1)
    mult = m - rank + 1  # Holm's multiplier at each sorted rank (<= 0 only on NaN's)
    valid = rank <= m
    adj_s = np.minimum(np.maximum.accumulate(np.where(valid, ps * mult, -np.inf), axis=-1), 1.0)
    rejected = valid & (adj_s < alpha)
    new = np.concatenate([np.ones_like(ps[..., :1], dtype=bool), ps[..., 1:] != ps[..., :-1]], axis=-1)
    first = np.maximum.accumulate(np.where(new, rank, 0), axis=-1)  # lowest rank among tied p's
    stop = np.sum(rejected, axis=-1, keepdims=True)  # Holm stopped at rank stop + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        level_s = np.where(rejected, alpha / (m - first + 1), alpha / (m - stop))
    adj = np.full_like(p, np.nan)
    level = np.full_like(p, np.nan)
    np.put_along_axis(adj, order, np.where(valid, adj_s, np.nan), axis=-1)
    np.put_along_axis(level, order, np.where(valid, level_s, np.nan), axis=-1)
    return adj, level


def verdicts_of(diff: np.ndarray, reject_diff: np.ndarray, reject_equiv: np.ndarray) -> np.ndarray:
    """better/worse where the difference test rejects (by the sign of the mean difference), else
    equivalent where TOST rejects, else undecided: an array of those strings."""
    return np.where(
        reject_diff, np.where(np.asarray(diff) > 0, BETTER, WORSE), np.where(reject_equiv, EQUIVALENT, UNDECIDED)
    )


def decide_many(
    diff: np.ndarray, p_diff: np.ndarray, p_equiv: np.ndarray, alpha: float = ALPHA
) -> dict[str, np.ndarray]:
    """Verdicts of many families at once: arrays of shape (..., k), one family per row, Holm over
    the row's k difference tests and k TOSTs together (NaN p's left out of the family).

    Returns verdict, adj_diff, adj_equiv (Holm-adjusted p's), reject_diff, reject_equiv and
    level_diff, level_equiv (each test's Holm decision level: :func:`holm`).
    """
    diff, pd_, pe = (np.asarray(x, dtype=float) for x in (diff, p_diff, p_equiv))
    k = pd_.shape[-1]
    adj, level = holm(np.concatenate([pd_, pe], axis=-1), alpha)
    adj_diff, adj_equiv = adj[..., :k], adj[..., k:]
    reject_diff, reject_equiv = adj_diff < alpha, adj_equiv < alpha  # NaN: False
    return {
        "verdict": verdicts_of(diff, reject_diff, reject_equiv),
        "adj_diff": adj_diff,
        "adj_equiv": adj_equiv,
        "reject_diff": reject_diff,
        "reject_equiv": reject_equiv,
        "level_diff": level[..., :k],
        "level_equiv": level[..., k:],
    }


def decide(
    diff: Sequence[float], p_diff: Sequence[float], p_equiv: Sequence[float], alpha: float = ALPHA
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Verdicts of one family: Holm over every difference test and every TOST together.

    NaN p's (a comparison without two pairs) do not count in the family and give ``undecided``.
    Returns (verdicts, Holm-adjusted p_diff, Holm-adjusted p_equiv); :func:`decide_many` gives more.
    """
    out = decide_many(diff, p_diff, p_equiv, alpha)
    return [str(v) for v in out["verdict"]], out["adj_diff"], out["adj_equiv"]


def decision_intervals(
    diff: np.ndarray, sd: np.ndarray, n: np.ndarray, margin: float, decided: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The interval each verdict was decided on, at the level Holm gave its test (``decided`` is
    :func:`decide_many`'s output; diff, sd, n those of :func:`paired_tests`, shaped alike).

    - better / worse: the two-sided (1 - level) paired t interval of the difference test, level its
      Holm decision level. It excludes 0 (the test's p, the larger of the t p and the sign-flip p,
      is below the level, so the t p is too).
    - equivalent: the (1 - 2 level) interval of TOST at its level: it lies inside (-margin, margin).
    - undecided: the two-sided (1 - level) interval at the level where Holm stopped (both tests of an
      undecided comparison were compared with that one threshold). It is the interval of the
      difference test that was not passed, so it includes 0, and it holds the (1 - 2 level) TOST
      interval, so it reaches past the margin: the reader sees both reasons at once. (Only the
      sign-flip part of a p can make either fail to show: then fewer pairs than it takes.)
    - NaN where there is no test (fewer than 2 pairs) or no spread (every pair the same difference:
      no t interval exists; the verdict, if any, rests on the sign-flip test alone).

    Returns decision_low, decision_high, decision_level (the interval's confidence, e.g. 0.90) and
    within_margin: the difference test rejects (better/worse), TOST rejects too and the decision
    interval lies inside (-margin, margin) (where there is no interval, TOST's rejection alone), so
    that "better (within margin)" is a claim of the Holm family, never of an interval alone.
    """
    diff, sd, n = (np.asarray(x, dtype=float) for x in (diff, sd, n))
    verdict = np.asarray(decided["verdict"])
    level_diff, level_equiv = (np.asarray(decided[k], dtype=float) for k in ("level_diff", "level_equiv"))
    equiv = verdict == EQUIVALENT
    level = np.where(equiv, level_equiv, level_diff)
    confidence = np.where(equiv, 1 - 2 * level_equiv, 1 - level_diff)
    ok = np.isfinite(level) & (n >= 2) & (sd > NO_SPREAD)
    half = t_half_width(sd, n, confidence)
    low = np.where(ok, diff - half, np.nan)
    high = np.where(ok, diff + half, np.nan)
    inside = np.where(ok, (low > -margin) & (high < margin), True)
    within = np.asarray(decided["reject_diff"]) & np.asarray(decided["reject_equiv"]) & inside
    return {
        "decision_low": low,
        "decision_high": high,
        "decision_level": np.where(np.isfinite(level), confidence, np.nan),
        "within_margin": within,
    }


def pooled_sd(sds: Sequence[float], ns: Sequence[int]) -> float:
    """The sd of paired differences pooled over comparisons: sqrt(sum (n_i-1) s_i^2 / sum (n_i-1))."""
    s, n = np.asarray(sds, dtype=float), np.asarray(ns, dtype=float)
    ok = np.isfinite(s) & (n >= 2)
    dof = (n[ok] - 1).sum()
    return float(math.sqrt(((n[ok] - 1) * s[ok] ** 2).sum() / dof)) if dof > 0 else math.nan


def seeds_needed(sd: float, margin: float, k: int, alpha: float = ALPHA, power: float = POWER) -> int:
    """Seeds (pairs) for every comparison of a family of ``k`` to end better/worse/equivalent.

    At the Holm worst case alpha / 2k, with ``power`` to find a true difference of ``margin``
    (two-sided paired t) and with ``power`` to call a true difference of 0 equivalent (TOST: each
    one-sided half at 1 - (1 - power) / 2, the usual approximation); never below ``min_pairs``.
    MAX_SEEDS_PLANNED + 1 when more than MAX_SEEDS_PLANNED would be needed or sd is unknown/0 margin.
    """
    # Imported before the filter below: on import it puts "always" filters for its warnings first in
    # the list, which would override an "ignore" set before (a root-finder warning got printed).
    import statsmodels.tools.sm_exceptions  # noqa: F401
    from statsmodels.stats.power import TTestPower

    floor = min_pairs(k, alpha)
    if not (math.isfinite(sd) and margin > 0):
        return MAX_SEEDS_PLANNED + 1
    if sd <= NO_SPREAD:
        return floor
    level = alpha / (2 * max(k, 1))
    effect = margin / sd
    power_calc = TTestPower()
    with warnings.catch_warnings():  # a failed root finder is handled below, not printed
        warnings.simplefilter("ignore")
        n_diff = power_calc.solve_power(
            effect_size=effect, nobs=None, alpha=level, power=power, alternative="two-sided"
        )
        n_equiv = power_calc.solve_power(
            effect_size=effect, nobs=None, alpha=level, power=1 - (1 - power) / 2, alternative="larger"
        )
    if not (math.isfinite(float(n_diff)) and math.isfinite(float(n_equiv))):
        # the root finder fails below 2 pairs (a large effect) or far above (a tiny one)
        return floor if effect >= 1 else MAX_SEEDS_PLANNED + 1
    n = max(floor, math.ceil(float(n_diff)), math.ceil(float(n_equiv)))
    return n if n <= MAX_SEEDS_PLANNED else MAX_SEEDS_PLANNED + 1


def plan_seeds(
    pilot_sd: float, margin: float, k: int, pilot: int, max_seeds: int, alpha: float = ALPHA, power: float = POWER
) -> int:
    """seeds=auto: how many seeds in all after a pilot of ``pilot`` seeds (internal pilot).

    Only the pilot's pooled sd of paired differences enters, never its mean differences, so the
    final test over all seeds keeps its type I error at alpha (Wittes & Brittain 1990; the
    re-estimated n depends on the data only through a variance estimate, which is nearly
    independent of the mean). Never fewer seeds than the pilot, never more than ``max_seeds``.
    """
    return int(min(max(seeds_needed(pilot_sd, margin, k, alpha, power), pilot), max_seeds))
