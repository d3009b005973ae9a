"""How fast is this project's training, against the PyTorch tutorial's and against itself, and why.

Issue 9's speed table (CPU; one invocation, ~15 min on a quiet 2-core machine):

    MNIST_ROOT=/work/shared/data .venv/bin/python scripts/benchmark.py --epochs 10 --skip-loops

and on a GPU (~2-3 min; the tutorial script is left out, its DataLoader would take many minutes,
and the per-run engine trains 2 of the 12 models, which is enough for its per model-epoch time):

    python scripts/benchmark.py --device cuda --epochs 10 --skip-loops --single-models 2 \\
        --sweep-runs 12 --sweep-variants fused

Other questions:

    export MNIST_ROOT=/work/shared/data
    .venv/bin/python scripts/benchmark.py --epochs 3 --sweep-runs 4
    .venv/bin/python scripts/benchmark.py --epochs 10 --skip-sweep --skip-engines
    .venv/bin/python scripts/benchmark.py --epochs 3 --skip-sweep --skip-engines --ablations --compile
    .venv/bin/python scripts/benchmark.py --epochs 1 --seeds 0 --skip-sweep --skip-engines --profile

All measurements run in this one process (or its subprocesses), in this order, so they share the
machine's state:
1. the fp32 matmul rate of a large ``torch.mm`` (the machine's attainable compute), and a check
   that this script's recipe (Adam, activations, network) is what run.py composes from conf/;
2. unless --skip-loops: tutorial loop (torchvision MNIST + ToTensor + DataLoader, ``loss.item()``
   every step) against this project's loop (``load_mnist`` once, then ``train`` + ``test`` per
   epoch), interleaved A B A B epoch by epoch, same network / batch size / Adam / epochs / seed;
   per-epoch medians, samples/s, achieved GFLOP/s and final test accuracy (mean over --seeds),
   and the per-epoch cost of ``actcompare.diagnostics.probe`` (diagnostics on vs off);
3. unless --skip-engines: the stacked engine against the per-run engine on the default
   comparison's models (4 activations x --fused-seeds), both built by
   ``actcompare.engines.make_engine`` on ``load_mnist``'s full MNIST with the config's fused Adam,
   interleaved epoch by epoch (stacked, per-run, per-run, stacked, ...); seconds per model-epoch,
   their ratio, and both engines' final test accuracies (the speed must not change the results);
4. with --ablations: the choices behind the loop, interleaved epoch by epoch on the same data:
   fused Adam (the project's) against foreach and plain per-tensor Adam, and with --compile also
   ``torch.compile(model)`` (its first epoch includes compiling);
5. with --profile: where a training step's time goes (torch.profiler over 300 steps, by operator);
6. unless --skip-sweep: for each --sweep-runs N (4 activations x N/4 seeds), wall time and peak
   RSS of the sweep through run.py (the default fused launcher, ``hydra/launcher=basic``, joblib
   with 2 jobs) next to a standalone tutorial-style script doing the same N trainings;
7. peak RSS of one ``run.py epochs=1`` process;
8. the matmul rate again (drift), then issue 9's speed table: figure | measured | target | met?,
   with the matmul rates beside it.
Every figure is printed and written to --out as CSV rows (name, value, unit); the speed table
also to <out>_targets.csv. Timings on a shared machine are noisy: compare figures from the same
invocation only (the "other procs" notes say how busy the machine was).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's code, also without `pip install -e .`
CONF_DIR = REPO / "conf"

import torch  # noqa: E402
from torch import nn  # noqa: E402

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu")
# The default comparison's recipe, as run.py composes it from the packaged config (check_config()
# compares these with conf/: optimizer/adam.yaml, activation/*.yaml, model/mlp.yaml).
ADAM = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, fused=True)
ACTIVATION_FACTORIES = {
    "relu": functools.partial(nn.ReLU),
    "sigmoid": functools.partial(nn.Sigmoid),
    "tanh": functools.partial(nn.Tanh),
    "leaky_relu": functools.partial(nn.LeakyReLU, negative_slope=0.01),
}
HIDDEN_SIZES = (128, 128)
INIT = "default"
SWEEP_VARIANTS = {  # --sweep-variants name -> row name
    "tutorial": "tutorial_script",
    "fused": "run_py_fused",
    "basic": "run_py_basic",
    "joblib2": "run_py_joblib2",
}


# --------------------------------------------------------------------------------------------
# Results


class Results:
    """Rows (section, name, value, unit, note); printed as a table and written as CSV."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, str, str]] = []
        self.values: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.mm_n, self.mm_best, self.mm_small, self.mm_end = 0, float("nan"), float("nan"), float("nan")

    def add(self, section: str, name: str, value: float, unit: str, note: str = "") -> float:
        self.rows.append((section, name, float(value), unit, note))
        self.values[name], self.notes[name] = float(value), note
        print(f"  {name} = {_fmt(value)} {unit}" + (f"  ({note})" if note else ""), flush=True)
        return value

    def get(self, name: str) -> float:
        """The value of figure ``name``, NaN when it was not measured."""
        return self.values.get(name, float("nan"))

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


