"""What the benchmarks share: the recipe composed from conf/, a clock that waits for the device,
the machine's matmul rate, a child process's wall time and peak memory, and figures as CSV rows.

Every benchmark in this folder answers one question and writes its figures to
outputs/benchmark/<name>.csv (rows: name, value, unit, note); ``targets.py`` reads those CSVs.
Timings on a shared machine are noisy: compare figures from one invocation (the
``other_processes_cpu`` row says how busy the machine was meanwhile).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "outputs" / "benchmark"
# The default comparison (python run.py -m activation=relu,sigmoid,tanh,leaky_relu).
COMPARISON = ("relu", "sigmoid", "tanh", "leaky_relu")


def comparison_sweep(n_runs: int, *overrides: str) -> list[str]:
    """``python -m actcompare -m`` the default comparison over n_runs / 4 seeds, with ``overrides``."""
    seeds = ",".join(str(s) for s in range(n_runs // len(COMPARISON)))
    return [sys.executable, "-m", "actcompare", "-m", "activation=" + ",".join(COMPARISON), f"seed={seeds}", *overrides]


# ---------------------------------------------------------------- the recipe, from the configs


@dataclass(frozen=True)
class Recipe:
    """The training recipe exactly as ``actcompare`` composes it from the packaged configs."""

    activations: dict[str, Callable[[], torch.nn.Module]]  # name -> a fresh module per call
    optimizer: Callable  # params -> optimizer (the config's partial, e.g. fused Adam)
    hidden_sizes: tuple[int, ...]
    init: str
    batch_size: int

    @property
    def weights(self) -> int:
        """Linear weights of one network: 6 x weights FLOPs per training sample (fwd 2, bwd 4)."""
        sizes = (28 * 28, *self.hidden_sizes, 10)
        return sum(i * o for i, o in itertools.pairwise(sizes))

    def model(self, activation: str, seed: int, device: torch.device):
        from actcompare.model import build_model

        return build_model(self.activations[activation], self.hidden_sizes, self.init, seed).to(device)

    def engine(self, kind: str, activations: Sequence[str], seeds: Sequence[int], x, y):
        """``make_engine`` as a sweep builds it: model m = (seed m // V, activation m % V)."""
        from actcompare.engines import Recipe, Variant, make_engine

        variants = [Variant(self.activations[a], self.init) for a in activations]
        shared = Recipe(tuple(self.hidden_sizes), self.optimizer, self.batch_size)
        return make_engine(kind, variants, list(seeds), shared, x, y)


def recipe(overrides: Sequence[str] = (), activations: Sequence[str] = COMPARISON) -> Recipe:
    """Compose conf/config.yaml (pkg://actcompare.conf) with ``overrides`` once per activation."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from actcompare.schema import hidden_sizes  # importing it registers config_schema

    with initialize_config_module("actcompare.conf", version_base="1.3", job_name="benchmark"):
        cfgs = {a: compose("config", [f"activation={a}", *overrides]) for a in activations}
    cfg = cfgs[activations[0]]
    return Recipe(
        activations={a: instantiate(c.activation.module, _partial_=True) for a, c in cfgs.items()},
        optimizer=instantiate(cfg.optimizer),
        hidden_sizes=tuple(hidden_sizes(cfg.model)),
        init=getattr(cfg.model.init, "value", cfg.model.init),  # an Enum in the typed config
        batch_size=int(cfg.batch_size),
    )


# ---------------------------------------------------------------- figures


class Results:
    """Figures (name, value, unit, note): printed as they come, written as CSV."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str, str]] = []

    def add(self, name: str, value: float, unit: str = "", note: str = "") -> float:
        self.rows.append((name, float(value), unit, note))
        print(f"  {name} = {fmt(value)} {unit}" + (f"  ({note})" if note else ""), flush=True)
        return value

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "value", "unit", "note"])
            w.writerows((name, f"{value:.6g}", unit, note) for name, value, unit, note in self.rows)


def read_csv(path: Path) -> dict[str, float]:
    """A benchmark CSV as name -> value."""
    with Path(path).open(newline="") as f:
        return {row["name"]: float(row["value"]) for row in csv.DictReader(f)}


