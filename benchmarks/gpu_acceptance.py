"""Acceptance of the stacked engine's GPU path in one command (issue 17): a table of figures, each
beside its expectation and a verdict.

    python benchmarks/gpu_acceptance.py                       # on a lent GPU: < 5 min, full MNIST
    python benchmarks/gpu_acceptance.py --device cpu --quick  # smoke test: seconds, small data

Items: (a) warm-up + restore exact for every optimizer the engine may graph; (b) graphed = eager after
one full-MNIST epoch (partial last batch included); (c) stacked = single for one model; (d) epoch
times for 12 models x 10 epochs, 48 and 200 models; (e) mean test accuracy per activation after (d)
against the CPU reference sweep (outputs/reference/default); (f) the real 12-run sweep command,
its wall time and its "captured" log line (needs Hydra: skipped without it); (g) ``pytest -m gpu``;
(h) (issue 18) experiment=lr_sweep's 40 models, each with its own lr, in one graph.

Everything but (f) and (g) runs in this process on the library's own engines (actcompare.engines),
without Hydra. Data: MNIST from --data-root or MNIST_ROOT (<root>/MNIST/raw); with --quick and no
MNIST, a small synthetic set. On the device machine, start with device_pack.sh's preamble (it
installs the carried wheels and unpacks MNIST), then run this script.
Exit status: 0 when no verdict is FAIL.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("actcompare") is None:  # a plain checkout (the device machine): use src/
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from actcompare.engines import Recipe as EngineRecipe  # noqa: E402
from actcompare.engines import Variant  # noqa: E402
from actcompare.engines.capture import init_state, quiet_uncaptured, warm_up  # noqa: E402
from actcompare.engines.single import SingleEngine  # noqa: E402
from actcompare.engines.stacked import StackedEngine  # noqa: E402

REFERENCE = REPO / "outputs" / "reference" / "default"
TUTORIAL_ACTS = ("relu", "sigmoid", "tanh", "leaky_relu")
# The activations of conf/activation/ without parameters (stacked sizes 48 and 200 cycle through them).
ACTS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "selu": nn.SELU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
}


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    item: str
    figure: str
    value: str
    expect: str
    verdict: str  # PASS, FAIL, INFO (no expectation here), SKIP (with the reason as value)


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)  # for targets.py: CSV rows name -> value

    def add(self, item: str, figure: str, value: str, expect: str, ok: bool | None) -> None:
        verdict = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append(Row(item, figure, value, expect, verdict))
        print(f"  [{item}] {figure}: {value} (expect {expect}) {verdict}", flush=True)

    def skip(self, item: str, figure: str, why: str) -> None:
        self.rows.append(Row(item, figure, why, "-", "SKIP"))
        print(f"  [{item}] {figure}: skipped ({why})", flush=True)

    def render(self) -> str:
        head = ("item", "figure", "value", "expectation", "verdict")
        cells = [head, *((r.item, r.figure, r.value, r.expect, r.verdict) for r in self.rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        lines = [" | ".join(c[i].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)


# ---------------------------------------------------------------- setup


@dataclass
class Data:
    x: torch.Tensor
    y: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor
    source: str


def load_data(root: str | None, device: torch.device, quick: bool) -> Data:
    n_train, n_test = (1000, 500) if quick else (None, None)  # 1000 = 15 x 64 + 40: a partial last batch
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        from actcompare.data import load_mnist

        d = load_mnist(root, device, False, n_train, n_test, False)
        return Data(d.train.x, d.train.y, d.test.x, d.test.y, f"MNIST at {root}" + (" (subset)" if quick else ""))
    if not quick:
        sys.exit(f"no MNIST at {root!r} (<root>/MNIST/raw/*-ubyte): pass --data-root or set MNIST_ROOT")
    g = torch.Generator().manual_seed(0)

    def synthetic(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 784, generator=g) * 0.5
        x[torch.arange(n), y * 78] += 2.0  # learnable: one bright pixel per class
        return x.to(device), y.to(device)

    return Data(*synthetic(n_train), *synthetic(n_test), "synthetic (no MNIST found)")


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass
class Recipe:
    """What the reference sweep trained (its run.json config), without Hydra."""

    hidden: list[int]
    batch_size: int
    epochs: int
    optimizer: Callable
    optimizer_name: str
    activations: dict[str, Callable[[], nn.Module]]
    reference_acc: dict[str, float]  # activation -> mean final test accuracy (%) of the reference sweep


def reference_recipe() -> Recipe:
    acc: dict[str, list[float]] = {}
    config, activations = None, {}
    for run in sorted(REFERENCE.glob("*/run.json")) if REFERENCE.is_dir() else []:
        record = json.loads(run.read_text())
        if record.get("status") != "completed":
            continue
        config = record["config"]
        module = dict(config["activation"]["module"])
        activations[record["activation"]] = functools.partial(_import(module.pop("_target_")), **module)
        acc.setdefault(record["activation"], []).append(100 * record["final"]["test_acc"])
    if config is None:  # no reference in this checkout: conf/'s defaults
        return Recipe(
            [128, 128],
            64,
            10,
            functools.partial(torch.optim.Adam, lr=1e-3, fused=True),
            "torch.optim.Adam",
            {a: ACTS[a] for a in TUTORIAL_ACTS},
            {},
        )
    opt = {k: v for k, v in config["optimizer"].items() if k not in ("_target_", "_partial_")}
    opt = {k: tuple(v) if isinstance(v, list) else v for k, v in opt.items()}
    name = config["optimizer"]["_target_"]
    return Recipe(
        list(config["model"]["hidden_sizes"]),
        config["batch_size"],
        config["epochs"],
        functools.partial(_import(name), **opt),
        name,
        activations,
        {a: statistics.fmean(v) for a, v in acc.items()},
    )


def graphable_optimizers() -> list[str]:
    """engines/plan.py's ELEMENTWISE_OPTIMIZERS that the engine may capture (those with a ``capturable`` option).
    Read from the source: importing the package imports Hydra, which the device machine may lack."""
    tree = ast.parse((REPO / "src" / "actcompare" / "engines" / "plan.py").read_text())
    names = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ELEMENTWISE_OPTIMIZERS" for t in node.targets)
    )
    return sorted(n for n in names if "capturable" in inspect.signature(_import(n)).parameters)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stacked(
    data: Data,
    recipe: Recipe,
    acts: Sequence[str],
    seeds: Sequence[int],
    graph: bool = True,
    optimizer: Callable | None = None,
) -> StackedEngine:
    variants = [Variant(recipe.activations.get(a, ACTS.get(a)), "default") for a in acts]
    return StackedEngine(
        variants,
        list(seeds),
        EngineRecipe(tuple(recipe.hidden), optimizer or recipe.optimizer, recipe.batch_size),
        data.x,
        data.y,
        graph=graph,
    )


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ---------------------------------------------------------------- items

# `python -m actcompare` from a checkout that is not installed (the device machine: PYTHONPATH=src):
# the configs (top-level conf/, the package actcompare.conf once installed) are registered under
# that name first, then the command runs exactly as `python -m actcompare` would.
CHECKOUT_SHIM = """import importlib.util, runpy, sys
conf = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location("actcompare.conf", conf + "/__init__.py",
                                              submodule_search_locations=[conf])
