"""Which optimizer implementation (and is torch.compile worth it) for the per-run loop?

    python benchmarks/ablations.py --epochs 4              # fused / foreach / plain Adam
    python benchmarks/ablations.py --epochs 4 --compile    # and torch.compile(model)

The recipe's network and Adam settings from conf/, each implementation training its own copy of the
same model on the same data, interleaved epoch by epoch; the first epoch is left out of the medians
(it warms up, and with --compile it includes compiling).
"""

from __future__ import annotations

from functools import partial

import torch
from _timing import median, parser, session, timed


def main(argv=None) -> None:
    p = parser(__doc__, epochs=4)
    p.add_argument("--compile", action="store_true", help="also time torch.compile(model) with fused Adam")
    args = p.parse_args(argv)
    with session("ablations", args) as (res, device, recipe):
        from actcompare.data import load_mnist
        from actcompare.train import train

        data = load_mnist(args.data_root, device)
        variants = {
            "adam_fused": {"fused": True},
            "adam_foreach": {"fused": False, "foreach": True},
            "adam_plain": {"fused": False, "foreach": False},
        }
        if args.compile:
            variants["adam_fused_compiled"] = {"fused": True}
        runs = {}
        for name, kwargs in variants.items():
            model = recipe.model("relu", 0, device)
            net = torch.compile(model) if name.endswith("compiled") else model
            runs[name] = (net, recipe.optimizer(model.parameters(), **kwargs), torch.Generator().manual_seed(0), [])
        for epoch in range(1, args.epochs + 1):
            for name, (net, opt, gen, times) in runs.items():
                step = partial(train, net, data.train.x, data.train.y, opt, args.batch_size, gen)
                times.append(timed(step, device)[0])
                print(f"  epoch {epoch} {name}: {times[-1]:.3f} s", flush=True)
        steady = {name: median(times[1:] or times) for name, (*_, times) in runs.items()}
        for name, (*_, times) in runs.items():
            if name.endswith("compiled"):
                res.add("first_epoch_compiled", times[0], "s", "includes torch.compile's compiling")
            res.add(f"epoch_train_{name}", steady[name], "s", "median of epochs 2..")
            if name != "adam_fused":
                res.add(
                    f"ratio_{name}_over_adam_fused", steady[name] / steady["adam_fused"], "x", "> 1: fused is faster"
                )


if __name__ == "__main__":
    main()