def fmt(v: float) -> str:
    if v != v:  # NaN
        return "nan"
    if abs(v) >= 1e5 or (v == int(v) and abs(v) >= 100):
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}" if abs(v) >= 1 else f"{v:.4g}"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- clock and machine


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable, device: torch.device) -> tuple[float, object]:
    """(seconds, result) of ``fn()``, the device's queued work included."""
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def matmul_rate(device: torch.device, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n fp32 torch.mm (2 n^3 FLOPs): what the machine can attain now."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    timed(lambda: a @ b, device)  # warm-up
    return 2 * n**3 / min(timed(lambda: a @ b, device)[0] for _ in range(reps)) / 1e9


def _busy_cpu() -> float:
    import psutil

    c = psutil.cpu_times()
    return c.user + c.system + getattr(c, "nice", 0) + getattr(c, "irq", 0) + getattr(c, "softirq", 0)


def _own_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------- a child process

# Run in a fresh small interpreter that launches the real command: a child forked straight from a
# benchmark process (>1 GB) would carry its resident pages into ru_maxrss until exec.
_RUSAGE_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "wall": wall, "cpu": r.ru_utime + r.ru_stime, "maxrss_kib": r.ru_maxrss}, f)
sys.exit(rc)
"""


@dataclass
class Usage:
    wall: float  # s, start to exit of the command itself
    cpu: float  # s, user + system of it and the descendants it waited for
    rss_mib: float  # peak RSS of its largest process
    rc: int


def run_child(cmd: Sequence[str], log: Path, env: dict | None = None) -> Usage:
    """Run ``cmd`` in the repository root, its output to ``log``; NaN figures when it fails."""
    usage = log.with_suffix(".rusage.json")
    with log.open("w") as out:
        # Own session, so an interrupted benchmark ends the whole tree it started (and only it).
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUSAGE_WRAPPER, str(usage), *cmd],
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
        return Usage(float("nan"), float("nan"), float("nan"), rc or 1)
    u = json.loads(usage.read_text())
    return Usage(u["wall"], u["cpu"], u["maxrss_kib"] / 1024, u["rc"])


# ---------------------------------------------------------------- one benchmark's command line


def parser(doc: str, epochs: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark takes; each adds its own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument("--batch-size", type=int, help="overrides the config's batch_size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--data-root",
        default=os.environ.get("MNIST_ROOT", "./data"),
        help="folder holding MNIST/raw (default $MNIST_ROOT or ./data)",
    )
    p.add_argument("--out", type=Path, help="CSV of the figures (default outputs/benchmark/<name>.csv)")
    return p


@contextlib.contextmanager
def scratch(name: str, keep: bool = False) -> Iterator[Path]:
    """A folder under outputs/benchmark/ for one benchmark's sweeps and logs, removed at the end
    (``keep``: kept, and its path printed)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{name}-", dir=OUT_DIR))
    try:
        yield tmp
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _terminate(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def session(name: str, args: argparse.Namespace) -> Iterator[tuple[Results, torch.device, Recipe]]:
    """One benchmark's run: device, recipe and the machine's matmul rate before and after (drift)
    and how much CPU other processes took meanwhile, then the CSV. Yields (results, device, recipe)."""
    signal.signal(signal.SIGTERM, _terminate)  # a timeout's SIGTERM still ends child processes
    if args.epochs < 1:
        sys.exit("error: --epochs must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: CUDA is not available")
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    args.data_root = str(Path(args.data_root).expanduser().resolve())
    rec = recipe([f"batch_size={args.batch_size}"] if args.batch_size else [])
    args.batch_size = rec.batch_size
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(
        f"== {name}: torch {torch.__version__}, device {device}{gpu}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores, batch {rec.batch_size}, data {args.data_root}",
        flush=True,
    )
    res = Results()
    res.add("device_cuda", device.type == "cuda", "", "1: the figures are from a GPU")
    res.add("epochs", args.epochs, "epochs")
    res.add("batch_size", rec.batch_size, "samples")
    res.add("matmul_best", matmul_rate(device), "GFLOP/s", "fp32 torch.mm, best of 5, at the start")
    t, busy, own = time.perf_counter(), _busy_cpu(), _own_cpu()
    yield res, device, rec
    wall = time.perf_counter() - t
    other = (_busy_cpu() - busy) - (_own_cpu() - own)
    res.add(
        "other_processes_cpu",
        max(0.0, 100 * other / (wall * (os.cpu_count() or 1))),
        "%",
        "CPU other processes used meanwhile (contention); near 0: the machine was ours",
    )
    res.add("matmul_best_at_end", matmul_rate(device), "GFLOP/s", "as at the start: drift over the run")
    res.add("wall", wall, "s")
    out = args.out or OUT_DIR / f"{name}.csv"
    res.write_csv(out)
    print(f"CSV: {out}", flush=True)