module = importlib.util.module_from_spec(spec)
sys.modules["actcompare.conf"] = module
spec.loader.exec_module(module)
sys.argv[0] = "actcompare"
runpy.run_module("actcompare", run_name="__main__", alter_sys=True)
"""


def item_a(t: Table, data: Data, recipe: Recipe, device: torch.device) -> None:
    """Warm-up + restore on the engine's own step; then k steps = k steps of a never-warmed twin."""
    small = Data(data.x[:640], data.y[:640], data.xt, data.yt, data.source)
    for name in graphable_optimizers():
        gaps = _restore_gaps(small, recipe, device, functools.partial(_import(name), lr=1e-3))
        t.add(
            "a",
            f"restore exact: {name.rsplit('.', 1)[1]} (max |diff| after restore, after 5 steps)",
            f"{gaps[0]:.1e}, {gaps[1]:.1e}",
            "0, 0",
            max(gaps) == 0,
        )


def _restore_gaps(small: Data, recipe: Recipe, device: torch.device, opt: Callable) -> list[float]:
    warmed, twin = (stacked(small, recipe, ("relu", "tanh"), (0, 1), graph=False, optimizer=opt) for _ in "ab")
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(device))
    bufs = [
        (torch.zeros(e.size, device=device), torch.zeros(e.size, dtype=torch.long, device=device))
        for e in (warmed, twin)
    ]
    idx = torch.arange(2 * recipe.batch_size, device=device).view(2, -1)
    warm_up(lambda: warmed._step(idx, *bufs[0], zero=True), warmed.optimizer, warmed._act_modules, 3, stream)
    if stream is not None:
        torch.cuda.current_stream(device).wait_stream(stream)
    init_state(twin.optimizer)  # allocated as the warmed one's is (no step taken)
    gaps = [_gap(warmed, twin)]
    with quiet_uncaptured():
        for k in range(5):
            idx = (torch.arange(2 * recipe.batch_size, device=device).view(2, -1) + 64 * (k + 1)) % 640
            for e, b in zip((warmed, twin), bufs, strict=True):
                e._step(idx, *b, zero=True)
    gaps.append(_gap(warmed, twin))
    return gaps


