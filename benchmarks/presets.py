"""How much faster do the presets whose jobs differ in their optimizer's values run, now that such jobs
share one stacked group?

    python benchmarks/presets.py                                # both, ~20 min on 2 cores
    python benchmarks/presets.py --only lr_sweep --rounds 3     # experiment=lr_sweep alone, ~6 min

- ``lr_sweep``: ``actcompare -m experiment=lr_sweep`` (4 activations x 5 lrs x 2 seeds) as one group of
  40 (today) against groups of at most 8 (``hydra.launcher.max_models=8``: the 5 groups of 8 that one lr
  per group gave before), on --lr-sweep-data (a subset by default, as the figures in docs/speed.md).
- ``lr_optuna``: ``actcompare -m hparams_search=lr_optuna`` (40 trials x 5 epochs, full MNIST; Optuna
  asks 4 trials at a time) with each batch of 4 trials stacked (today) against one model at a time
  (``hydra.launcher.engine=single``).

Each command runs in its own child process, timed from start to exit; --rounds repeats both sides
in turn (A B A B ...) and keeps each side's median; the ratio is taken between the medians.
"""

from __future__ import annotations

import os
import statistics
import sys

from _timing import parser, run_child, scratch, session

PRESETS = {
    # name: (command args, the other side's extra args, figure names for both sides)
    "lr_sweep": (["experiment=lr_sweep"], ["hydra.launcher.max_models=8"], ("one_group", "groups8")),
    "lr_optuna": (["hparams_search=lr_optuna"], ["hydra.launcher.engine=single"], ("stacked", "single")),
}


def main(argv=None) -> None:
    p = parser(__doc__, epochs=2)
    p.add_argument("--only", choices=sorted(PRESETS), help="one preset (default both)")
    p.add_argument("--rounds", type=int, default=2, help="times each side runs, in turn (default 2)")
    p.add_argument(
        "--lr-sweep-data",
        default="data.train_samples=20000 data.val_samples=5000",
        help="overrides for lr_sweep (default: a 20,000-image subset; '' for the whole preset)",
    )
    p.add_argument("--optuna-trials", type=int, default=40, help="lr_optuna's n_trials (default 40, the preset's)")
    args = p.parse_args(argv)
    env = {**os.environ, "MNIST_ROOT": args.data_root}
    with scratch("presets", False) as tmp, session("presets", args) as (res, _, _):
        for name in [args.only] if args.only else list(PRESETS):
            base, other, (a, b) = PRESETS[name]
            extra = (
                [f"epochs={args.epochs}", *args.lr_sweep_data.split()]
                if name == "lr_sweep"
                else [f"hydra.sweeper.n_trials={args.optuna_trials}"]
            )
            walls: dict[str, list[float]] = {a: [], b: []}
            for r in range(args.rounds):
                for side, more in ((a, []), (b, other)) if r % 2 == 0 else ((b, other), (a, [])):
                    folder = tmp / f"{name}_{side}_{r}"
                    cmd = [sys.executable, "-m", "actcompare", "-m", *base, *extra, *more]
                    use = run_child([*cmd, f"hydra.sweep.dir={folder}"], folder.with_suffix(".log"), env)
                    print(f"    {name} {side}: {use.wall:.1f} s (cpu {use.cpu:.0f} s)", flush=True)
                    walls[side].append(use.wall)
            for side in (a, b):
                res.add(f"{name}_wall_{side}", statistics.median(walls[side]), "s", f"median of {args.rounds}")
            res.add(
                f"{name}_ratio_{b}_over_{a}",
                statistics.median(walls[b]) / statistics.median(walls[a]),
                "x",
                "> 1: today's stacking is faster",
            )


if __name__ == "__main__":
    main()
