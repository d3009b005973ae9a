"""How much faster is this project's training loop than the PyTorch tutorial's, for the same accuracy,
and what do the per-epoch diagnostics cost?

    python benchmarks/loops.py --epochs 10                  # ~4 min on 2 cores
    python benchmarks/loops.py --epochs 3 --batch-size 256  # a larger batch: closer to the matmul limit

The tutorial loop (torchvision MNIST + ToTensor + DataLoader, ``loss.item()`` every step:
tutorial_sweep.py's train and test) against the project's (``load_mnist`` once, then ``train`` +
``test`` per epoch, the recipe's optimizer), interleaved epoch by epoch: the same relu network
and initial weights, batch size and seeds. After each project epoch, ``diagnostics.probe`` as a
run calls it. Figures: per-epoch medians, samples/s, GFLOP/s, final test accuracies.
"""

from __future__ import annotations

import statistics
from functools import partial

import torch
import tutorial_sweep as tutorial
from _timing import median, parser, session, timed


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", default="0,1,2", help="seeds, one model pair each (default 0,1,2)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    with session("loops", args) as (res, device, recipe):
        from torch.utils.data import DataLoader
        from torchvision.datasets import MNIST
        from torchvision.transforms import ToTensor

        from actcompare import diagnostics
        from actcompare.data import load_mnist
        from actcompare.loop import PROBE_SIZE
        from actcompare.train import test, train

        t_tut_load, (train_ds, test_ds) = timed(
            lambda: [MNIST(args.data_root, train=t, transform=ToTensor()) for t in (True, False)], device
        )
        t_load, data = timed(lambda: load_mnist(args.data_root, device), device)
        probe_x, probe_y = data.test.x[:PROBE_SIZE], data.test.y[:PROBE_SIZE]
        times = {k: [] for k in ("tut_train", "tut_test", "train", "test", "probe")}
        acc = {"tut": [], "proj": []}
        loss_fn = torch.nn.CrossEntropyLoss()
        for seed in seeds:
            tut_model, model = recipe.model("relu", seed, device), recipe.model("relu", seed, device)
            tut_opt = torch.optim.Adam(tut_model.parameters(), lr=1e-3)  # the tutorial's
            opt = recipe.optimizer(model.parameters())  # the recipe's (fused Adam)
            train_dl = DataLoader(
                train_ds, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
            )
            test_dl = DataLoader(test_ds, batch_size=args.batch_size)
            gen = torch.Generator().manual_seed(seed)
            steps = {  # in this order every epoch: the tutorial's, then the project's as a run does it
                "tut_train": partial(tutorial.train, train_dl, tut_model, loss_fn, tut_opt, device),
                "tut_test": partial(tutorial.test, test_dl, tut_model, loss_fn, device),
                "train": partial(train, model, data.train.x, data.train.y, opt, args.batch_size, gen),
                "test": partial(test, model, data.test.x, data.test.y),
                "probe": partial(diagnostics.probe, model, probe_x, probe_y),
            }
            for epoch in range(1, args.epochs + 1):
                out = {}
                for key, step in steps.items():
                    dt, out[key] = timed(step, device)
                    times[key].append(dt)
                print(
                    f"  seed {seed} epoch {epoch}: tutorial {times['tut_train'][-1]:.2f} s, acc "
                    f"{100 * out['tut_test'][1]:.2f} % | project {times['train'][-1]:.2f} s, acc "
                    f"{100 * out['test'].accuracy:.2f} %",
                    flush=True,
                )
            acc["tut"].append(out["tut_test"][1])
            acc["proj"].append(out["test"].accuracy)

        n = len(data.train)
        tut, proj = median(times["tut_train"]), median(times["train"])
        tut_all = median([a + b for a, b in zip(times["tut_train"], times["tut_test"], strict=True)])
        proj_all = median([a + b for a, b in zip(times["train"], times["test"], strict=True)])
        res.add("data_load_tutorial", t_tut_load, "s", "torchvision MNIST() x2, once")
        res.add("data_load_project", t_load, "s", "load_mnist(), once")
        res.add("epoch_train_tutorial", tut, "s", "median over epochs x seeds")
        res.add("epoch_train_project", proj, "s", "median over epochs x seeds")
        res.add("epoch_train_test_tutorial", tut_all, "s", "train + test, median")
        res.add("epoch_train_test_project", proj_all, "s", "train + test, median")
        res.add("ratio_train_tutorial_over_project", tut / proj, "x")
        res.add("ratio_train_test_tutorial_over_project", tut_all / proj_all, "x")
        res.add("samples_per_s_train_project", n / proj, "samples/s")
        res.add(
            "gflops_train_project",
            6 * recipe.weights * n / proj / 1e9,
            "GFLOP/s",
            f"6 FLOPs x {recipe.weights} weights x {n} samples per epoch",
        )
        for name, key in (("tutorial", "tut"), ("project", "proj")):
            res.add(
                f"test_acc_{name}",
                100 * statistics.fmean(acc[key]),
                "%",
                f"after {args.epochs} epochs, mean over seeds {seeds}",
            )
        probe = median(times["probe"])
        res.add("probe_per_epoch", 1000 * probe, "ms", "diagnostics.probe, median")
        res.add("diagnostics_overhead", 100 * probe / proj_all, "%", "probe / (train + test)")


if __name__ == "__main__":
    main()
