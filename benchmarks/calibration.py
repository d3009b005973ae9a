"""Are the report's verdicts calibrated? Error rates, power and CI coverage of report/verdicts.py by
Monte-Carlo on synthetic paired differences, at the noise the reference sweeps measured.

    python benchmarks/calibration.py                 # ~1 min on 2 cores; --reps 4000 for tighter figures
    python benchmarks/calibration.py --sd 0.31 --k 13

Paired differences per seed are drawn N(true difference, sd) for k comparisons (one Holm family),
exactly what the report tests; each figure is printed beside what it must be. The tests
(tests/test_verdicts.py) assert the same properties with fewer repetitions. Figures are in points.
"""

from __future__ import annotations

import argparse
import gc
import math

import numpy as np

from actcompare.report import verdicts as V


def families(d: np.ndarray) -> list[list[str]]:
    """The verdicts of each family in d (reps, k, n) of paired differences (fractions)."""
    t = V.paired_tests(d, MARGIN)
    return [V.decide(t["diff"][r], t["p_diff"][r], t["p_equiv"][r])[0] for r in range(d.shape[0])]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=1000, help="families per figure (default 1000)")
    p.add_argument("--sd", type=float, default=0.19, help="sd of paired differences, points (default 0.19: tutorial)")
    p.add_argument("--margin", type=float, default=100 * V.DEFAULT_MARGIN, help="points (default: the report's)")
    p.add_argument("--k", type=int, default=3, help="comparisons in the family (default 3: 4 activations)")
    args = p.parse_args(argv)
    global MARGIN
    MARGIN, sd, k, reps = args.margin / 100, args.sd / 100, args.k, args.reps
    gc.collect = lambda *a, **kw: 0  # statsmodels' multipletests collects garbage on every call
    rng = np.random.default_rng(0)
    mc = 3 * math.sqrt(V.ALPHA * (1 - V.ALPHA) / reps)  # 3 Monte-Carlo standard errors at alpha
    n = V.seeds_needed(sd, MARGIN, k)
    pilot = V.min_pairs(k)
    rows = []

    d = rng.normal(0.001, sd, (reps * 4, 6))
    t = V.paired_tests(d, MARGIN)
    cover = np.mean((t["ci_low"] <= 0.001) & (t["ci_high"] >= 0.001))
    rows.append(("95 % CI coverage (6 pairs)", f"{100 * cover:.1f} %", "93-97 %", 0.93 <= cover <= 0.97))
    for label, mu, seeds in (("nothing differs", 0.0, pilot), ("nothing differs", 0.0, n)):
        fams = families(rng.normal(mu, sd, (reps, k, seeds)))
        false = np.mean([any(v in (V.BETTER, V.WORSE) for v in f) for f in fams])
        rows.append(
            (
                f"false better/worse, {label}, {seeds} seeds",
                f"{100 * false:.1f} %",
                f"<= {100 * (V.ALPHA + mc):.1f} %",
                false <= V.ALPHA + mc,
            )
        )
    for seeds in (pilot, n):
        d = rng.normal(MARGIN, sd, (reps, k, seeds)) * rng.choice([-1, 1], (reps, k, 1))
        false = np.mean([V.EQUIVALENT in f for f in families(d)])
        rows.append(
            (
                f"false equivalent, true |diff| = m, {seeds} seeds",
                f"{100 * false:.1f} %",
                f"<= {100 * (V.ALPHA + mc):.1f} %",
                false <= V.ALPHA + mc,
            )
        )
    found = np.mean([f.count(V.BETTER) / k for f in families(rng.normal(MARGIN, sd, (reps, k, n)))])
    rows.append(
        (
            f"power: true diff = m called better, {n} seeds (planned)",
            f"{100 * found:.1f} %",
            ">= 80 %",
            found >= 0.8 - 3 * math.sqrt(0.16 / reps / k),
        )
    )
    same = np.mean([f.count(V.EQUIVALENT) / k for f in families(rng.normal(0.0, sd, (reps, k, n)))])
    rows.append(
        (
            f"power: true diff = 0 called equivalent, {n} seeds",
            f"{100 * same:.1f} %",
            ">= 80 %",
            same >= 0.8 - 3 * math.sqrt(0.16 / reps / k),
        )
    )
    tie = V.paired_tests(np.full((1, 3), 14 / 10_000), MARGIN)
    rows.append(
        (
            "3 seeds all +14 images: p",
            f"{tie['p_diff'][0]:.2f}",
            "0.25 (2 ** (1 - n))",
            abs(tie["p_diff"][0] - 0.25) < 1e-9,
        )
    )

    print(
        f"sd of paired differences {args.sd} points, margin ±{args.margin} points, k = {k} comparisons, "
        f"alpha {V.ALPHA} family-wise, {reps} families per figure; min pairs {pilot}, planned seeds {n}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, expect, ok in rows:
        print(f"{name:<{width}}  {value:>8}  expect {expect:<20} {'ok' if ok else 'FAIL'}")


MARGIN = V.DEFAULT_MARGIN

if __name__ == "__main__":
    main()
