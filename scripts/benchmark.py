"""How fast is this project's training compared with the PyTorch tutorial's loop, and why.

    MNIST_ROOT=/work/shared/data .venv/bin/python scripts/benchmark.py --epochs 3
    MNIST_ROOT=/work/shared/data .venv/bin/python scripts/benchmark.py --epochs 10 --skip-sweep
    MNIST_ROOT=/work/shared/data .venv/bin/python scripts/benchmark.py --epochs 3 --skip-sweep --ablations --compile
    MNIST_ROOT=/work/shared/data .venv/bin/python scripts/benchmark.py --epochs 1 --seeds 0 --skip-sweep --profile

All measurements run in this one process (or its subprocesses), so they share the machine's state:
1. the fp32 matmul rate of a large ``torch.mm`` (the machine's attainable compute);
2. tutorial loop (torchvision MNIST + ToTensor + DataLoader, ``loss.item()`` every step) against
   this project's loop (``load_mnist`` once, then ``train`` + ``test`` per epoch), interleaved
   A B A B epoch by epoch, same network / batch size / Adam / epochs / seed; per-epoch medians,
   samples/s, achieved GFLOP/s and final test accuracy (mean over --seeds);
3. the per-epoch cost of ``actcompare.diagnostics.probe`` (diagnostics on vs off);
4. unless --skip-sweep: wall time of the 4-activation sweep through run.py (basic launcher and
   joblib with 2 jobs) next to a standalone tutorial-style script doing the same work;
5. peak RSS of one ``run.py epochs=1`` process;
6. with --ablations: the choices behind the loop, interleaved epoch by epoch on the same data:
   fused Adam (the project's) against foreach and plain per-tensor Adam, and with --compile also
   ``torch.compile(model)`` (its first epoch includes compiling);
7. with --profile: where a training step's time goes (torch.profiler over 300 steps, by operator).
Everything is printed as a table and written to --out as CSV rows (name, value, unit).
Timings on a shared machine are noisy: compare figures from the same invocation only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's code, also without `pip install -e .`

import torch  # noqa: E402
from torch import nn  # noqa: E402

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu")


# --------------------------------------------------------------------------------------------
# Results


class Results:
    """Rows (section, name, value, unit, note); printed as a table and written as CSV."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, str, str]] = []

    def add(self, section: str, name: str, value: float, unit: str, note: str = "") -> float:
        self.rows.append((section, name, float(value), unit, note))
        print(f"  {name} = {_fmt(value)} {unit}" + (f"  ({note})" if note else ""), flush=True)
        return value

    def table(self) -> str:
        width = max(len(r[1]) for r in self.rows)
        lines, section = [], None
        for sec, name, value, unit, note in self.rows:
            if sec != section:
                lines.append(f"\n[{sec}]")
                section = sec
            lines.append(f"  {name:<{width}}  {_fmt(value):>12}  {unit:<10} {note}".rstrip())
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "value", "unit"])
            for _, name, value, unit, _ in self.rows:
                w.writerow([name, f"{value:.6g}", unit])


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "nan"
    if abs(v) >= 1e5 or (v == int(v) and abs(v) >= 100):
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.3f}"
    return f"{v:.4g}"


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# 1. Machine


