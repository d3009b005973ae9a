"""What does asking Optuna's TPE for trials in batches (each batch trains as one stacked group) cost
in search quality, against asking for one trial at a time?

    python benchmarks/optuna_batches.py          # B = 1, 4, 8 x 5 sampler seeds x 24 trials: 82 s, 2 idle cores
    python benchmarks/optuna_batches.py --batches 1,4 --sampler-seeds 0,1,2,3,4,5,6,7,8,9 --trials 40

The search is conf/hparams_search/lr_optuna.yaml's, written out here (so that no sweeper plugin is
needed): activation in the default comparison x optimizer.lr log-uniform in [1e-4, 1e-1], a
multivariate TPESampler with 8 start-up trials and seed = each --sampler-seeds, objective val_acc
(actcompare.objective: a run that did not complete scores 0.0). A search asks for B trials
(study.ask() B times, as the preset's sweeper does with n_jobs=B), trains them with
actcompare.experiment.run_group (one stacked group of B models), tells the values, and so on for
--trials trials. The training seed is fixed (seed=0), so a trial's value is (nearly: a stacked
group's float rounding differs from one model's, which can move a run at a large lr by points) a
function of its (activation, lr), and the spread over sampler seeds is the search's own. One sampler
seed draws the same 8 start-up trials at every B: the searches pair by seed.
Figures per B: best val_acc found (mean, sd over sampler seeds), regret against the best that any
search found, the difference from B=1 paired by sampler seed, and wall time per search.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

from _timing import COMPARISON, parser, scratch, session

LR = (1e-4, 1e-1)  # conf/hparams_search/lr_optuna.yaml: optimizer.lr tag(log, interval(1e-4, 1e-1))
STARTUP = 8  # its sampler.n_startup_trials
OBJECTIVE = "val_acc"


def search(batch: int, seed: int, args, base: list[str], folder: Path) -> tuple[float, dict, float, int, int]:
    """One TPE search: (best value, its params, wall s, batches trained as one stacked group, batches)."""
    import optuna
    from hydra import compose

    from actcompare.experiment import RunSpec, run_group
    from actcompare.objective import direction, objective_value

    sampler = optuna.samplers.TPESampler(multivariate=True, n_startup_trials=STARTUP, seed=seed)
    study = optuna.create_study(direction=direction(OBJECTIVE), sampler=sampler)
    t, whole, batches = time.perf_counter(), 0, 0
    while len(study.trials) < args.trials:
        trials = [study.ask() for _ in range(min(batch, args.trials - len(study.trials)))]
        specs = []
        for trial in trials:
            activation = trial.suggest_categorical("activation", list(COMPARISON))
            over = [f"activation={activation}", f"optimizer.lr={trial.suggest_float('optimizer.lr', *LR, log=True)}"]
            cfg = compose("config", [*base, *over])
            specs.append(RunSpec(cfg=cfg, out_dir=folder / f"b{batch}_s{seed}_t{trial.number}", overrides=over))
        records = run_group(specs, engine="stacked")
        for trial, record in zip(trials, records, strict=True):
            study.tell(trial, objective_value(record, OBJECTIVE))
        whole += all(r["engine"] == "stacked" and (r["group"] or {}).get("size") == len(trials) for r in records)
        batches += 1
    return study.best_value, study.best_params, time.perf_counter() - t, whole, batches


def sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else float("nan")


def main(argv=None) -> None:
    p = parser(__doc__, epochs=2)
    p.add_argument("--batches", default="1,4,8", help="trials asked for and trained at a time (default 1,4,8)")
    p.add_argument("--sampler-seeds", default="0,1,2,3,4", help="TPESampler seeds, one search each (default 0-4)")
    p.add_argument("--trials", type=int, default=24, help="trials per search (default 24)")
    p.add_argument("--train-samples", type=int, default=10000, help="data.train_samples, val included (default 10000)")
    p.add_argument("--val-samples", type=int, default=5000, help="data.val_samples, held out (default 5000)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the trials' run folders")
    args = p.parse_args(argv)
    batches, seeds = [int(b) for b in args.batches.split(",")], [int(s) for s in args.sampler_seeds.split(",")]
    if min(batches) < 1 or args.trials < 1:
        p.error("--batches and --trials: at least 1")
    import optuna
    from hydra import compose, initialize_config_module

    import actcompare.schema  # noqa: F401  (registers config_schema)

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate TPE
    with scratch("optuna", args.keep_tmp) as tmp, session("optuna_batches", args) as (res, device, _):
        base = [
            f"objective={OBJECTIVE}",
            "seed=0",
            f"epochs={args.epochs}",
            f"batch_size={args.batch_size}",
            f"device={device.type}",
            f"data.root={args.data_root}",
            f"data.train_samples={args.train_samples}",
            f"data.val_samples={args.val_samples}",
            "diagnostics=false",  # bookkeeping only: the trained values are the same
            "save_model=false",
        ]
        with initialize_config_module("actcompare.conf", version_base="1.3", job_name="benchmark"):
            compose("config", base)  # a bad override fails here, before any search
            print(f"  activation in {COMPARISON} x lr in {LR} (log), {args.trials} trials", flush=True)
            found: dict[int, list[tuple[float, float]]] = {b: [] for b in batches}  # B -> (best, wall)
            for i, seed in enumerate(seeds):  # B interleaved, order rotated: drift hits every B alike
                for b in batches[i % len(batches) :] + batches[: i % len(batches)]:
                    best, where, wall, whole, n = search(b, seed, args, base, tmp)
                    found[b].append((best, wall))
                    print(
                        f"    B={b} sampler seed {seed}: best {100 * best:.2f} % at {where}, {wall:.1f} s, "
                        f"{whole}/{n} batches trained as one stacked group",
                        flush=True,
                    )
        top = max(v for runs in found.values() for v, _ in runs)
        res.add("optuna_best_any", 100 * top, "%", f"best val_acc of all {len(batches) * len(seeds)} searches")
        rows = []
        ref = [100 * v for v, _ in found[batches[0]]]
        for b in batches:
            best = [100 * v for v, _ in found[b]]
            m, diff = statistics.fmean(best), [x - r for x, r in zip(best, ref, strict=True)]
            mean_d, sd_d, wall = statistics.fmean(diff), sd(diff), statistics.fmean(w for _, w in found[b])
            note = f"over sampler seeds {args.sampler_seeds}"
            res.add(f"optuna_b{b}_best_mean", m, "%", note)
            res.add(f"optuna_b{b}_best_sd", sd(best), "pp", note)
            res.add(f"optuna_b{b}_regret_mean", 100 * top - m, "pp", "vs optuna_best_any")
            if b != batches[0]:
                res.add(f"optuna_b{b}_minus_b{batches[0]}_mean", mean_d, "pp", f"paired by seed, sd {sd_d:.3g}")
                need = (2 * sd_d / abs(mean_d)) ** 2 if mean_d else float("inf")
                res.add(f"optuna_b{b}_seeds_needed", need, "seeds", "for that mean difference to be 2 SE")
            res.add(f"optuna_b{b}_wall_per_search", wall, "s", f"{args.trials} trials")
            rows.append((b, m, sd(best), 100 * top - m, mean_d, sd_d, wall))
        vs = f"vs B={batches[0]}, paired"
        print(f"\n  {'B':>3}  {'best val_acc %':>15}  {'regret pp':>9}  {vs:>16}  {'s/search':>8}")
        for b, m, s, r, d, ds, w in rows:
            print(f"  {b:>3}  {m:>7.2f} ± {s:<5.2f}  {r:>9.2f}  {d:>+7.2f} ± {ds:<5.2f}  {w:>8.1f}")
        print(flush=True)


if __name__ == "__main__":
    main()
