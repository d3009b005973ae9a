"""How much faster is the stacked engine than the per-run engine, per model-epoch, for the same results?

    python benchmarks/engines.py --epochs 10                          # CPU: 12 models, ~6 min on 2 cores
    python benchmarks/engines.py --device cuda --epochs 10 --single-models 2

Both engines come from ``make_engine`` with the recipe composed from conf/ (as a sweep builds them),
on the full MNIST from ``load_mnist``; the default comparison's 4 activations x --seeds models.
They are interleaved epoch by epoch (stacked, per-run, per-run, stacked, ...) so the machine's
drift hits both alike. The per-run engines train the first --single-models of the models, one
after another. Figures: seconds per model-epoch of each, their ratio, and both engines' final test
accuracies (the speed must not change the results).
"""

from __future__ import annotations

import math
import statistics

from _timing import COMPARISON, median, parser, session, timed


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", default="0,1,2", help="seeds: 4 activations x these models (default 0,1,2: 12)")
    p.add_argument(
        "--single-models",
        type=int,
        default=0,
        help="the per-run engine trains only the first N models (default 0: all)",
    )
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    with session("engines", args) as (res, device, recipe):
        from actcompare.data import load_mnist

        data = load_mnist(args.data_root, device)
        V, M = len(COMPARISON), len(seeds) * len(COMPARISON)
        K = min(args.single_models or M, M)
        labels = [f"{COMPARISON[m % V]}/{seeds[m // V]}" for m in range(M)]
        x, y, tx, ty = data.train.x, data.train.y, data.test.x, data.test.y
        t_build, stacked = timed(lambda: recipe.engine("stacked", COMPARISON, seeds, x, y), device)
        singles = [recipe.engine("single", [COMPARISON[m % V]], [seeds[m // V]], x, y) for m in range(K)]

        times = {"stacked": [], "single": []}  # per epoch: (train s, evaluate s) over all its models
        last = {}  # engine -> (train losses, test accuracies) after the last epoch
        for epoch in range(1, args.epochs + 1):
            for which in ("stacked", "single") if epoch % 2 else ("single", "stacked"):
                train = ev = 0.0
                losses, accs = [], []
                for engine in [stacked] if which == "stacked" else singles:
                    dt, (loss, _) = timed(engine.train_epoch, device)
                    de, (_, acc) = timed(lambda e=engine: e.evaluate(tx, ty), device)
                    train, ev, losses, accs = train + dt, ev + de, losses + loss, accs + acc
                times[which].append((train, ev))
                last[which] = (losses, accs)
            (st, _), (si, _) = times["stacked"][-1], times["single"][-1]
            print(
                f"  epoch {epoch}: stacked {st / M:.4f} s/model-epoch, per-run {si / K:.4f}, "
                f"ratio {(si / K) / (st / M):.2f}x",
                flush=True,
            )

        st_pme = [t / M for t, _ in times["stacked"]]
        si_pme = [t / K for t, _ in times["single"]]
        paired = [b / a for a, b in zip(st_pme, si_pme, strict=True)]
        res.add("engines_models", M, "models", f"{V} activations x seeds {seeds}")
        res.add("engines_per_run_models", K, "models", "the per-run engine trains " + ", ".join(labels[:K]))
        res.add("engines_build_stacked", t_build, "s", "make_engine('stacked', ...), once")
        res.add("engines_first_epoch_stacked", times["stacked"][0][0], "s", "training, all models")
        res.add("engines_train_per_model_epoch_stacked", median(st_pme), "s", "median over epochs")
        res.add("engines_train_per_model_epoch_single", median(si_pme), "s", "median over epochs")
        res.add(
            "engines_ratio_single_over_stacked",
            median(si_pme) / median(st_pme),
            "x",
            f"training; paired per-epoch ratios {min(paired):.2f}..{max(paired):.2f}",
        )
        res.add(
            "engines_gflops_stacked",
            6 * recipe.weights * len(y) / median(st_pme) / 1e9,
            "GFLOP/s",
            f"6 FLOPs x {recipe.weights} weights x {len(y)} samples per model-epoch",
        )
        both = {k: median([(t + e) / n for t, e in v]) for (k, v), n in zip(times.items(), (M, K), strict=True)}
        res.add(
            "engines_ratio_train_eval_single_over_stacked",
            both["single"] / both["stacked"],
            "x",
            "train_epoch() + evaluate(test), medians",
        )

        # The speed must not be bought with different results: both engines trained the same models.
        (st_loss, st_acc), (si_loss, si_acc) = last["stacked"], last["single"]
        for v, name in enumerate(COMPARISON):
            accs = st_acc[v::V]
            res.add(
                f"engines_test_acc_stacked_{name}",
                100 * statistics.fmean(accs),
                "%",
                "mean over seeds; per seed " + ", ".join(f"{100 * a:.2f}" for a in accs),
            )
        res.add("engines_test_acc_stacked_mean", 100 * statistics.fmean(st_acc), "%", f"all {M} models")
        worst = max(range(K), key=lambda m: abs(st_acc[m] - si_acc[m]))
        res.add(
            "engines_test_acc_max_abs_diff",
            100 * abs(st_acc[worst] - si_acc[worst]),
            "pp",
            f"stacked vs per-run over {K} models (worst {labels[worst]})",
        )
        res.add(
            "engines_train_loss_max_rel_diff",
            max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(st_loss[:K], si_loss, strict=True)),
            "",
            "last epoch's mean training loss, stacked vs per-run",
        )
        if not all(math.isfinite(a) for a in st_loss):
            print("  ! stacked engine: a non-finite training loss", flush=True)


if __name__ == "__main__":
    main()