def _gap(a: StackedEngine, b: StackedEngine) -> float:
    gap = max((x - y).abs().max().item() for x, y in zip(a.params, b.params, strict=True))
    for p, q in zip(a.params, b.params, strict=True):
        sa, sb = a.optimizer.state[p], b.optimizer.state[q]
        if sa.keys() != sb.keys():
            return float("inf")
        for key in sa:
            if torch.is_tensor(sa[key]):
                gap = max(gap, (sa[key].double() - sb[key].double()).abs().max().item())
    return gap


def item_b(t: Table, data: Data, recipe: Recipe, device: torch.device) -> None:
    acts, seeds = TUTORIAL_ACTS, (0,)
    graphed, eager = stacked(data, recipe, acts, seeds), stacked(data, recipe, acts, seeds, graph=False)
    n, bs = data.y.shape[0], recipe.batch_size
    note = f"{n // bs} replays + {n % bs} images eagerly" if graphed._graph is not None else "no graph: both eager"
    (gl, _), (el, _) = graphed.train_epoch(), eager.train_epoch()
    (tg, _), (te, _) = graphed.evaluate(data.xt, data.yt), eager.evaluate(data.xt, data.yt)
    worst = max(max(map(rel, gl, el)), max(map(rel, tg, te)))
    wp = max(
        ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item()
        for x, y in zip(graphed.params, eager.params, strict=True)
    )
    ok = worst <= 1e-5 and wp <= 1e-5 and graphed._graph is not None  # on the CPU: no graph, no verdict
    t.add(
        "b",
        f"graphed = eager, 1 epoch, {len(acts)} models ({note}): max rel. diff of losses, of weights",
        f"{worst:.1e}, {wp:.1e}",
        "<= 1e-5",
        ok if device.type == "cuda" else None,
    )


def item_c(t: Table, data: Data, recipe: Recipe, device: torch.device, epochs: int) -> None:
    act = recipe.activations.get("relu", nn.ReLU)
    one = stacked(data, recipe, ("relu",), (0,))
    single = SingleEngine(
        Variant(act, "default"),
        0,
        EngineRecipe(tuple(recipe.hidden), recipe.optimizer, recipe.batch_size),
        data.x,
        data.y,
    )
    dl, da = 0.0, 0.0
    for _ in range(epochs):
        (sl, _), (ol, _) = single.train_epoch(), one.train_epoch()
        (stl, sta), (otl, ota) = single.evaluate(data.xt, data.yt), one.evaluate(data.xt, data.yt)
        dl = max(dl, rel(ol[0], sl[0]), rel(otl[0], stl[0]))
        da = max(da, 100 * abs(ota[0] - sta[0]))
    t.add(
        "c",
        f"stacked = single, relu seed 0, {epochs} epochs: max rel. diff of loss",
        f"{dl:.1e}",
        "<= 1e-4",
        dl <= 1e-4,
    )
    t.add("c", "stacked = single: max diff of test accuracy (points)", f"{da:.2f}", "<= 0.3", da <= 0.3)


def timed_run(
    data: Data, recipe: Recipe, acts: Sequence[str], seeds: Sequence[int], epochs: int, device: torch.device
) -> tuple[StackedEngine, list[float], list[float]]:
    engine = stacked(data, recipe, acts, seeds)
    times, acc = [], []
    for _ in range(epochs):
        sync(device)
        tic = time.perf_counter()
        engine.train_epoch()
        _, acc = engine.evaluate(data.xt, data.yt)  # as an epoch of run_group: train + test evaluation
        sync(device)
        times.append(time.perf_counter() - tic)
    return engine, times, acc