def _plain(value):
    """A config value comparable with a Python literal: sequences as tuples, numbers as floats."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return tuple(_plain(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _partial_key(p) -> tuple:
    return getattr(p, "func", p), tuple(p.args), tuple(sorted((k, _plain(v)) for k, v in p.keywords.items()))


def check_config(batch_size: int) -> list[str]:
    """Where this script's recipe (ADAM, ACTIVATION_FACTORIES, HIDDEN_SIZES, INIT, --batch-size)
    differs from what run.py composes out of the packaged config; [] when it does not."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from actcompare.schema import hidden_sizes  # importing it registers config_schema

    problems = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="benchmark"):
        for name, factory in ACTIVATION_FACTORIES.items():
            cfg = compose(config_name="config", overrides=[f"activation={name}"])
            theirs = instantiate(cfg.activation.module, _partial_=True)
            if _partial_key(theirs) != _partial_key(factory):
                problems.append(f"activation={name}: config builds {theirs}, this script {factory}")
        theirs = instantiate(cfg.optimizer)
        if _partial_key(theirs) != _partial_key(ADAM):
            problems.append(f"optimizer: config builds {theirs}, this script {ADAM}")
        init = getattr(cfg.model.init, "value", cfg.model.init)  # an Enum in the typed config
        if tuple(hidden_sizes(cfg.model)) != HIDDEN_SIZES or init != INIT:
            problems.append(
                f"model: config {list(hidden_sizes(cfg.model))} init {init}, "
                f"this script {list(HIDDEN_SIZES)} init {INIT}"
            )
        if int(cfg.batch_size) != batch_size:
            problems.append(f"batch size: config {cfg.batch_size}, --batch-size {batch_size}")
    return problems


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
# 3. Stacked engine vs per-run engine


