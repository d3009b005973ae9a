"""How long does a whole sweep take from the command to the report, against the tutorial-style script
doing the same trainings, and how much memory does it take?

    python benchmarks/sweep.py --epochs 10                                # 4 and 12 runs, every variant
    python benchmarks/sweep.py --epochs 10 --runs 12 --variants fused     # on a GPU

For each --runs N (the default comparison's 4 activations x N/4 seeds) and variant, one child
process, timed from start to exit with its peak RSS: ``tutorial`` = tutorial_sweep.py; ``fused``,
``local2``, ``basic``, ``joblib2`` = ``python -m actcompare -m ...`` with the default fused launcher
(its groups in this process), the fused launcher with its groups in 2 local processes
(hydra.launcher.executor=local), hydra/launcher=basic, and hydra/launcher=joblib with 2 jobs.
--rounds repeats them, order rotated, and keeps each variant's fastest. Also: the import time of
torch, and the peak RSS of one run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

from _timing import COMPARISON, comparison_sweep, parser, run_child, scratch, session

TUTORIAL = str(Path(__file__).with_name("tutorial_sweep.py"))
LAUNCHERS = {
    "fused": [],
    "local2": ["hydra.launcher.executor=local", "hydra.launcher.processes=2"],
    "basic": ["hydra/launcher=basic"],
    "joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def command(variant: str, n_runs: int, folder: Path, args) -> list[str]:
    seeds = ",".join(str(s) for s in range(n_runs // len(COMPARISON)))
    if variant == "tutorial":
        return [sys.executable, TUTORIAL, args.data_root, str(args.epochs), str(args.batch_size), args.device, seeds]
    return comparison_sweep(
        n_runs,
        f"epochs={args.epochs}",
        f"batch_size={args.batch_size}",
        f"device={args.device}",
        *LAUNCHERS[variant],
        f"hydra.sweep.dir={folder}",
    )


def check(folder: Path, n_runs: int) -> str:
    """What a sweep left: completed runs, engines, mean final test accuracy; '!' when incomplete."""
    records = [json.loads(p.read_text()) for p in folder.glob("*/run.json")]
    done = [r for r in records if r.get("status") == "completed"]
    text = f"{len(done)}/{n_runs} completed, engine {'+'.join(sorted({str(r.get('engine')) for r in records}))}"
    if done:
        text += f", mean test acc {100 * statistics.fmean(r['final']['test_acc'] for r in done):.2f} %"
    return text if len(done) == n_runs and (folder / "report.md").is_file() else "! " + text


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--runs", default="4,12", help="sweep sizes, multiples of 4 (default 4,12)")
    p.add_argument(
        "--variants", default="tutorial,fused,local2,basic,joblib2", help="which commands to time (default all)"
    )
    p.add_argument("--rounds", type=int, default=1, help="repeat, order rotated; the fastest is kept (default 1)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the sweeps' folders and logs")
    args = p.parse_args(argv)
    sizes, variants = [int(n) for n in args.runs.split(",")], args.variants.split(",")
    if any(n < 4 or n % 4 for n in sizes) or not set(variants) <= {"tutorial", *LAUNCHERS}:
        p.error("--runs: multiples of 4; --variants: tutorial, fused, local2, basic, joblib2")
    env = {**os.environ, "MNIST_ROOT": args.data_root}
    with scratch("sweep", args.keep_tmp) as tmp, session("sweep", args) as (res, _, _):
        res.add(
            "import_torch",
            run_child([sys.executable, "-c", "import torch, torchvision"], tmp / "import.log", env).wall,
            "s",
            "python -c 'import torch, torchvision'",
        )
        for n in sizes:
            print(
                f"\n  {n} runs ({len(COMPARISON)} activations x {n // len(COMPARISON)} seeds) x {args.epochs} "
                f"epochs, {args.rounds} round(s)",
                flush=True,
            )
            best = {}
            for r in range(args.rounds):
                for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
                    folder = tmp / f"sweep{n}_{v}_{r}"
                    use = run_child(command(v, n, folder, args), folder.with_suffix(".log"), env)
                    note = f"cpu {use.cpu:.0f} s, RSS {use.rss_mib:.0f} MiB"
                    print(
                        f"    {v}: {use.wall:.1f} s ({note}"
                        + ("" if v == "tutorial" else f"; {check(folder, n)}")
                        + ")",
                        flush=True,
                    )
                    if use.rc == 0 and (v not in best or use.wall < best[v].wall):
                        best[v] = use
            for v in variants:
                use = best.get(v)
                res.add(f"sweep{n}_wall_{v}", use.wall if use else float("nan"), "s", "fastest round")
                res.add(
                    f"sweep{n}_peak_rss_{v}",
                    use.rss_mib if use else float("nan"),
                    "MiB",
                    "ru_maxrss of its largest process",
                )
                if v != "tutorial" and use and "tutorial" in best:
                    res.add(f"sweep{n}_ratio_tutorial_over_{v}", best["tutorial"].wall / use.wall, "x")
                if v not in ("tutorial", "fused") and use and "fused" in best:
                    res.add(f"sweep{n}_ratio_{v}_over_fused", use.wall / best["fused"].wall, "x", "< 1: faster")
            if "local2" in best and "joblib2" in best:
                res.add(f"sweep{n}_ratio_joblib2_over_local2", best["joblib2"].wall / best["local2"].wall, "x")
            others = {v: u for v, u in best.items() if v not in ("tutorial", "fused")}
            if others and "fused" in best:
                v = min(others, key=lambda k: others[k].wall)
                res.add(f"sweep{n}_ratio_fused_over_best_other", best["fused"].wall / others[v].wall, "x", v)
        one = run_child(
            [
                sys.executable,
                "-m",
                "actcompare",
                "epochs=1",
                f"batch_size={args.batch_size}",
                f"device={args.device}",
                f"hydra.run.dir={tmp / 'one_run'}",
            ],
            tmp / "one_run.log",
            env,
        )
        res.add("peak_rss_one_run", one.rss_mib, "MiB", "actcompare epochs=1")
        res.add("wall_one_run", one.wall, "s", f"actcompare epochs=1 (cpu {one.cpu:.1f} s)")


if __name__ == "__main__":
    main()
