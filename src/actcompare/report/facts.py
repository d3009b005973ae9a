"""What was trained, read from the run records: the report's setup block and its rerun commands.

A 3,000-image, 2-epoch sweep must not read like a full one, so report.md opens with these facts,
each the set of values found over the runs (several values are listed, never averaged).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import record as run_folder

MNIST_TRAIN, MNIST_TEST = 60_000, 10_000  # torchvision's MNIST splits


@dataclass
class Facts:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (what, value) for the setup block
    test_images: int = MNIST_TEST  # the smallest test set of the runs (for the binomial error)
    overrides: list[str] | None = None  # the sweep's task overrides, when one sweep folder is reported
    sweep_dir: str | None = None
    train_seconds: float = math.nan  # the runs' training time, a stacked group's time counted once
    timed_runs: int = 0  # how many runs train_seconds covers


def _values(records: Sequence[dict], get: Any) -> str:
    seen: dict[str, None] = {}
    for r in records:
        try:
            v = get(r)
        except (KeyError, TypeError, AttributeError):
            v = None
        seen[str(v) if v is not None else "?"] = None
    return ", ".join(seen) or "?"


def _train_images(cfg: dict) -> int:
    data = cfg.get("data") or {}
    n = data.get("train_samples") or MNIST_TRAIN
    return int(n) - int(data.get("val_samples") or 0) if not data.get("train_samples") else int(n)


def read_facts(run_paths: Sequence[str], report_paths: Sequence[str]) -> Facts:
    """The setup facts over the runs' run.json files (unreadable ones are skipped: the loader has
    already named them) and, for a single sweep folder, its task overrides (multirun.yaml)."""
    found = (run_folder.read_or_none(Path(p) / run_folder.RUN_JSON) for p in run_paths)
    records = [r for r in found if r is not None]
    facts = Facts()
    if records:
        cfgs = [r["config"] for r in records]
        tests = [
            int(r["images"]["test"])
            if isinstance(r.get("images"), dict)
            else int((r["config"].get("data") or {}).get("test_samples") or MNIST_TEST)
            for r in records
        ]
        facts.test_images = min(tests)
        opt = _values(cfgs, lambda c: f"{c['optimizer']['_target_'].rsplit('.', 1)[-1]} lr {c['optimizer']['lr']:g}")
        arch = _values(cfgs, lambda c: "784-" + "-".join(map(str, c["model"]["hidden_sizes"])) + "-10 MLP")
        # A stacked run's wall_seconds is its whole group's time: its share is that over the group's size.
        seconds = [
            float(r["wall_seconds"]) / _group_size(r)
            for r in records
            if isinstance(r.get("wall_seconds"), (int, float))
        ]
        stacked = any(_group_size(r) > 1 for r in records)
        facts.train_seconds, facts.timed_runs = (sum(seconds), len(seconds)) if seconds else (math.nan, 0)
        facts.lines = [
            ("epochs", _values(cfgs, lambda c: c["epochs"])),
            (
                "training images",
                _values(records, lambda r: r["images"]["train"] if "images" in r else _train_images(r["config"])),
            ),
            (
                "validation images",
                _values(
                    records,
                    lambda r: (
                        r["images"]["val"] if "images" in r else (r["config"].get("data") or {}).get("val_samples") or 0
                    ),
                ),
            ),
            (
                "test images",
                _values(
                    records,
                    lambda r: (
                        r["images"]["test"]
                        if "images" in r
                        else (r["config"].get("data") or {}).get("test_samples") or MNIST_TEST
                    ),
                ),
            ),
            ("batch size", _values(cfgs, lambda c: c["batch_size"])),
            ("optimizer", opt),
            ("architecture", arch),
            ("weight init", _values(cfgs, lambda c: c["model"].get("init", "default"))),
            ("inputs", _values(cfgs, lambda c: "normalised" if (c.get("data") or {}).get("normalize") else "[0, 1]")),
            ("seeds", _seed_list(records)),
            ("engine", _values(records, lambda r: r.get("engine"))),
            ("device", _values(records, lambda r: r.get("device"))),
            ("training time", _minutes(seconds, stacked)),
        ]
    if len(report_paths) == 1:
        plan = _seed_plan(Path(report_paths[0]) / "seed_plan.json")
        if plan:
            facts.lines.append(("seeds planned (seeds=auto)", plan))
        multirun = Path(report_paths[0]) / "multirun.yaml"
        try:
            cfg = yaml.safe_load(multirun.read_text())
            task = cfg["hydra"]["overrides"]["task"]
            facts.overrides = [str(o) for o in task] if isinstance(task, list) else None
            facts.sweep_dir = str(report_paths[0])
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
            pass
    return facts


def _seed_plan(path: Path) -> str | None:
    """seeds=auto's plan (hydra_plugins/actcompare/seeds.py) in one line, or None."""
    try:
        p = json.loads(path.read_text())
        needed = p["seeds_needed"]
        return (
            f"a pilot of {p['pilot']} seeds; paired differences varied by {p['pooled_sd_points']} points (sd); "
            f"{needed if needed <= 1000 else 'more than 1000'} seeds decide ±{p['margin_points']:g} points; ran "
            f"{p['seeds']}" + (f" (capped by max_seeds={p['max_seeds']})" if p["capped"] else "")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _seed_list(records: Sequence[dict]) -> str:
    seeds = sorted({r.get("seed") for r in records if isinstance(r.get("seed"), int)})
    if not seeds:
        return "?"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 3:
        return f"{seeds[0]}–{seeds[-1]} ({len(seeds)})"
    return f"{', '.join(map(str, seeds))} ({len(seeds)})"


def more_seeds_command(facts: Facts, n: int, group_values: dict[str, list[str]], auto: bool = False) -> str:
    """The command that runs seeds 0..n-1 of this study (``auto``: lets seeds=auto plan them),
    reusing what ran (resume=true).

    From the sweep's own overrides when one sweep folder is reported (its seed override replaced);
    else rebuilt from the swept values (a merged report: say where to put the runs yourself).
    """
    if facts.overrides is not None:
        replaced = ("seed", "seeds", "resume", "hydra.sweep.dir")  # given again below
        kept = [o for o in facts.overrides if o.split("=", 1)[0].lstrip("+~") not in replaced]
        where = f" hydra.sweep.dir={facts.sweep_dir} resume=true"
    else:
        kept = [f"{k}={','.join(v)}" for k, v in group_values.items()]
        where = " hydra.sweep.dir=<a new folder>"
    quoted = [f"'{o}'" if any(ch in o for ch in " ()[]{}*?") else o for o in kept]
    seeds = "seeds=auto" if auto else f"'seed=range(0,{n})'"
    return f"actcompare -m {' '.join(quoted)} {seeds}{where}"


def binomial_se(acc: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` test images (fraction)."""
    return math.sqrt(acc * (1 - acc) / n) if 0 <= acc <= 1 and n > 0 else math.nan


def _group_size(record: dict) -> int:
    """How many models trained together with this run (1: alone)."""
    group = record.get("group")
    size = group.get("size") if isinstance(group, dict) else None
    return size if isinstance(size, int) and size > 0 else 1


def _minutes(seconds: Sequence[float], stacked: bool) -> str:
    if not seconds:
        return "?"
    return f"{sum(seconds) / 60:.1f} min over {len(seconds)} runs" + (
        " (a stacked group's time counted once)" if stacked else ""
    )