def matmul_rate(device: torch.device, n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """(best, median) GFLOP/s of an n x n fp32 torch.mm (2 n^3 FLOPs), after one warm-up."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    torch.mm(a, b, out=c)
    sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        sync(device)
        times.append(time.perf_counter() - t)
    flops = 2 * n**3
    return flops / min(times) / 1e9, flops / median(times) / 1e9


def small_matmul_rate(device: torch.device, batch: int, steps: int = 300) -> float:
    """GFLOP/s of just the 9 matmuls of one fwd+bwd step of the 784-128-128-10 MLP at ``batch``.

    The ceiling for a batch-``batch`` training step if nothing but the matmuls cost time.
    """
    dims = [(784, 128), (128, 128), (128, 10)]
    ws = [torch.randn(o, i, device=device) for i, o in dims]
    x = torch.randn(batch, 784, device=device)

    def step():
        h, hs = x, []
        for w in ws:  # forward: h @ W^T
            hs.append(h)
            h = h @ w.t()
        g = h
        for w, hin in zip(reversed(ws), reversed(hs), strict=True):  # backward: dW = g^T h, dh = g W
            _ = g.t() @ hin
            g = g @ w

    for _ in range(20):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    secs = (time.perf_counter() - t) / steps
    flops = sum(6 * batch * i * o for i, o in dims)  # slightly over: dh of layer 1 is unused here too
    return flops / secs / 1e9


# --------------------------------------------------------------------------------------------
# 2. Tutorial loop vs project loop


def tutorial_train(loader, model, loss_fn, optimizer, device) -> float:
    """The PyTorch quickstart's train loop, with loss.item() every step."""
    model.train()
    total = 0.0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += loss.item()
    return total / len(loader)


def tutorial_test(loader, model, loss_fn, device) -> tuple[float, float]:
    """The quickstart's test loop: (mean loss per batch, accuracy)."""
    size, num_batches = len(loader.dataset), len(loader)
    model.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return test_loss / num_batches, correct / size


def linear_weight_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def project_optimizer(params) -> torch.optim.Optimizer:
    """The optimizer exactly as run.py builds it from conf/ (conf/optimizer/adam.yaml: fused Adam)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config")
    return instantiate(cfg.optimizer)(params)


def compare_loops(args, device: torch.device, res: Results) -> None:
    from torch.utils.data import DataLoader
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    from actcompare import diagnostics as diag
    from actcompare.data import load_mnist
    from actcompare.experiment import PROBE_SIZE
    from actcompare.model import NeuralNetwork
    from actcompare.train import test, train

    sec = "tutorial vs project loop"
    print(
        f"\n== {sec}: {args.epochs} epochs x seeds {args.seeds}, batch {args.batch_size}, interleaved per epoch ==",
        flush=True,
    )

    t = time.perf_counter()
    train_ds = MNIST(root=args.data_root, train=True, download=False, transform=ToTensor())
    test_ds = MNIST(root=args.data_root, train=False, download=False, transform=ToTensor())
    t_tut_load = time.perf_counter() - t
    t = time.perf_counter()
    data = load_mnist(args.data_root, device)
    sync(device)
    t_proj_load = time.perf_counter() - t
    n_train = len(data.train)
    probe_x, probe_y = data.test.x[:PROBE_SIZE], data.test.y[:PROBE_SIZE]

    times = {k: [] for k in ("tut_train", "tut_test", "proj_train", "proj_test", "probe")}
    acc = {"tut": [], "proj": []}
    params = None
    for seed in args.seeds:
        torch.manual_seed(seed)
        tut_model = NeuralNetwork(activation=nn.ReLU).to(device)
        torch.manual_seed(seed)
        proj_model = NeuralNetwork(activation=nn.ReLU).to(device)  # same initial weights
        params = linear_weight_params(proj_model)
        tut_opt = torch.optim.Adam(tut_model.parameters(), lr=1e-3)
        proj_opt = project_optimizer(proj_model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        train_dl = DataLoader(
            train_ds, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        test_dl = DataLoader(test_ds, batch_size=args.batch_size)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(1, args.epochs + 1):
            # A: tutorial
            t0 = time.perf_counter()
            tutorial_train(train_dl, tut_model, loss_fn, tut_opt, device)
            sync(device)
            t1 = time.perf_counter()
            _, tut_acc = tutorial_test(test_dl, tut_model, loss_fn, device)
            t2 = time.perf_counter()
            # B: project (+ the diagnostics probe experiment.py runs after every epoch)
            fit = train(proj_model, data.train.x, data.train.y, proj_opt, args.batch_size, gen)
            sync(device)
            t3 = time.perf_counter()
            ev = test(proj_model, data.test.x, data.test.y)
            sync(device)
            t4 = time.perf_counter()
            diag.probe(proj_model, probe_x, probe_y)
            sync(device)
            t5 = time.perf_counter()
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                times[k].append(v)
            print(
                f"  seed {seed} epoch {epoch}: tutorial {t1 - t0:6.2f}+{t2 - t1:5.2f} s "
                f"acc {100 * tut_acc:.2f} % | project {t3 - t2:6.2f}+{t4 - t3:5.2f} s "
                f"(+probe {1000 * (t5 - t4):.1f} ms) acc {100 * ev.accuracy:.2f} % "
                f"train loss {fit.loss:.4f}",
                flush=True,
            )
        acc["tut"].append(tut_acc)
        acc["proj"].append(ev.accuracy)

    tut_tr, proj_tr = median(times["tut_train"]), median(times["proj_train"])
    tut_all = median([a + b for a, b in zip(times["tut_train"], times["tut_test"], strict=True)])
    proj_all = median([a + b for a, b in zip(times["proj_train"], times["proj_test"], strict=True)])
    ratio_tr = [a / b for a, b in zip(times["tut_train"], times["proj_train"], strict=True)]
    res.add(sec, "data_load_tutorial", t_tut_load, "s", "torchvision MNIST() x2, once")
    res.add(sec, "data_load_project", t_proj_load, "s", "load_mnist(), once")
    res.add(sec, "epoch_train_tutorial", tut_tr, "s", "median over epochs x seeds")
    res.add(sec, "epoch_train_project", proj_tr, "s", "median over epochs x seeds")
    res.add(sec, "epoch_train_test_tutorial", tut_all, "s", "train + test, median")
    res.add(sec, "epoch_train_test_project", proj_all, "s", "train + test, median")
    res.add(sec, "test_pass_tutorial", median(times["tut_test"]), "s", "DataLoader batch 64")
    res.add(sec, "test_pass_project", median(times["proj_test"]), "s", "predict() batch 8192")
    res.add(
        sec,
        "ratio_train_tutorial_over_project",
        tut_tr / proj_tr,
        "x",
        f"paired per-epoch ratios {min(ratio_tr):.2f}..{max(ratio_tr):.2f}",
    )
    res.add(sec, "ratio_train_test_tutorial_over_project", tut_all / proj_all, "x")
    res.add(sec, "samples_per_s_train_tutorial", n_train / tut_tr, "samples/s")
    res.add(sec, "samples_per_s_train_project", n_train / proj_tr, "samples/s")
    flops = 6 * params * n_train
    gflops = flops / proj_tr / 1e9
    res.add(
        sec,
        "flops_per_epoch",
        flops / 1e9,
        "GFLOP",
        f"6 x {params} linear-weight params x {n_train} samples (fwd 2 + bwd 4 FLOPs/weight/sample)",
    )
    res.add(sec, "gflops_train_project", gflops, "GFLOP/s")
    res.add(sec, "gflops_train_tutorial", flops / tut_tr / 1e9, "GFLOP/s")
    res.add(
        sec, "fraction_of_mm_peak_project", 100 * gflops / res.mm_best, "%", f"of the best {res.mm_n}^2 torch.mm rate"
    )
    res.add(
        sec,
        "fraction_of_small_mm_project",
        100 * gflops / res.mm_small,
        "%",
        f"of the batch-{args.batch_size} matmul-only rate",
    )
    for name, key in (("tutorial", "tut"), ("project", "proj")):
        a = acc[key]
        sd = statistics.stdev(a) if len(a) > 1 else float("nan")
        res.add(
            sec,
            f"test_acc_{name}",
            100 * statistics.fmean(a),
            "%",
            f"mean over seeds {args.seeds} (sd {100 * sd:.2f}); per seed " + ", ".join(f"{100 * v:.2f}" for v in a),
        )
    res.add(
        sec,
        "test_acc_diff_project_minus_tutorial",
        100 * (statistics.fmean(acc["proj"]) - statistics.fmean(acc["tut"])),
        "pp",
    )

    # 3. diagnostics on vs off: the probe measured inside each epoch above, plus a tight repeat.
    sec = "diagnostics"
    print(f"\n== {sec} ==", flush=True)
    reps = []
    for _ in range(20):
        t = time.perf_counter()
        diag.probe(proj_model, probe_x, probe_y)
        sync(device)
        reps.append(time.perf_counter() - t)
    probe_s = median(times["probe"])
    res.add(sec, "probe_per_epoch", 1000 * probe_s, "ms", f"median of the {len(times['probe'])} epochs")
    res.add(sec, "probe_repeated", 1000 * median(reps), "ms", "median of 20 back-to-back calls")
    res.add(sec, "epoch_diagnostics_off", proj_all, "s", "train + test")
    res.add(
        sec,
        "epoch_diagnostics_on",
        median([a + b + c for a, b, c in zip(times["proj_train"], times["proj_test"], times["probe"], strict=True)]),
        "s",
        "train + test + probe",
    )
    res.add(sec, "diagnostics_overhead", 100 * probe_s / proj_all, "%", "probe / (train + test)")


# --------------------------------------------------------------------------------------------
# 4./5. Subprocesses


TUTORIAL_SCRIPT = '''
"""Standalone tutorial-style script: 4 activations x E epochs, sequential, DataLoader + ToTensor."""
import sys
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

root, epochs, batch_size, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
training_data = datasets.MNIST(root=root, train=True, download=False, transform=ToTensor())
test_data = datasets.MNIST(root=root, train=False, download=False, transform=ToTensor())
train_dataloader = DataLoader(training_data, batch_size=batch_size, shuffle=True)
test_dataloader = DataLoader(test_data, batch_size=batch_size)


class NeuralNetwork(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 128), act(), nn.Linear(128, 128), act(), nn.Linear(128, 10)
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


def train(dataloader, model, loss_fn, optimizer):
    model.train()
    for X, y in dataloader:
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss = loss.item()


def test(dataloader, model, loss_fn):
    size, num_batches = len(dataloader.dataset), len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return test_loss / num_batches, correct / size


for name, act in [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)]:
    torch.manual_seed(0)
    model = NeuralNetwork(act).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for t in range(epochs):
        train(train_dataloader, model, loss_fn, optimizer)
        loss, acc = test(test_dataloader, model, loss_fn)
    print(f"{name}: test accuracy {100 * acc:.2f} %, loss {loss:.4f}", flush=True)
'''


# Run in a fresh small interpreter that launches the real command: a child forked straight from
# this (>1 GB) benchmark process would carry our resident pages into its ru_maxrss until exec.
RUSAGE_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "wall": wall, "cpu": r.ru_utime + r.ru_stime, "maxrss_kib": r.ru_maxrss}, f)
sys.exit(rc)
"""


def run_child(cmd: list[str], env: dict, log: Path) -> tuple[float, float, float, int]:
    """(wall s, cpu s, peak RSS MiB, exit code) of one command; its output goes to ``log``.

    wall: process start to exit of the command itself. Peak RSS: ru_maxrss of the command and
    the descendants it waited for (loky workers included), in MiB.
    """
    usage = log.with_suffix(".rusage.json")
    with log.open("w") as out:
        # Own session, so an interrupted benchmark can end the whole tree it started (and only it).
        proc = subprocess.Popen(
            [sys.executable, "-c", RUSAGE_WRAPPER, str(usage), *cmd],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    if rc != 0 or not usage.exists():
        tail = log.read_text().strip().splitlines()[-15:]
        print(f"  ! exit {rc}: {' '.join(cmd)}\n    " + "\n    ".join(tail), flush=True)
        return float("nan"), float("nan"), float("nan"), rc or 1
    u = json.loads(usage.read_text())
    return u["wall"], u["cpu"], u["maxrss_kib"] / 1024, u["rc"]


class CpuMeter:
    """Share of the machine's CPU used by *other* processes while the block ran (contention).

    System busy CPU-seconds (psutil.cpu_times) minus this process's and its reaped children's,
    over wall seconds x cores. Near 0 %: the timings had the machine to themselves.
    """

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), _busy_cpu(), _own_cpu()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t
        other = (_busy_cpu() - self.busy) - (_own_cpu() - self.own)
        self.share = max(0.0, 100 * other / (wall * (os.cpu_count() or 1))) if wall > 0 else float("nan")


def _busy_cpu() -> float:
    try:
        import psutil
    except ImportError:
        return float("nan")
    c = psutil.cpu_times()
    return c.user + c.system + getattr(c, "nice", 0) + getattr(c, "irq", 0) + getattr(c, "softirq", 0)


def _own_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ablations(args, device: torch.device, res: Results) -> None:
    """Per-epoch training time of the project's loop with each optimizer implementation (and
    torch.compile), interleaved epoch by epoch so machine drift hits all variants alike."""
    from actcompare.data import load_mnist
    from actcompare.model import NeuralNetwork
    from actcompare.train import train

    sec = "ablations"
    print(f"\n== {sec}: {args.epochs} epochs each, interleaved ==", flush=True)
    data = load_mnist(args.data_root, device)
    variants = {"adam_fused": {"fused": True}, "adam_foreach": {"foreach": True}, "adam_plain": {"foreach": False}}
    if args.compile:
        variants["adam_fused_compiled"] = {"fused": True}
    runs = {}
    for name, kwargs in variants.items():
        torch.manual_seed(0)
        model = NeuralNetwork(activation=nn.ReLU).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **kwargs)
        net = torch.compile(model) if name.endswith("compiled") else model
        runs[name] = (net, optimizer, torch.Generator().manual_seed(0), [])
    for epoch in range(1, args.epochs + 1):
        for name, (net, optimizer, gen, times) in runs.items():
            t = time.perf_counter()
            train(net, data.train.x, data.train.y, optimizer, args.batch_size, gen)
            sync(device)
            times.append(time.perf_counter() - t)
            print(f"  epoch {epoch} {name}: {times[-1]:.3f} s", flush=True)
    steady = {name: median(times[1:] or times) for name, (*_, times) in runs.items()}  # epoch 1 warms up
    for name, (*_, times) in runs.items():
        if name.endswith("compiled"):
            res.add(sec, "first_epoch_compiled", times[0], "s", "includes torch.compile's compiling")
        res.add(sec, f"epoch_train_{name}", steady[name], "s", "median of epochs 2..")
        if name != "adam_fused":
            res.add(sec, f"ratio_{name}_over_adam_fused", steady[name] / steady["adam_fused"], "x",
                    "> 1: fused is faster")  # fmt: skip