def item_d_e(t: Table, data: Data, recipe: Recipe, device: torch.device, quick: bool) -> None:
    full = not quick and data.source.startswith("MNIST")
    epochs = recipe.epochs if not quick else 2
    engine, times, acc = timed_run(data, recipe, TUTORIAL_ACTS, (0, 1, 2), epochs, device)
    med = statistics.median(times)
    expect_ok = (lambda v: v <= 0.03) if full and device.type == "cuda" else (lambda v: None)
    where = "graph" if engine._graph is not None else "eager"
    t.add("d", f"12 models x {epochs} epochs ({where}): median epoch, whole group (s)", f"{med:.3f}", "-", None)
    t.add(
        "d",
        "12 models: median s per model-epoch (probe on an H100: 0.022)",
        f"{med / 12:.4f}",
        "<= 0.03",
        expect_ok(med / 12),
    )
    t.add("d", "12 models: warm-up + capture, outside the epochs (s)", f"{engine.warmup_seconds:.2f}", "-", None)
    for acts, seeds, ep in ((tuple(ACTS), range(4), 3), (tuple(ACTS)[:10], range(20), 3)):
        m = len(acts) * len(seeds)
        if quick and m > 48:
            t.skip("d", f"{m} models", "--quick")
            continue
        ep = 1 if quick else ep
        _, ts, _ = timed_run(data, recipe, acts, list(seeds), ep, device)
        med = statistics.median(ts)
        t.add(
            "d",
            f"{m} models x {ep} epochs: median s per group epoch, per model-epoch",
            f"{med:.3f}, {med / m:.4f}",
            "-, <= 0.03",
            expect_ok(med / m),
        )
    # (e) the 12-model run above against the CPU reference sweep, same recipe and seeds
    if not full or epochs != recipe.epochs or not recipe.reference_acc:
        t.skip(
            "e",
            "mean test accuracy per activation vs CPU reference",
            "needs full MNIST, the reference sweep's epochs and outputs/reference/default" if not quick else "--quick",
        )
        return
    for j, a in enumerate(TUTORIAL_ACTS):
        mean = 100 * statistics.fmean(acc[s * len(TUTORIAL_ACTS) + j] for s in range(3))  # m = s * V + v
        ref = recipe.reference_acc.get(a)
        if ref is None:
            t.skip("e", f"{a}: mean test accuracy (%)", "not in the reference sweep")
            continue
        t.add(
            "e",
            f"{a}: mean test accuracy over seeds 0-2 (%), reference {ref:.2f}",
            f"{mean:.2f}",
            f"within 0.3 of {ref:.2f}",
            abs(mean - ref) <= 0.3,
        )


def item_h(t: Table, data: Data, recipe: Recipe, device: torch.device, quick: bool) -> None:
    """Issue 18: experiment=lr_sweep's 40 models (4 activations x 5 lrs x 2 seeds) in one graph, each
    model with its own lr through optim.StackedOptimizer."""
    lrs = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    variants = [
        Variant(recipe.activations.get(a, ACTS[a]), "default", (("lr", lr),)) for a in TUTORIAL_ACTS for lr in lrs
    ]
    engine = StackedEngine(
        variants, [0, 1], EngineRecipe(tuple(recipe.hidden), recipe.optimizer, recipe.batch_size), data.x, data.y
    )
    epochs, times = (1 if quick else 3), []
    for _ in range(epochs):
        sync(device)
        tic = time.perf_counter()
        engine.train_epoch()
        engine.evaluate(data.xt, data.yt)
        sync(device)
        times.append(time.perf_counter() - tic)
    med = statistics.median(times) / engine.size
    where = "graph" if engine._graph is not None else "eager"
    full = not quick and data.source.startswith("MNIST") and device.type == "cuda"
    if full:
        t.figures["gpu_lr_sweep_per_model_epoch"] = med
    t.add(
        "h",
        f"lr sweep, {engine.size} models with their own lr ({where}, {type(engine.optimizer).__name__}): "
        "median s per model-epoch",
        f"{med:.4f}",
        "<= 0.01",
        med <= 0.01 if full else None,
    )


