"""Where does a training step's time go? torch.profiler over the per-run loop, by operator.

    python benchmarks/profile_step.py --steps 300

The recipe's relu network and optimizer from conf/, one warm-up pass, then --steps profiled steps;
the operator table is printed, the shares of the matmuls, the optimizer and the batch gather are
written as figures.
"""

from __future__ import annotations

import torch
from _timing import parser, session, sync


def main(argv=None) -> None:
    p = parser(__doc__, epochs=1)
    p.add_argument("--steps", type=int, default=300, help="training steps to profile (default 300)")
    args = p.parse_args(argv)
    with session("profile", args) as (res, device, recipe):
        from torch.profiler import ProfilerActivity, profile

        from actcompare.data import load_mnist
        from actcompare.train import train

        data = load_mnist(args.data_root, device)
        model = recipe.model("relu", 0, device)
        opt = recipe.optimizer(model.parameters())
        n = args.steps * args.batch_size
        x, y, gen = data.train.x[:n], data.train.y[:n], torch.Generator().manual_seed(0)
        train(model, x, y, opt, args.batch_size, gen)  # warm-up
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            train(model, x, y, opt, args.batch_size, gen)
            sync(device)
        events = prof.key_averages()
        print(events.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
        total = sum(e.self_cpu_time_total for e in events)

        def share(*names: str) -> float:
            return 100 * sum(e.self_cpu_time_total for e in events if any(k in e.key for k in names)) / total

        res.add("matmul_share", share("aten::mm", "aten::addmm"), "%", "self CPU time of mm + addmm")
        res.add(
            "optimizer_share",
            share("Optimizer.step", "_fused_adam", "Optimizer.zero_grad"),
            "%",
            "optimizer.step() incl. its Python, and zero_grad",
        )
        res.add("gather_share", share("aten::index_select"), "%", "batch gather")
        res.add("step_us", total / args.steps, "us", "self CPU time per step while profiled")


if __name__ == "__main__":
    main()
