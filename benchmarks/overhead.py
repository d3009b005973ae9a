"""What does a sweep cost besides its training, for 4, 12 and 40 runs, and in which phase?

    python benchmarks/overhead.py                         # 4, 12, 40 runs, epochs=1 on 640 images: ~1 min
    python benchmarks/overhead.py --runs 12 --train-samples 60000 --test-samples 10000

Each sweep (``python -m actcompare -m activation=relu,sigmoid,tanh,leaky_relu seed=0,..,N/4-1`` with
the default fused launcher) runs in a child process, timed from start to exit. Its wall time minus its
training is split into phases by the timestamps of the lines the command prints anyway (Hydra's log
format, to the millisecond), from one line to the next:

- start-up: process start -> ``composing N jobs`` (Python, Hydra, torch, the main config)
- composing: -> ``Launching`` (each job's config, and the checks of the whole batch)
- planning: -> ``reading MNIST`` (the batch's validation, the groups)
- data: -> the first run's epoch-1 line in its run.log, less epoch 1's training (MNIST, the job
  folders, the pre-flight check, the engine)
- in epochs: -> the last epoch line, less the other epochs' training (every run's rows and
  diagnostics, after each epoch)
- finalizing: the last epoch line -> the last run's end line (model.pt, confusion, examples, run.json)
- report: -> ``Sweep report`` (Hydra's job contract per job, then the report's tables and figures)
- exit: -> the process's exit (the summary table, the interpreter's exit)

Training is the runs' own record: the sum of every group's epoch times (metrics.csv's epoch_seconds
are each model's share of its group's epoch). A line an older version did not print leaves its phase
in the one before it (shown as ``+``, the merged figure left of it). --rounds repeats each size and
keeps the round with the median wall time.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from _timing import comparison_sweep, parser, run_child, scratch, session

# (phase, the line that ends it); None: the process's exit. The report's end line "Sweep report: " is
# preceded by the runs' end lines; "report" starts at the last of them.
PHASES = (
    ("start-up", r"composing \d+ jobs?"),
    ("composing", r"Launching \d+ jobs"),
    ("planning", r"reading MNIST"),
    ("data", "FIRST_NOTE"),
    ("in epochs", "LAST_EPOCH"),
    ("finalizing", "LAST_END"),
    ("report", r"Sweep report: "),
    ("exit", None),
)
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
END_LINE = re.compile(r" after \d+ epoch\(s\).*; files in ")  # a run's end line
EPOCH_LINE = re.compile(r"epoch \d+/\d+: \d+ model\(s\)")  # a group's epoch progress line


def stamped(log: Path) -> list[tuple[float, str]]:
    """The log's timestamped lines (Hydra's format: local time, milliseconds) as (epoch seconds, line)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            t = time.mktime(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timetuple()) + int(m.group(2)) / 1000
            out.append((t, line))
    return out


def first_notes(folder: Path) -> list[float]:
    """When each run's epoch 1 ended: the timestamp of the first "epoch 1/" line in its run.log."""
    out = []
    for log in folder.glob("*/run.log"):
        out += [t for t, line in stamped(log) if re.search(r": epoch 1/\d+: train loss", line)][:1]
    return out


def training(folder: Path) -> tuple[float, float]:
    """(epoch 1's, all epochs') training seconds of the sweep: sum of epoch_seconds over every run."""
    first = total = 0.0
    for path in folder.glob("*/metrics.csv"):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                total += float(row["epoch_seconds"])
                first += float(row["epoch_seconds"]) if row["epoch"] == "1" else 0.0
    return first, total


