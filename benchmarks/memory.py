"""How much memory does a stacked group take per model, and does engines.plan.model_bytes bound it?

    python benchmarks/memory.py                        # CPU: groups of 4, 32 and 128 models, ~2 min
    python benchmarks/memory.py --device cuda --models 64,512,2048

For each group size M, a fresh child process loads MNIST, notes its memory, builds the stacked engine
for the default comparison's 4 activations x M/4 seeds (the recipe from conf/), trains --epochs epochs
on --train-samples images and evaluates on the test set, then reports its peak: ru_maxrss on the CPU,
torch.cuda.max_memory_allocated on a GPU. Figures: the peak per model above the loaded data, against
the estimate that sizes a sweep's groups (``memory_cap``: half the free memory over model_bytes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from _timing import COMPARISON, REPO, parser, session


def child(args) -> None:
    """One group size, in this process: prints its figures as JSON."""
    import torch
    from _timing import recipe

    from actcompare.data import load_mnist

    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    rec = recipe()
    data = load_mnist(args.data_root, device, train_samples=args.train_samples)
    seeds = list(range(args.child // len(COMPARISON)))

    def used() -> int:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    base = used()
    engine = rec.engine("stacked", COMPARISON, seeds, data.train.x, data.train.y)
    for _ in range(args.epochs):
        engine.train_epoch()
        engine.evaluate(data.test.x, data.test.y)
    print(json.dumps({"models": engine.size, "base": base, "peak": used()}))


def main(argv=None) -> None:
    p = parser(__doc__, epochs=1)
    p.add_argument("--models", default="4,32,128", help="group sizes, multiples of 4 (default 4,32,128)")
    p.add_argument("--train-samples", type=int, default=6400, help="training images (default 6400: 100 steps)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)  # the child process's group size
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    with session("memory", args) as (res, device, rec):
        from actcompare.engines.plan import free_memory, memory_cap, model_bytes

        estimate = model_bytes(rec.hidden_sizes, rec.batch_size)
        res.add(
            "estimate_per_model",
            estimate / 2**20,
            "MiB",
            f"model_bytes{tuple(rec.hidden_sizes)}, batch {rec.batch_size}",
        )
        free = free_memory(device)
        res.add("free_memory", free / 2**30, "GiB", f"{device}: what memory_cap divides")
        res.add("memory_cap", memory_cap(free, rec.hidden_sizes, rec.batch_size), "models", "half of it / estimate")
        sizes, peaks = [int(x) for x in args.models.split(",")], []
        for m in sizes:
            cmd = [sys.executable, __file__, "--child", str(m), "--device", str(device), "--epochs", str(args.epochs)]
            cmd += ["--data-root", args.data_root, "--train-samples", str(args.train_samples)]
            run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"error: the group of {m} failed:\n{run.stderr[-2000:]}")
            fig = json.loads(run.stdout.strip().splitlines()[-1])
            peaks.append(fig["peak"] - fig["base"])
            res.add(
                f"group_{m}", peaks[-1] / 2**20, "MiB", f"peak above the loaded data ({fig['base'] / 2**20:.0f} MiB)"
            )
        if len(sizes) > 1:  # the two largest groups: what each added model costs, and the group's own part
            slope = (peaks[-1] - peaks[-2]) / (sizes[-1] - sizes[-2])
            res.add("per_added_model", slope / 2**20, "MiB", f"from groups of {sizes[-2]} and {sizes[-1]}")
            res.add("per_group", (peaks[-1] - slope * sizes[-1]) / 2**20, "MiB", "the rest: allocator, autograd, ...")
            res.add("estimate_over_measured", estimate / slope, "x", "> 1: model_bytes bounds what a model adds")


if __name__ == "__main__":
    main()