def profile_steps(args, device: torch.device, res: Results, steps: int = 300) -> None:
    """torch.profiler over ``steps`` training steps of the project's loop: self time per operator,
    and the shares of the matmuls, the optimizer step and the batch gather."""
    from torch.profiler import ProfilerActivity, profile

    from actcompare.data import load_mnist
    from actcompare.model import NeuralNetwork
    from actcompare.train import train

    sec = "profile"
    print(f"\n== {sec}: {steps} training steps, batch {args.batch_size} ==", flush=True)
    data = load_mnist(args.data_root, device)
    torch.manual_seed(0)
    model = NeuralNetwork(activation=nn.ReLU).to(device)
    optimizer = project_optimizer(model.parameters())
    n = steps * args.batch_size
    x, y, gen = data.train.x[:n], data.train.y[:n], torch.Generator().manual_seed(0)
    train(model, x, y, optimizer, args.batch_size, gen)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train(model, x, y, optimizer, args.batch_size, gen)
        sync(device)
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    total = sum(e.self_cpu_time_total for e in events)

    def share(*names: str) -> float:
        return 100 * sum(e.self_cpu_time_total for e in events if any(k in e.key for k in names)) / total

    res.add(sec, "matmul_share", share("aten::mm", "aten::addmm"), "%", "self CPU time of mm + addmm")
    res.add(sec, "optimizer_share", share("Optimizer.step", "_fused_adam", "Optimizer.zero_grad"), "%",
            "optimizer.step() incl. its Python, and zero_grad")  # fmt: skip
    res.add(sec, "gather_share", share("aten::index_select"), "%", "batch gather")
    res.add(sec, "step_us", total / steps, "us", "self CPU time per step while profiled")


