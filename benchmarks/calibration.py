"""Are the report's verdicts calibrated? Error rates of report/verdicts.py by Monte-Carlo on synthetic
paired differences, beside two deliberately broken rules that the check must catch.

    python benchmarks/calibration.py                 # the table: 2000 families per cell, ~1 min on 2 cores
    python benchmarks/calibration.py --reps 4000 --sd 0.31

Per cell (n seeds, k comparisons in one Holm family) paired differences are drawn N(true, sd) and
judged by each rule on the same draws:

- false better/worse: nothing differs (true 0 everywhere); the share of families with any
  better/worse (family-wise);
- false within margin: every true difference is exactly +/-margin; the share of families with any
  claim that a difference lies within the margin (equivalent, or better/worse "within margin");
- each must stay below alpha + 2 Monte-Carlo standard errors, alpha + 2 sqrt(alpha (1 - alpha) / reps).

The rules: the report's (V.decide_many: Holm over 2k tests at alpha), "no Holm" (each test at
alpha) and "1.5 alpha" (Holm at 1.5 x alpha). A check that passes the broken rules is too weak to
vouch for the real one. Power: a true difference of -0.6 points at 16 seeds must be called worse.
tests/test_verdicts.py runs the same check (fewer cells in the fast suite, the full grid under -m slow).
Figures in points; sd default 0.19 points, the sd of paired differences the reference sweeps measured.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from actcompare.report import verdicts as V

SD = 0.0019  # sd of paired differences (fraction): 0.19 points, measured on the reference sweeps
MARGIN = V.DEFAULT_MARGIN
SEEDS = (3, 5, 10, 20)
KS = (1, 4, 13)
REPS = 2000
POWER_DIFF, POWER_SEEDS = -0.006, 16  # a true difference of -0.6 points at 16 seeds: found worse

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def report_rule(diff: np.ndarray, p_diff: np.ndarray, p_equiv: np.ndarray) -> Mapping[str, np.ndarray]:
    """The report's rule: Holm over the 2k tests of each family at alpha."""
    return V.decide_many(diff, p_diff, p_equiv, V.ALPHA)


def no_holm_rule(diff: np.ndarray, p_diff: np.ndarray, p_equiv: np.ndarray) -> Mapping[str, np.ndarray]:
    """Broken on purpose: every test at alpha, no multiplicity correction."""
    reject_diff, reject_equiv = p_diff < V.ALPHA, p_equiv < V.ALPHA
    level = np.full(np.shape(p_diff), V.ALPHA)
    return {
        "verdict": V.verdicts_of(diff, reject_diff, reject_equiv),
        "reject_diff": reject_diff,
        "reject_equiv": reject_equiv,
        "level_diff": level,
        "level_equiv": level,
    }


def inflated_rule(diff: np.ndarray, p_diff: np.ndarray, p_equiv: np.ndarray) -> Mapping[str, np.ndarray]:
    """Broken on purpose: Holm at 1.5 x alpha (an error rate up to 1.5 x what the report promises)."""
    return V.decide_many(diff, p_diff, p_equiv, 1.5 * V.ALPHA)


RULES: dict[str, Rule] = {"report": report_rule, "no Holm": no_holm_rule, "1.5 alpha": inflated_rule}
BROKEN = ("no Holm", "1.5 alpha")


def bound(reps: int, alpha: float = V.ALPHA) -> float:
    """alpha + 2 Monte-Carlo standard errors of a rate measured over ``reps`` families."""
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / reps)


@functools.cache
def draws(n: int, k: int, reps: int, sd: float = SD, margin: float = MARGIN, seed: int = 0) -> dict[str, dict]:
    """paired_tests of (reps, k, n) differences: "null" (true 0) and "edge" (true +/-margin, the sign
    drawn per comparison). Fixed seeds per cell, shared by every rule (cached: read, never change)."""
    rng = np.random.default_rng([seed, n, k, reps])
    null = rng.normal(0.0, sd, (reps, k, n))
    edge = rng.normal(margin, sd, (reps, k, n)) * rng.choice([-1.0, 1.0], (reps, k, 1))
    return {"null": V.paired_tests(null, margin), "edge": V.paired_tests(edge, margin)}


def judged(rule: Rule, t: Mapping[str, np.ndarray], margin: float = MARGIN) -> dict[str, np.ndarray]:
    """A rule's verdicts of paired_tests ``t``, with within_margin (V.decision_intervals)."""
    decided = dict(rule(t["diff"], t["p_diff"], t["p_equiv"]))
    decided.update(V.decision_intervals(t["diff"], t["sd"], t["n"], margin, decided))
    return decided


