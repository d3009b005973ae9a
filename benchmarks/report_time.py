"""How long does build_report take for a 4-run, a 12-run and a 40-run sweep?

    python benchmarks/report_time.py                          # 3 rounds, ~1-2 min on 2 cores
    python benchmarks/report_time.py --rounds 5 --pdf         # with the PDF copies (report.pdf=true)
    python benchmarks/report_time.py --vs-src /tmp/old/src    # against another source tree, A B A B

The cases are the reference sweeps on disk (nothing is trained): ``4runs`` = the seed-0 runs of
outputs/reference/default, ``12runs`` = outputs/reference/default (4 activations x 3 seeds),
``40runs`` = the seed 0-9 runs of outputs/reference/tutorial (4 x 10 seeds). Each report is built
by a fresh interpreter, as ``actcompare-report`` does: ``wall`` is the child's start to exit (imports
included), ``build`` the build_report call alone. The rounds go case by case in turn (and, with --vs-src, A B A B: the
ratio B / A is taken round by round); medians are kept. The activation-shape cache is cleared
before every build unless --warm-cache (a sweep after the first with the same activations hits it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from _timing import OUT_DIR, REPO, Results, run_child, scratch

REFERENCE = REPO / "outputs" / "reference"
# The child: build one report, print the seconds of the imports and of build_report.
CHILD = """
import sys, time
t0 = time.perf_counter()
import inspect
from actcompare.report import build_report
t1 = time.perf_counter()
kw = {"pdf": sys.argv[2] == "1"} if "pdf" in inspect.signature(build_report).parameters else {}  # older trees
build_report(sys.argv[3:], sys.argv[1], warn=lambda m: None, **kw)
t2 = time.perf_counter()
print(f"IMPORT {t1 - t0:.4f} BUILD {t2 - t1:.4f}")
"""


def cases() -> dict[str, list[Path]]:
    default, tutorial = REFERENCE / "default", REFERENCE / "tutorial"
    return {
        "4runs": sorted(p for p in default.iterdir() if p.name.endswith(",seed=0") and (p / "run.json").is_file()),
        "12runs": [default],
        "40runs": sorted(
            p for p in tutorial.iterdir() if (p / "run.json").is_file() and int(p.name.split("=")[-1]) < 10
        ),
    }


def build_once(src: Path | None, inputs: list[Path], out: Path, pdf: bool, cache: Path | None) -> tuple[float, ...]:
    """(wall, import, build) seconds of one report built by a fresh interpreter."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    if cache is not None:
        env["ACTCOMPARE_CACHE_DIR"] = str(cache)
    log = out.with_suffix(".log")
    use = run_child([sys.executable, "-c", CHILD, str(out), "1" if pdf else "0", *map(str, inputs)], log, env)
    line = next((s for s in log.read_text().splitlines() if s.startswith("IMPORT ")), "")
    parts = line.split()
    imp, build = (float(parts[1]), float(parts[3])) if len(parts) == 4 else (float("nan"),) * 2
    return use.wall, imp, build


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="builds of each case (default 3)")
    p.add_argument("--pdf", action="store_true", help="write the PDF copies too (report.pdf=true)")
    p.add_argument("--warm-cache", action="store_true", help="keep the activation-shape cache between builds")
    p.add_argument("--only", choices=("4runs", "12runs", "40runs"), action="append", help="a case (repeatable)")
    p.add_argument("--vs-src", type=Path, help="a source tree (its src/ folder) to time as B, in turn with this one")
    p.add_argument("--keep", action="store_true", help="keep the reports (their folder is printed)")
    p.add_argument("--out", type=Path, help="CSV of the figures (default outputs/benchmark/report_time.csv)")
    args = p.parse_args(argv)
    todo = {k: v for k, v in cases().items() if not args.only or k in args.only}
    if not all(todo.values()) or not all(p.exists() for v in todo.values() for p in v):
        sys.exit(f"error: the reference sweeps are missing under {REFERENCE}")
    sides = {"A": None, **({"B": args.vs_src.resolve()} if args.vs_src else {})}
    cmd = "python benchmarks/report_time.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"== report_time: {os.cpu_count()} cores; A = this tree" + (f", B = {sides.get('B')}" if "B" in sides else "")
    )
    res = Results()
    walls: dict[tuple[str, str], list[tuple[float, ...]]] = {(c, s): [] for c in todo for s in sides}
    with scratch("report_time", args.keep) as tmp:
        for r in range(args.rounds):
            for case, inputs in todo.items():
                for side in sides if r % 2 == 0 else list(sides)[::-1]:
                    out = tmp / f"{case}_{side}_{r}"
                    cache = None if args.warm_cache else tmp / f"cache_{case}_{side}_{r}"
                    t = build_once(sides[side], inputs, out, args.pdf, cache)
                    walls[(case, side)].append(t)
                    print(
                        f"    {case} {side}: wall {t[0]:.2f} s (imports {t[1]:.2f} s, build {t[2]:.2f} s)", flush=True
                    )
    rows = []
    for case in todo:
        for side in sides:
            wall, imp, build = (statistics.median(x[i] for x in walls[(case, side)]) for i in range(3))
            tag = f"_{side}" if len(sides) > 1 else ""
            res.add(f"{case}_wall{tag}", wall, "s", f"median of {args.rounds}; fresh interpreter")
            res.add(f"{case}_build{tag}", build, "s", "build_report alone")
            rows.append((case, side, wall, imp, build))
        if len(sides) > 1:
            ratios = [b[0] / a[0] for a, b in zip(walls[(case, "A")], walls[(case, "B")], strict=True)]
            res.add(f"{case}_ratio_B_over_A", statistics.median(ratios), "x", "wall, paired by round; > 1: A faster")
    print(f"\n{cmd}\n\n| case | side | wall (s) | imports (s) | build_report (s) |\n|---|---|---|---|---|")
    for case, side, wall, imp, build in rows:
        print(f"| {case} | {side} | {wall:.2f} | {imp:.2f} | {build:.2f} |")
    out = args.out or OUT_DIR / "report_time.csv"
    res.write_csv(out)
    print(f"CSV: {out}", flush=True)


if __name__ == "__main__":
    main()