def compare_engines(args, device: torch.device, res: Results) -> None:
    """Issue 9's first figure: seconds per model-epoch of the stacked engine against the per-run
    engine, on the same models, data and optimizer, interleaved epoch by epoch in this process.

    Both come from ``make_engine`` exactly as ``experiment.run_group`` builds them; models are in
    the engines' layout (m = seed index * 4 + activation index). The per-run engines train the
    first --single-models of them (all by default), one after another, each a whole epoch.
    """
    from actcompare.data import load_mnist
    from actcompare.engines import Variant, make_engine

    names = list(ACTIVATION_FACTORIES)
    variants = [Variant(ACTIVATION_FACTORIES[a], INIT) for a in names]
    seeds, V = args.fused_seeds, len(names)
    M = len(seeds) * V
    K = min(args.single_models or M, M)
    labels = [f"{names[m % V]}/{seeds[m // V]}" for m in range(M)]
    sec = "engines: stacked vs per-run"
    print(
        f"\n== {sec}: {M} models ({V} activations x seeds {seeds}), per-run engine on {K} of them, "
        f"{args.fused_epochs} epochs, batch {args.batch_size}, interleaved per epoch ==",
        flush=True,
    )
    data = load_mnist(args.data_root, device)
    x, y, n_train = data.train.x, data.train.y, len(data.train)
    tx, ty = data.test.x, data.test.y

    t = time.perf_counter()
    stacked = make_engine("stacked", variants, seeds, HIDDEN_SIZES, ADAM, args.batch_size, x, y)
    sync(device)
    t_build = time.perf_counter() - t
    singles = [
        make_engine("single", [variants[m % V]], [seeds[m // V]], HIDDEN_SIZES, ADAM, args.batch_size, x, y)
        for m in range(K)
    ]
    graphed = bool(getattr(stacked, "graphed", False))

    t_st, e_st, t_si, e_si = [], [], [], []  # per epoch: train / evaluate seconds, all models together
    st_loss = st_acc = si_loss = si_acc = None
    for epoch in range(1, args.fused_epochs + 1):
        # Alternate who goes first (S P P S ...), so drift within an epoch pair hits both alike.
        for which in ("stacked", "single") if epoch % 2 else ("single", "stacked"):
            if which == "stacked":
                t0 = time.perf_counter()
                st_train_loss, _ = stacked.train_epoch()
                sync(device)
                t1 = time.perf_counter()
                st_loss, st_acc = stacked.evaluate(tx, ty)
                sync(device)
                t_st.append(t1 - t0)
                e_st.append(time.perf_counter() - t1)
            else:
                tr = ev = 0.0
                si_loss, si_acc, si_train_loss = [], [], []
                for engine in singles:
                    t0 = time.perf_counter()
                    si_train_loss += engine.train_epoch()[0]
                    sync(device)
                    t1 = time.perf_counter()
                    loss, acc = engine.evaluate(tx, ty)
                    sync(device)
                    tr, ev = tr + t1 - t0, ev + time.perf_counter() - t1
                    si_loss += loss
                    si_acc += acc
                t_si.append(tr)
                e_si.append(ev)
        print(
            f"  epoch {epoch}: stacked {t_st[-1]:6.2f}+{e_st[-1]:4.2f} s for {M} = {t_st[-1] / M:.4f} s/model-epoch"
            f" | per-run {t_si[-1]:6.2f}+{e_si[-1]:4.2f} s for {K} = {t_si[-1] / K:.4f} s/model-epoch"
            f" | ratio {(t_si[-1] / K) / (t_st[-1] / M):.2f}x | stacked mean test acc "
            f"{100 * statistics.fmean(st_acc):.2f} %",
            flush=True,
        )

    st_pme = [s / M for s in t_st]
    si_pme = [s / K for s in t_si]
    st_all = median([(a + b) / M for a, b in zip(t_st, e_st, strict=True)])
    si_all = median([(a + b) / K for a, b in zip(t_si, e_si, strict=True)])
    paired = [b / a for a, b in zip(st_pme, si_pme, strict=True)]
    res.add(sec, "engines_models", M, "models", f"{V} activations x seeds {seeds}")
    res.add(sec, "engines_per_run_models", K, "models", "the per-run engine trains " + ", ".join(labels[:K]))
    res.add(sec, "engines_epochs", args.fused_epochs, "epochs")
    res.add(sec, "engines_build_stacked", t_build, "s", "make_engine('stacked', ...), once")
    res.add(
        sec,
        "engines_first_epoch_stacked",
        t_st[0],
        "s",
        "training, all models" + ("; includes capturing the CUDA graph" if graphed else ""),
    )
    res.add(
        sec,
        "engines_train_per_model_epoch_stacked",
        median(st_pme),
        "s",
        f"median over epochs of train_epoch() / {M}; CUDA graph: {'yes' if graphed else 'no'}",
    )
    res.add(
        sec,
        "engines_train_per_model_epoch_single",
        median(si_pme),
        "s",
        f"median over epochs of the {K} per-run train_epoch() / {K}",
    )
    res.add(
        sec,
        "engines_ratio_single_over_stacked",
        median(si_pme) / median(st_pme),
        "x",
        f"per model-epoch, training; paired per-epoch ratios {min(paired):.2f}..{max(paired):.2f}",
    )
    res.add(sec, "engines_train_eval_per_model_epoch_stacked", st_all, "s", "train_epoch() + evaluate(test), median")
    res.add(sec, "engines_train_eval_per_model_epoch_single", si_all, "s", "train_epoch() + evaluate(test), median")
    res.add(sec, "engines_ratio_train_eval_single_over_stacked", si_all / st_all, "x")
    params = sum(i * o for i, o in zip((784, *HIDDEN_SIZES), (*HIDDEN_SIZES, 10), strict=True))
    gflops = 6 * params * n_train / median(st_pme) / 1e9
    res.add(
        sec, "engines_gflops_stacked", gflops, "GFLOP/s", f"6 x {params} weights x {n_train} samples per model-epoch"
    )
    res.add(sec, "engines_gflops_single", 6 * params * n_train / median(si_pme) / 1e9, "GFLOP/s")
    res.add(
        sec,
        "engines_fraction_of_mm_peak_stacked",
        100 * gflops / res.mm_best,
        "%",
        f"of the best {res.mm_n}^2 torch.mm rate",
    )

    # The speed must not be bought with different results: both engines train the same models.
    assert st_acc is not None and si_acc is not None
    for v, name in enumerate(names):
        accs = [st_acc[s * V + v] for s in range(len(seeds))]
        res.add(
            sec,
            f"engines_test_acc_stacked_{name}",
            100 * statistics.fmean(accs),
            "%",
            f"after {args.fused_epochs} epochs, mean over seeds; per seed " + ", ".join(f"{100 * a:.2f}" for a in accs),
        )
    res.add(sec, "engines_test_acc_stacked_mean", 100 * statistics.fmean(st_acc), "%", f"all {M} models")
    diff = [abs(st_acc[m] - si_acc[m]) for m in range(K)]
    worst = max(range(K), key=lambda m: diff[m])
    res.add(
        sec,
        "engines_test_acc_max_abs_diff",
        100 * diff[worst],
        "pp",
        f"stacked vs per-run, over the {K} models both trained (worst {labels[worst]}: "
        f"{100 * st_acc[worst]:.2f} vs {100 * si_acc[worst]:.2f} %)",
    )
    rel = [abs(st_train_loss[m] - si_train_loss[m]) / max(abs(si_train_loss[m]), 1e-12) for m in range(K)]
    res.add(
        sec,
        "engines_train_loss_max_rel_diff",
        max(rel),
        "",
        f"last epoch's mean training loss, stacked vs per-run, over {K} models",
    )
    nonfinite = [labels[m] for m in range(M) if not math.isfinite(st_loss[m])]
    if nonfinite:
        print(f"  ! stacked engine: non-finite test loss for {', '.join(nonfinite)}", flush=True)


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
    """The optimizer exactly as run.py builds it from the packaged optimizer/adam.yaml (fused Adam)."""
    return ADAM(params)


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

    # Diagnostics on vs off: the probe measured inside each epoch above, plus a tight repeat.
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
# 6./7. Subprocesses


TUTORIAL_SCRIPT = '''
"""Standalone tutorial-style script: seeds x 4 activations x E epochs, sequential, DataLoader + ToTensor.

    python tutorial_sweep.py ROOT EPOCHS BATCH_SIZE DEVICE [SEEDS, e.g. 0,1,2; default 0]
"""
import sys
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

root, epochs, batch_size, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
seeds = [int(s) for s in (sys.argv[5] if len(sys.argv) > 5 else "0").split(",")]
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


for seed in seeds:
    for name, act in [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)]:
        torch.manual_seed(seed)
        model = NeuralNetwork(act).to(device)
        loss_fn = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for t in range(epochs):
            train(train_dataloader, model, loss_fn, optimizer)
            loss, acc = test(test_dataloader, model, loss_fn)
        print(f"{name} seed {seed}: test accuracy {100 * acc:.2f} %, loss {loss:.4f}", flush=True)
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


def sweep_command(name: str, n_runs: int, r: int, args, tmp: Path, script: Path) -> list[str]:
    """The command of sweep variant ``name`` (a SWEEP_VARIANTS row name) for ``n_runs`` runs,
    round ``r``: 4 activations x seeds 0..n_runs/4-1 (the default seed 0 when that is one seed)."""
    py = sys.executable
    seeds = ",".join(str(s) for s in range(n_runs // len(ACTIVATIONS)))
    if name == "tutorial_script":
        return [py, str(script), str(args.data_root), str(args.sweep_epochs), str(args.batch_size), args.device, seeds]
    sweep = [
        py,
        "run.py",
        "-m",
        "activation=" + ",".join(ACTIVATIONS),
        *([f"seed={seeds}"] if "," in seeds else []),
        f"epochs={args.sweep_epochs}",
        f"batch_size={args.batch_size}",
        *([f"device={args.device}"] if args.device != "auto" else []),
    ]
    launcher = {
        "run_py_fused": [],  # the default: hydra/launcher=fused
        "run_py_basic": ["hydra/launcher=basic"],
        "run_py_joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    }[name]
    # hydra.sweep.dir last: check_sweep() reads it back from there.
    return [*sweep, *launcher, f"hydra.sweep.dir={tmp / f'sweep{n_runs}_{name}_{r}'}"]


def check_sweep(folder: Path, n_runs: int) -> str:
    """What a run.py sweep left: completed runs, engines, mean final test accuracy; '!' if wrong."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*/run.json"))]
    done = [r for r in records if r.get("status") == "completed"]
    engines = sorted({str(r.get("engine")) for r in records})
    accs = [r["final"]["test_acc"] for r in done if (r.get("final") or {}).get("test_acc") is not None]
    text = f"{len(done)}/{n_runs} completed, engine {'+'.join(engines) or '?'}"
    if accs:
        text += f", mean test acc {100 * statistics.fmean(accs):.2f} %"
    if len(done) != n_runs or not (folder / "report.md").exists():
        text = "! " + text + ("" if (folder / "report.md").exists() else ", no report.md")
    return text


def sweep_benchmarks(args, res: Results, env: dict, tmp: Path) -> None:
    script = tmp / "tutorial_sweep.py"
    script.write_text(TUTORIAL_SCRIPT)
    names = [SWEEP_VARIANTS[v] for v in args.sweep_variants]
    for n_runs in args.sweep_runs:
        seeds = n_runs // len(ACTIVATIONS)
        sec = f"sweep: {n_runs} runs (4 activations x {seeds} seed(s)) x {args.sweep_epochs} epochs, end to end"
        print(f"\n== {sec} ({args.sweep_rounds} round(s), order rotated per round) ==", flush=True)
        walls: dict[str, list[float]] = {n: [] for n in names}
        rss: dict[str, list[float]] = {n: [] for n in names}
        notes: dict[str, list[str]] = {n: [] for n in names}
        for r in range(args.sweep_rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                cmd = sweep_command(name, n_runs, r, args, tmp, script)
                print(f"  round {r + 1} {name}: {' '.join(cmd[1:])}", flush=True)
                with CpuMeter() as meter:
                    wall, cpu, peak, rc = run_child(cmd, env, tmp / f"sweep{n_runs}_{name}_{r}.log")
                walls[name].append(wall if rc == 0 else float("nan"))
                rss[name].append(peak)
                note = f"{wall:.1f} s (cpu {cpu:.0f} s, RSS {peak:.0f} MiB, other procs {meter.share:.0f} %)"
                if name != "tutorial_script":
                    note += "; " + check_sweep(Path(cmd[-1].split("=", 1)[1]), n_runs)
                notes[name].append(note)
                print(f"    {note}", flush=True)
        best = {n: min((w for w in walls[n] if w == w), default=float("nan")) for n in names}  # NaN: failed
        p = f"sweep{n_runs}_"
        for n in names:
            res.add(sec, f"{p}wall_{n}", best[n], "s", "min over rounds; runs: " + "; ".join(notes[n]))
        for n in names:
            peak = max((m for m in rss[n] if m == m), default=float("nan"))
            res.add(sec, f"{p}peak_rss_{n}", peak, "MiB", "ru_maxrss of the largest process, max over rounds")
        for n in names:
            if n != "tutorial_script" and "tutorial_script" in best:
                res.add(sec, f"{p}ratio_tutorial_over_{n}", best["tutorial_script"] / best[n], "x")
        for n in ("run_py_basic", "run_py_joblib2"):
            if n in best and "run_py_fused" in best:
                ratio = best[n] / best["run_py_fused"]
                res.add(sec, f"{p}ratio_{n}_over_run_py_fused", ratio, "x", "> 1: fused is faster")


def subprocess_benchmarks(args, res: Results, tmp: Path) -> None:
    py = sys.executable
    env = {**os.environ, "MNIST_ROOT": str(args.data_root), "HYDRA_FULL_ERROR": "1"}
    common = [f"batch_size={args.batch_size}"] + ([f"device={args.device}"] if args.device != "auto" else [])

    sec = "startup"
    print(f"\n== {sec} ==", flush=True)
    wall, _, _, _ = run_child([py, "-c", "import torch, torchvision"], env, tmp / "import.log")
    res.add(sec, "python_import_torch_torchvision", wall, "s", "python -c 'import torch, torchvision'")

    if not args.skip_sweep:
        sweep_benchmarks(args, res, env, tmp)

    sec = "memory"
    print(f"\n== {sec} ==", flush=True)
    cmd = [py, "run.py", "epochs=1", *common, f"hydra.run.dir={tmp / 'rss_run'}"]
    wall, cpu, rss, _ = run_child(cmd, env, tmp / "rss_run.log")
    res.add(sec, "peak_rss_run_py_epochs1", rss, "MiB", "ru_maxrss of the run.py process")
    res.add(sec, "wall_run_py_epochs1", wall, "s", f"cpu {cpu:.1f} s")


# --------------------------------------------------------------------------------------------
# 8. Issue 9's speed table


@dataclass
class Target:
    figure: str
    measured: str  # as printed, or "not measured (why)"
    value: float  # the figure compared with the target; NaN when not measured
    unit: str
    target: str
    met: bool | None  # None: not measured
    caveat: str = ""  # why met? is only indicative (e.g. fewer epochs than the target's)


def speed_targets(args, device: torch.device, res: Results) -> list[Target]:
    on_gpu = device.type == "cuda"
    no_gpu = "not measured (no GPU)" if not torch.cuda.is_available() else "not measured (ran on cpu: --device cuda)"
    on_cpu_only = "not measured (ran on cuda: a CPU figure)"
    rows: list[Target] = []

    def skipped(flag_set: bool, flag: str) -> str | None:
        return f"not measured ({flag})" if flag_set else None

    def epochs_caveat(epochs: int) -> str:
        return "" if epochs == 10 else f"at {epochs} epoch(s); the target is for 10"

    def add(figure, value, unit, target, ok, measured, caveat="", why=None):
        if why is None and value != value:  # NaN: the section ran but produced nothing (a failed run)
            why = "not measured (failed: see the log above)"
        if why is not None:
            rows.append(Target(figure, why, float("nan"), unit, target, None))
        else:
            rows.append(Target(figure, measured, value, unit, target, bool(ok(value)), caveat))

    # 1. stacked vs per-run engine, per model-epoch
    M = int(res.get("engines_models")) if res.get("engines_models") == res.get("engines_models") else 12
    st, si = res.get("engines_train_per_model_epoch_stacked"), res.get("engines_train_per_model_epoch_single")
    ratio = res.get("engines_ratio_single_over_stacked")
    eng_caveat = (
        "fewer than 3 epochs: the median includes the first epoch's CUDA graph capture"
        if on_gpu and args.fused_epochs < 3
        else ""
    )
    add(
        f"CPU: stacked engine vs per-run engine, per model-epoch ({M} models)",
        ratio,
        "x",
        ">= 1.5x faster",
        lambda v: v >= 1.5,
        f"per-run {si:.3f} s, stacked {st:.3f} s: {ratio:.2f}x",
        why=on_cpu_only if on_gpu else skipped(args.skip_engines, "--skip-engines"),
    )

    # 2./3. end-to-end sweeps vs the tutorial-style script
    for n_runs, figure, goal in (
        (12, "CPU: 12-run sweep (4 x 3 seeds) end to end vs tutorial-style script", 8.0),
        (4, "CPU: default 4-run sweep end to end vs tutorial-style script", 6.0),
    ):
        tut, fused = res.get(f"sweep{n_runs}_wall_tutorial_script"), res.get(f"sweep{n_runs}_wall_run_py_fused")
        why = (
            on_cpu_only
            if on_gpu
            else (
                skipped(args.skip_sweep, "--skip-sweep")
                or skipped(n_runs not in args.sweep_runs, f"--sweep-runs has no {n_runs}")
                or skipped(
                    not {"tutorial", "fused"} <= set(args.sweep_variants), "needs tutorial,fused in --sweep-variants"
                )
            )
        )
        add(
            figure,
            tut / fused,
            "x",
            f">= {goal:.0f}x",
            lambda v, g=goal: v >= g,
            f"tutorial {tut:.1f} s, run.py {fused:.1f} s: {tut / fused:.2f}x",
            epochs_caveat(args.sweep_epochs),
            why,
        )

    # 4./5. GPU
    add(
        f"GPU: per model-epoch, {M} models (stacked engine)",
        st,
        "s",
        "<= 0.03 s",
        lambda v: v <= 0.03,
        f"{st:.4f} s ({st * M:.3f} s per epoch for all {M})",
        "; ".join(c for c in (eng_caveat, f"{M} models; the target is for 12" if M != 12 else "") if c),
        why=no_gpu if not on_gpu else skipped(args.skip_engines, "--skip-engines"),
    )
    wall = res.get("sweep12_wall_run_py_fused")
    add(
        "GPU: whole `run.py -m activation=relu,sigmoid,tanh,leaky_relu seed=0,1,2` command",
        wall,
        "s",
        "<= 15 s wall",
        lambda v: v <= 15,
        f"{wall:.1f} s",
        epochs_caveat(args.sweep_epochs),
        why=no_gpu
        if not on_gpu
        else (
            skipped(args.skip_sweep, "--skip-sweep")
            or skipped(
                12 not in args.sweep_runs or "fused" not in args.sweep_variants,
                "needs --sweep-runs 12 and fused in --sweep-variants",
            )
        ),
    )

    # 6. memory
    rss = res.get("sweep12_peak_rss_run_py_fused")
    add(
        "CPU: peak RSS of the 12-run fused sweep",
        rss * 2**20 / 1e9,
        "GB",
        "<= 2 GB",
        lambda v: v <= 2.0,
        f"{rss * 2**20 / 1e9:.2f} GB ({rss:.0f} MiB)",
        why=on_cpu_only
        if on_gpu
        else (
            skipped(args.skip_sweep, "--skip-sweep")
            or skipped(
                12 not in args.sweep_runs or "fused" not in args.sweep_variants,
                "needs --sweep-runs 12 and fused in --sweep-variants",
            )
        ),
    )

    # Not a speed target: what the speed must not change.
    diff, acc = res.get("engines_test_acc_max_abs_diff"), res.get("engines_test_acc_stacked_mean")
    K = res.get("engines_per_run_models")
    add(
        f"stacked engine's final test accuracy = per-run engine's ({'' if K != K else int(K)} models)",
        diff,
        "pp",
        "max abs diff <= 0.3 pp",
        lambda v: v <= 0.3,
        f"mean {acc:.2f} % after {args.fused_epochs} epoch(s); max abs diff {diff:.2f} pp",
        why=skipped(args.skip_engines, "--skip-engines"),
    )
    return rows


def print_targets(rows: list[Target], res: Results, batch_size: int, path: Path) -> None:
    def met(t: Target) -> str:
        return "-" if t.met is None else ("yes" if t.met else "no") + ("*" if t.caveat else "")

    header = ("figure", "measured", "target", "met?")
    table = [header] + [(t.figure, t.measured, t.target, met(t)) for t in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    mm = (
        f"machine: fp32 torch.mm {res.mm_n}^2 {_fmt(res.mm_best)} GFLOP/s at the start, {_fmt(res.mm_end)} at the "
        f"end; the MLP's batch-{batch_size} matmuls alone {_fmt(res.mm_small)} GFLOP/s"
    )
    print("\nSpeed targets (issue 9)\n")
    for i, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in rows:
        if t.caveat and t.met is not None:
            print(f"* {t.figure}: {t.caveat}")
    print(mm)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["figure", "measured", "value", "unit", "target", "met", "caveat", "matmul_gflops", "matmul_gflops_end"]
        )
        for t in rows:
            w.writerow(
                [
                    t.figure,
                    t.measured,
                    f"{t.value:.6g}",
                    t.unit,
                    t.target,
                    met(t),
                    t.caveat,
                    f"{res.mm_best:.1f}",
                    f"{res.mm_end:.1f}",
                ]
            )
    print(f"speed table CSV: {path}")


# --------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _ints(text: str) -> list[int]:
    return [int(s) for s in str(text).split(",") if s.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs per section unless --fused-epochs / --sweep-epochs say otherwise (default 3)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for the loop comparison (default 0,1,2)")
    p.add_argument(
        "--data-root",
        default=os.environ.get("MNIST_ROOT", "./data"),
        help="folder holding MNIST/raw (default $MNIST_ROOT or ./data)",
    )
    p.add_argument("--skip-engines", action="store_true", help="skip the stacked vs per-run engine comparison")
    p.add_argument("--fused-epochs", type=int, help="epochs of the engine comparison (default --epochs)")
    p.add_argument(
        "--fused-seeds",
        default="0,1,2",
        help="seeds of the engine comparison: 4 activations x these models (default 0,1,2: 12)",
    )
    p.add_argument(
        "--single-models",
        type=int,
        default=0,
        help="the per-run engine trains only the first N of those models (default 0: all); "
        "per model-epoch figures stay comparable, the accuracy check covers N",
    )
    p.add_argument("--skip-loops", action="store_true", help="skip the tutorial vs project loop and diagnostics")
    p.add_argument("--skip-sweep", action="store_true", help="skip the end-to-end sweep timings")
    p.add_argument(
        "--sweep-runs",
        default="4,12",
        help="sweep sizes to time, multiples of 4: 4 activations x N/4 seeds (default 4,12)",
    )
    p.add_argument(
        "--sweep-variants",
        default=",".join(SWEEP_VARIANTS),
        help=f"which of {','.join(SWEEP_VARIANTS)} to time per sweep size (default all): tutorial = "
        "the standalone tutorial-style script, fused = run.py's default launcher, basic = "
        "hydra/launcher=basic, joblib2 = hydra/launcher=joblib with 2 jobs",
    )
    p.add_argument(
        "--sweep-rounds",
        type=int,
        default=1,
        help="repeat the sweep timings, order rotated; min is reported (default 1)",
    )
    p.add_argument("--sweep-epochs", type=int, help="epochs per sweep run (default --epochs)")
    p.add_argument("--ablations", action="store_true", help="also time fused/foreach/plain Adam side by side")
    p.add_argument("--compile", action="store_true", help="with --ablations: also time torch.compile(model)")
    p.add_argument("--profile", action="store_true", help="also profile 300 training steps by operator")
    p.add_argument("--keep-tmp", action="store_true", help="keep the subprocesses' run folders and logs")
    p.add_argument(
        "--out",
        default="outputs/benchmark/benchmark.csv",
        help="CSV of all figures; the speed table goes to <out stem>_targets.csv beside it",
    )
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # a SIGTERM (e.g. timeout) still cleans up
    args.seeds = _ints(args.seeds)
    args.fused_seeds = _ints(args.fused_seeds)
    args.sweep_runs = _ints(args.sweep_runs)
    args.sweep_variants = [v.strip() for v in args.sweep_variants.split(",") if v.strip()]
    args.sweep_epochs = args.sweep_epochs or args.epochs
    args.fused_epochs = args.fused_epochs or args.epochs
    if min(args.epochs, args.sweep_epochs, args.fused_epochs) < 1:
        p.error("epochs must be at least 1")
    if not args.fused_seeds or args.single_models < 0:
        p.error("--fused-seeds needs at least one seed; --single-models at least 0")
    if any(n < 4 or n % 4 for n in args.sweep_runs):
        p.error(f"--sweep-runs {args.sweep_runs}: each must be a multiple of 4 (4 activations x seeds)")
    unknown = [v for v in args.sweep_variants if v not in SWEEP_VARIANTS]
    if unknown or not args.sweep_variants:
        p.error(f"--sweep-variants {unknown}: choose from {', '.join(SWEEP_VARIANTS)}")
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

    code = [REPO / "src" / "actcompare" / f for f in ("train.py", "engines/stacked.py", "experiment.py")]
    code_sha = hashlib.sha256(b"".join(f.read_bytes() for f in code)).hexdigest()[:12]
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, device {device}{gpu}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores; train.py + engines/stacked.py + experiment.py sha256 {code_sha}; "
        f"data {args.data_root}",
        flush=True,
    )

    res = Results()
    t_all = time.perf_counter()
    sec = "machine"
    print(f"\n== {sec} ==", flush=True)
    res.mm_n = 8192 if device.type == "cuda" else 2048
    res.mm_best, mm_med = matmul_rate(device, res.mm_n)
    res.add(sec, "torch_threads", torch.get_num_threads(), "threads")
    res.add(sec, "batch_size", args.batch_size, "samples")
    res.add(sec, f"matmul_{res.mm_n}_best", res.mm_best, "GFLOP/s", "fp32 torch.mm, 2 n^3 FLOPs, best of 5")
    res.add(sec, f"matmul_{res.mm_n}_median", mm_med, "GFLOP/s", "median of 5")
    res.mm_small = small_matmul_rate(device, args.batch_size)
    res.add(
        sec,
        f"matmul_mlp_batch{args.batch_size}",
        res.mm_small,
        "GFLOP/s",
        "the 9 fwd+bwd matmuls of one MLP step alone",
    )
    problems = check_config(args.batch_size)
    for problem in problems:
        print(f"  ! this script's recipe differs from the packaged config: {problem}", flush=True)
    res.add(sec, "config_differences", len(problems), "", "recipe here vs run.py's composed config; 0: the same")

    if not args.skip_loops:
        with CpuMeter() as meter:
            compare_loops(args, device, res)
        res.add(
            "diagnostics",
            "other_processes_cpu_during_loops",
            meter.share,
            "%",
            "CPU used by other processes while the loops and diagnostics ran (contention)",
        )
    if not args.skip_engines:
        with CpuMeter() as meter:
            compare_engines(args, device, res)
        res.add(
            "engines: stacked vs per-run",
            "other_processes_cpu_during_engines",
            meter.share,
            "%",
            "CPU used by other processes meanwhile (contention)",
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
    sec = "machine, again"
    print(f"\n== {sec} ==", flush=True)
    res.mm_end, _ = matmul_rate(device, res.mm_n)
    res.add(sec, f"matmul_{res.mm_n}_best_at_end", res.mm_end, "GFLOP/s", "as at the start: drift over the run")
    res.add("total", "benchmark_wall", time.perf_counter() - t_all, "s")

    print("\n" + "=" * 100)
    print(
        f"torch {torch.__version__}, device {device}{gpu}, {torch.get_num_threads()} threads, epochs {args.epochs} "
        f"(engines {args.fused_epochs}, sweeps {args.sweep_epochs}), batch {args.batch_size}, loop seeds "
        f"{args.seeds}, engine seeds {args.fused_seeds}, code {code_sha}"
    )
    print(res.table())
    res.write_csv(out)
    print(f"\nCSV: {out}")
    print_targets(speed_targets(args, device, res), res, args.batch_size, out.with_name(f"{out.stem}_targets.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