def error_rates(rule: Rule, tests: Mapping[str, dict], margin: float = MARGIN) -> dict[str, float]:
    """Family-wise false better/worse (null) and false within-margin claims (edge) of ``rule``."""
    null, edge = judged(rule, tests["null"], margin), judged(rule, tests["edge"], margin)
    false_diff = np.isin(null["verdict"], [V.BETTER, V.WORSE]).any(axis=-1)
    false_equiv = ((edge["verdict"] == V.EQUIVALENT) | edge["within_margin"]).any(axis=-1)
    return {"false_diff": float(false_diff.mean()), "false_equiv": float(false_equiv.mean())}


def table(
    rules: Mapping[str, Rule] = RULES,
    cells: Iterable[tuple[int, int]] = tuple((n, k) for n in SEEDS for k in KS),
    reps: int = REPS,
    sd: float = SD,
    margin: float = MARGIN,
) -> list[dict]:
    """One row per cell and rule: n, k, rule, false_diff, false_equiv, bound, ok (both below it)."""
    rows = []
    for n, k in cells:
        tests = draws(n, k, reps, sd, margin)
        for name, rule in rules.items():
            rates = error_rates(rule, tests, margin)
            ok = rates["false_diff"] <= bound(reps) and rates["false_equiv"] <= bound(reps)
            rows.append({"n": n, "k": k, "rule": name, **rates, "bound": bound(reps), "ok": ok})
    return rows


def flagged(rule: Rule, cells: Iterable[tuple[int, int]], reps: int = REPS, **kw) -> list[str]:
    """The cells where ``rule`` exceeds the bound (empty: the check passes it), one line each."""
    return [
        f"n={r['n']} k={r['k']}: false better/worse {r['false_diff']:.4f}, false within margin "
        f"{r['false_equiv']:.4f}, bound {r['bound']:.4f}"
        for r in table({"rule": rule}, cells, reps, **kw)
        if not r["ok"]
    ]


def power(rule: Rule = report_rule, k: int = 13, reps: int = 500, sd: float = SD, margin: float = MARGIN) -> float:
    """Share of comparisons with a true difference of POWER_DIFF at POWER_SEEDS seeds called worse."""
    rng = np.random.default_rng([1, k, reps])
    t = V.paired_tests(rng.normal(POWER_DIFF, sd, (reps, k, POWER_SEEDS)), margin)
    return float((judged(rule, t, margin)["verdict"] == V.WORSE).mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=REPS, help=f"families per cell (default {REPS})")
    p.add_argument("--sd", type=float, default=100 * SD, help="sd of paired differences, points (default 0.19)")
    p.add_argument("--margin", type=float, default=100 * MARGIN, help="points (default: the report's 0.3)")
    args = p.parse_args(argv)
    sd, margin, reps = args.sd / 100, args.margin / 100, args.reps
    print(
        f"sd of paired differences {args.sd:g} points, margin ±{args.margin:g} points, alpha {V.ALPHA} family-wise, "
        f"{reps} families per cell; bound alpha + 2 MC s.e. = {bound(reps):.4f}; min pairs k=1/4/13: "
        f"{V.min_pairs(1)}/{V.min_pairs(4)}/{V.min_pairs(13)}"
    )
    print("false better/worse: nothing differs, any better/worse in the family; false within margin: every")
    print("true |diff| = margin, any equivalent or better/worse (within margin). Rates; FAIL = above the bound.\n")
    rows = table(RULES, reps=reps, sd=sd, margin=margin)
    head = f"{'n':>3} {'k':>3}  " + "  ".join(f"{name + ': false b/w, within':>28}" for name in RULES)
    print(head)
    for i in range(0, len(rows), len(RULES)):
        cell = rows[i : i + len(RULES)]
        parts = [
            f"{r['false_diff']:>12.4f}{'*' if r['false_diff'] > r['bound'] else ' '} "
            f"{r['false_equiv']:>12.4f}{'*' if r['false_equiv'] > r['bound'] else ' '}"
            for r in cell
        ]
        print(f"{cell[0]['n']:>3} {cell[0]['k']:>3}  " + "  ".join(parts))
    for name in RULES:
        bad = sum(not r["ok"] for r in rows if r["rule"] == name)
        print(f"{name}: {'FAIL' if bad else 'ok'} ({bad} of {len(rows) // len(RULES)} cells above the bound)")
    for k in KS:
        print(
            f"power: true diff {100 * POWER_DIFF:+.1f} points, {POWER_SEEDS} seeds, k={k}: "
            f"{power(report_rule, k, sd=sd, margin=margin):.3f} of comparisons called worse"
        )


if __name__ == "__main__":
    main()
