"""The report's bottom line on synthetic sweeps whose answer is known: what to use, how sure, what next."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actcompare.report.facts import read_facts
from actcompare.report.load import load_sweep
from actcompare.report.markdown import render
from actcompare.report.stats import summarize

from .conftest import write_run

SEED_NOISE = np.random.default_rng(0).normal(0, 0.002, size=16)  # shared by every activation of a seed


def sweep(root: Path, offsets: dict[str, float], seeds: int, jitter: float = 0.0003) -> Path:
    """Runs whose final accuracy is relu's per-seed value plus the activation's offset (fractions)."""
    rng = np.random.default_rng(1)
    for act, offset in offsets.items():
        for s in range(seeds):
            acc = 0.978 + SEED_NOISE[s] + offset + (rng.normal(0, jitter) if act != "relu" else 0.0)
            write_run(root / f"activation={act},seed={s}", act, s, (acc - 0.02, acc - 0.005, acc))
    return root


def bottom_line(root: Path) -> str:
    runs = load_sweep([root])
    summary = summarize(runs)
    text = render(runs, [str(root)], summary, None, [], read_facts(list(runs.runs["path"]), [str(root)]))
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Bottom line", headings  # the first section after the title
    return text.split("## Bottom line", 1)[1].split("\n## ", 1)[0]


def test_a_better_activation_is_named_with_its_interval_and_nothing_left_to_run(tmp_path: Path) -> None:
    line = bottom_line(sweep(tmp_path, {"relu": 0, "leaky_relu": 0.01, "tanh": 0.0, "sigmoid": -0.01}, 12))
    assert "**Use leaky_relu**: it beats relu by +1.0" in line, line
    assert "% interval [" in line
    assert "**tanh** and relu are equivalent within ±0.30 points" in line
    assert "Avoid sigmoid (-1.00 points" in line
    assert "paired over 12 seed(s)" in line and "at most 5 % chance of any false claim" in line
    assert "Next: nothing to run" in line


def test_all_equivalent_says_use_any(tmp_path: Path) -> None:
    line = bottom_line(sweep(tmp_path, {"relu": 0, "tanh": 0.0002, "sigmoid": -0.0002}, 12))
    assert "**Use relu or any of sigmoid and tanh**: equivalent within ±0.30 points." in line, line


def test_too_few_seeds_say_no_conclusion_and_the_command_with_its_time(tmp_path: Path) -> None:
    root = sweep(tmp_path, {"relu": 0, "tanh": 0.001, "sigmoid": -0.002}, 3, jitter=0.002)
    line = bottom_line(root)
    assert "**No conclusion yet**: 3 paired seed(s) cannot decide ±0.30 points" in line, line
    assert "Next: `actcompare -m activation=relu,sigmoid,tanh 'seed=range(0," in line, line
    assert "hydra.sweep.dir=<a new folder>" in line and "reused" not in line  # a folder without its sweep's command
    (root / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['activation=relu,tanh,sigmoid']\n")
    line = bottom_line(root)  # the sweep's own folder: its command, continued in place
    assert "`actcompare -m activation=relu,tanh,sigmoid 'seed=range(0," in line, line
    assert f"hydra.sweep.dir={root} resume=true`" in line and "the runs already made are reused" in line


def test_the_rerun_time_comes_from_these_runs_times() -> None:
    from actcompare.report.facts import Facts
    from actcompare.report.story import extra_time

    facts = Facts(train_seconds=120.0, timed_runs=12)  # 10 s per run
    assert extra_time(facts, seeds=18, have=3, groups=4) == " (about 10 min on the machine that made these runs)"
    assert extra_time(Facts(), seeds=18, have=3, groups=4) == ""


def test_one_seed_points_to_seeds_auto(tmp_path: Path) -> None:
    line = bottom_line(sweep(tmp_path, {"relu": 0, "tanh": 0.001}, 1))
    assert "**No conclusion yet**" in line and "one seed gives curves, not a conclusion" in line, line
    assert "seeds=auto" in line


def test_nothing_completed(tmp_path: Path) -> None:
    write_run(tmp_path / "activation=relu,seed=0", "relu", 0, (0.9,), status="interrupted")
    write_run(tmp_path / "activation=relu,seed=1", "relu", 1, (), status="failed")
    runs = load_sweep([tmp_path])
    text = render(runs, [str(tmp_path)], summarize(runs), None, [])
    assert "## Bottom line" in text and "No run completed" in text


@pytest.mark.parametrize("verdict", ["better", "worse"])
def test_a_difference_inside_the_margin_reads_as_within_margin(verdict: str) -> None:
    import pandas as pd

    from actcompare.report.story import label

    row = pd.Series({"verdict": verdict, "within_margin": True})
    assert label(row) == f"{verdict} (within margin)"
    assert label(pd.Series({"verdict": verdict, "within_margin": False})) == verdict