def subprocess_benchmarks(args, res: Results, tmp: Path) -> None:
    py = sys.executable
    env = {**os.environ, "MNIST_ROOT": str(args.data_root), "HYDRA_FULL_ERROR": "1"}
    common = [f"batch_size={args.batch_size}"] + ([f"device={args.device}"] if args.device != "auto" else [])
    sweep = ["run.py", "-m", "activation=" + ",".join(ACTIVATIONS), f"epochs={args.sweep_epochs}", *common]

    sec = "startup"
    print(f"\n== {sec} ==", flush=True)
    wall, _, _, _ = run_child([py, "-c", "import torch, torchvision"], env, tmp / "import.log")
    res.add(sec, "python_import_torch_torchvision", wall, "s", "python -c 'import torch, torchvision'")

    if not args.skip_sweep:
        sec = f"sweep: 4 activations x {args.sweep_epochs} epochs, end to end"
        print(f"\n== {sec} ({args.sweep_rounds} round(s), order rotated per round) ==", flush=True)
        script = tmp / "tutorial_sweep.py"
        script.write_text(TUTORIAL_SCRIPT)
        tutorial = [py, str(script), str(args.data_root), str(args.sweep_epochs), str(args.batch_size), args.device]
        joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        variants = {
            "tutorial_script": lambda r: tutorial,
            "run_py_basic": lambda r: [py, *sweep, f"hydra.sweep.dir={tmp / f'sweep_basic_{r}'}"],
            "run_py_joblib2": lambda r: [py, *sweep, *joblib, f"hydra.sweep.dir={tmp / f'sweep_joblib_{r}'}"],
        }
        names = list(variants)
        walls: dict[str, list[float]] = {n: [] for n in names}
        notes: dict[str, list[str]] = {n: [] for n in names}
        for r in range(args.sweep_rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                cmd = variants[name](r)
                print(f"  round {r + 1} {name}: {' '.join(cmd[1:])}", flush=True)
                with CpuMeter() as meter:
                    wall, cpu, rss, rc = run_child(cmd, env, tmp / f"{name}_{r}.log")
                walls[name].append(wall if rc == 0 else float("nan"))
                notes[name].append(
                    f"{wall:.1f} s (cpu {cpu:.0f} s, RSS {rss:.0f} MiB, other procs {meter.share:.0f} %)"
                )
                print(f"    {notes[name][-1]}", flush=True)
                if name.startswith("run_py") and not (Path(cmd[-1].split("=", 1)[1]) / "report.md").exists():
                    print("  ! the sweep wrote no report.md", flush=True)
        best = {n: min(walls[n]) for n in names}
        for n in names:
            res.add(sec, f"wall_{n}", best[n], "s", "min over rounds; runs: " + "; ".join(notes[n]))
        res.add(sec, "ratio_tutorial_over_run_py_basic", best["tutorial_script"] / best["run_py_basic"], "x")
        res.add(sec, "ratio_tutorial_over_run_py_joblib2", best["tutorial_script"] / best["run_py_joblib2"], "x")
        res.add(sec, "ratio_basic_over_joblib2", best["run_py_basic"] / best["run_py_joblib2"], "x")

    sec = "memory"
    print(f"\n== {sec} ==", flush=True)
    cmd = [py, "run.py", "epochs=1", *common, f"hydra.run.dir={tmp / 'rss_run'}"]
    wall, cpu, rss, rc = run_child(cmd, env, tmp / "rss_run.log")
    res.add(sec, "peak_rss_run_py_epochs1", rss, "MiB", "ru_maxrss of the run.py process")
    res.add(sec, "wall_run_py_epochs1", wall, "s", f"cpu {cpu:.1f} s")


# --------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per loop and per sweep run (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for the loop comparison (default 0,1,2)")
    p.add_argument(
        "--data-root",
        default=os.environ.get("MNIST_ROOT", "./data"),
        help="folder holding MNIST/raw (default $MNIST_ROOT or ./data)",
    )
    p.add_argument("--skip-sweep", action="store_true", help="skip the end-to-end sweep timings")
    p.add_argument("--ablations", action="store_true", help="also time fused/foreach/plain Adam side by side")
    p.add_argument("--compile", action="store_true", help="with --ablations: also time torch.compile(model)")
    p.add_argument("--profile", action="store_true", help="also profile 300 training steps by operator")
    p.add_argument(
        "--sweep-rounds",
        type=int,
        default=1,
        help="repeat the 3 sweep timings, order rotated; min is reported (default 1)",
    )
    p.add_argument("--sweep-epochs", type=int, help="epochs per sweep run (default --epochs)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the subprocesses' run folders and logs")
    p.add_argument("--out", default="outputs/benchmark/benchmark.csv", help="CSV of all figures")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # a SIGTERM (e.g. timeout) still cleans up
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.sweep_epochs = args.sweep_epochs or args.epochs
    args.data_root = str(Path(args.data_root).expanduser().resolve())
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            p.error("--device cuda: CUDA is not available")
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out

    train_py = REPO / "src" / "actcompare" / "train.py"
    train_sha = hashlib.sha256(train_py.read_bytes()).hexdigest()[:12]
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores; train.py sha256 {train_sha}; data {args.data_root}",
        flush=True,
    )

    res = Results()
    t_all = time.perf_counter()
    sec = "machine"
    print(f"\n== {sec} ==", flush=True)
    res.mm_n = 2048
    res.mm_best, mm_med = matmul_rate(device, res.mm_n)
    res.add(sec, "torch_threads", torch.get_num_threads(), "threads")
    res.add(sec, "matmul_2048_best", res.mm_best, "GFLOP/s", "fp32 torch.mm, 2 n^3 FLOPs, best of 5")
    res.add(sec, "matmul_2048_median", mm_med, "GFLOP/s", "median of 5")
    res.mm_small = small_matmul_rate(device, args.batch_size)
    res.add(
        sec,
        f"matmul_mlp_batch{args.batch_size}",
        res.mm_small,
        "GFLOP/s",
        "the 9 fwd+bwd matmuls of one MLP step alone",
    )

    with CpuMeter() as meter:
        compare_loops(args, device, res)
    res.add(
        "diagnostics",
        "other_processes_cpu_during_loops",
        meter.share,
        "%",
        "CPU used by other processes while sections 2-3 ran (contention)",
    )
    if args.ablations:
        ablations(args, device, res)
    if args.profile:
        profile_steps(args, device, res)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=out.parent))
    try:
        subprocess_benchmarks(args, res, tmp)
    finally:
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res.add("total", "benchmark_wall", time.perf_counter() - t_all, "s")

    print("\n" + "=" * 100)
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, epochs {args.epochs}, "
        f"batch {args.batch_size}, seeds {args.seeds}, train.py {train_sha}"
    )
    print(res.table())
    res.write_csv(out)
    print(f"\nCSV: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