def item_f(t: Table, root: str | None, device: torch.device, quick: bool) -> None:
    if quick:
        t.skip("f", "actcompare -m activation=relu,sigmoid,tanh,leaky_relu seed=0,1,2", "--quick")
        return
    if importlib.util.find_spec("hydra") is None:
        t.skip("f", "actcompare sweep", "Hydra not installed (device machine: run device_pack.sh's preamble)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "-m",
            "activation=relu,sigmoid,tanh,leaky_relu",
            "seed=0,1,2",
            f"hydra.sweep.dir={tmp}/sweep",
            f"device={device.type}",
        ]
        cmd = [sys.executable, "-c", CHECKOUT_SHIM, str(REPO / "conf"), *args]
        if importlib.util.find_spec("actcompare.conf") is not None:  # installed: the command as a user types it
            cmd = [sys.executable, "-m", "actcompare", *args]
        path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path)
        if root:
            env["MNIST_ROOT"] = root
        tic = time.perf_counter()
        try:
            res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            t.add("f", "actcompare 12-run sweep: wall time (s)", "> 240 (killed)", "<= 15", False)
            return
        wall = time.perf_counter() - tic
        logs = res.stdout + res.stderr + "".join(p.read_text(errors="replace") for p in Path(tmp).rglob("*.log"))
    if res.returncode != 0:
        tail = " / ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        t.add("f", "actcompare 12-run sweep: exit status", f"{res.returncode}: {tail[:200]}", "0", False)
        return
    t.add(
        "f",
        "actcompare 12-run sweep (incl. start-up and report): wall time (s)",
        f"{wall:.1f}",
        "<= 15",
        wall <= 15 if device.type == "cuda" else None,
    )
    captured = re.search(r"training step captured as a CUDA graph \((\d+) models", logs)
    t.add(
        "f",
        "its log says the step was captured",
        f"yes ({captured.group(1)} models)" if captured else "no",
        "yes (12 models)",
        bool(captured) if device.type == "cuda" else None,
    )


def item_g(t: Table, quick: bool) -> None:
    if quick:
        t.skip("g", "pytest -m gpu", "--quick")
        return
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")])),
    )
    # addopts cleared: the project's may name plugins (pytest-xdist) that the device image lacks
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-o",
        "addopts=",
        "-m",
        "gpu",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_gpu.py",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    summary = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
    if res.returncode != 0:
        print(res.stdout[-4000:], res.stderr[-2000:], sep="\n")
    ok = res.returncode == 0 and "skipped" not in summary
    t.add(
        "g",
        "pytest -m gpu tests/test_gpu.py",
        summary.strip("= "),
        "all passed, none skipped",
        ok if torch.cuda.is_available() else None,
    )


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small data, fewer epochs, no (f) and (g): a smoke test")
    ap.add_argument("--data-root", default=os.environ.get("MNIST_ROOT") or None, help="holds MNIST/raw/ (MNIST_ROOT)")
    ap.add_argument("--only", default="abcdefgh", help="items to run, e.g. --only ab")
    ap.add_argument("--json", type=Path, help="also write the table here as JSON")
    ap.add_argument(
        "--csv",
        type=Path,
        default=REPO / "outputs" / "benchmark" / "gpu_acceptance.csv",
        help="the figures targets.py reads (default outputs/benchmark/gpu_acceptance.csv)",
    )
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but torch sees no CUDA GPU: use --device cpu")
    device = torch.device(args.device)
    t0 = time.perf_counter()
    data = load_data(args.data_root, device, args.quick)
    recipe = reference_recipe()
    if args.quick:
        recipe.hidden = [32, 32]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"gpu_acceptance: {name}, torch {torch.__version__}, data: {data.source} ({data.y.shape[0]} train, "
        f"{data.yt.shape[0]} test), recipe: {recipe.optimizer_name} {recipe.hidden} batch {recipe.batch_size}",
        flush=True,
    )
    t = Table()
    steps = {
        "a": lambda: item_a(t, data, recipe, device),
        "b": lambda: item_b(t, data, recipe, device),
        "c": lambda: item_c(t, data, recipe, device, 1 if args.quick else 2),
        "d": lambda: item_d_e(t, data, recipe, device, args.quick),
        "h": lambda: item_h(t, data, recipe, device, args.quick),
        "f": lambda: item_f(t, args.data_root, device, args.quick),
        "g": lambda: item_g(t, args.quick),
    }
    for key, step in steps.items():
        if key in args.only or (key == "d" and "e" in args.only):
            tic = time.perf_counter()
            try:
                step()
            except Exception as err:  # one broken item must not hide the others' figures
                t.add(
                    key,
                    "raised",
                    f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160],
                    "no error",
                    False,
                )
            print(f"  ({key}: {time.perf_counter() - tic:.1f} s)", flush=True)
    print()
    print(t.render())
    total = time.perf_counter() - t0
    print(
        f"\n{len(t.rows)} rows, {sum(r.verdict == 'FAIL' for r in t.rows)} FAIL, total {total:.0f} s "
        f"(expect < 300 s on one GPU)"
    )
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    figures = {"device_cuda": float(device.type == "cuda"), **t.figures}
    args.csv.write_text("name,value,unit,note\n" + "".join(f"{k},{v:.6g},,\n" for k, v in figures.items()))
    if args.json:
        rows = [r.__dict__ for r in t.rows]
        args.json.write_text(json.dumps({"device": name, "seconds": total, "rows": rows}, indent=1))
    return 1 if any(r.verdict == "FAIL" for r in t.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