def phases(lines, notes: list[float], start: float, end: float, first: float, total: float) -> dict:
    """Each phase's seconds, from one line's timestamp to the next; None where its line is missing (its
    time is then in the next phase that has one). Training is taken off the phases it lies in."""
    epochs = [t for t, line in lines if EPOCH_LINE.search(line)]
    ends = [t for t, line in lines if END_LINE.search(line)]
    out: dict[str, float | None] = {}
    last = start
    for name, pattern in PHASES:
        if pattern is None:
            t = end
        elif pattern == "LAST_EPOCH":
            t = epochs[-1] if epochs else None
        elif pattern == "FIRST_NOTE":
            t = min(notes, default=None)
        elif pattern == "LAST_END":
            t = ends[-1] if ends else None
        else:
            t = next((t for t, line in lines if re.search(pattern, line)), None)
        if t is None:
            out[name] = None
            continue
        span = t - last
        if name == "data":  # a run's epoch-1 line comes once epoch 1 has trained
            span -= first
        if name == "in epochs":
            span -= total - first
        out[name], last = span, t
    return out


def main(argv=None) -> None:
    p = parser(__doc__, epochs=1)
    p.add_argument("--runs", default="4,12,40", help="sweep sizes, multiples of 4 (default 4,12,40)")
    p.add_argument("--train-samples", type=int, default=640, help="data.train_samples (default 640)")
    p.add_argument("--test-samples", type=int, default=640, help="data.test_samples (default 640)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each size; the median wall's is kept (default 1)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the sweeps' folders and logs")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.runs.split(",")]
    if any(n < 4 or n % 4 for n in sizes):
        p.error("--runs: multiples of 4")
    env = {**os.environ, "MNIST_ROOT": args.data_root}
    table = []
    with scratch("overhead", args.keep_tmp) as tmp, session("overhead", args) as (res, _, _):
        for n in sizes:
            cmd = comparison_sweep(
                n,
                f"epochs={args.epochs}",
                f"data.train_samples={args.train_samples}",
                f"data.test_samples={args.test_samples}",
                f"device={args.device}",
            )
            if args.batch_size:
                cmd.append(f"batch_size={args.batch_size}")
            rounds = []
            for r in range(args.rounds):
                folder = tmp / f"sweep{n}_{r}"
                log = folder.with_suffix(".log")
                use = run_child([*cmd, f"hydra.sweep.dir={folder}"], log, env)
                end = time.time()
                first, total = training(folder)
                lines = stamped(log)
                start = end - use.wall
                split = phases(lines, first_notes(folder), start, end, first, total)
                first_line = lines[0][0] - start if lines else float("nan")
                rounds.append((use.wall, total, split, first_line, use.rc))
                print(f"    {n} runs, round {r + 1}: {use.wall:.1f} s, training {total:.1f} s", flush=True)
            wall, total, split, first_line, rc = sorted(rounds, key=lambda x: x[0])[len(rounds) // 2]
            res.add(f"sweep{n}_wall", wall, "s", f"exit {rc}")
            res.add(f"sweep{n}_training", total, "s", "sum of the groups' epoch times")
            res.add(f"sweep{n}_overhead", wall - total, "s", "wall - training")
            res.add(f"sweep{n}_first_line", first_line, "s", "process start -> its first timestamped line")
            for name, _ in PHASES:
                value = split[name]
                res.add(f"sweep{n}_{name.replace(' ', '_')}", float("nan") if value is None else value, "s")
            table.append((n, wall, total, first_line, split))
        print(f"\n$ {' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}")
        print(f"  each: python -m actcompare -m {' '.join(cmd[4:])} (seeds 0..N/4-1, fused launcher)")
        heads = ["runs", "wall", "training", "overhead", "first line"] + [name for name, _ in PHASES]
        print("| " + " | ".join(heads) + " |\n|" + "---:|" * len(heads))
        for n, wall, total, first_line, split in table:
            cells = [str(n), f"{wall:.1f}", f"{total:.1f}", f"{wall - total:.1f}", f"{first_line:.1f}"]
            merged = False
            for name, _ in PHASES:  # a missing line's phase is in the next one's figure: marked +
                value = split[name]
                cells.append("·" if value is None else f"{value:.1f}" + ("+" if merged else ""))
                merged = value is None
            print("| " + " | ".join(cells) + " |")
        print("(s; '·': that line was not printed, its phase is in the next figure, marked +)")


if __name__ == "__main__":
    main()
