"""seeds=auto through run.py: a pilot, a plan from its pooled sd, the rest, one report.

The plan's statistics are calibrated in tests/test_verdicts.py (test_seeds_auto_keeps_both_error_rates);
this checks the sweep does what its plan says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = ("model.hidden_sizes=[16]", "epochs=1", "diagnostics=false", "save_model=false")


def test_seeds_auto_runs_the_pilot_then_the_planned_seeds(run_py, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    r = run_py("-m", "activation=relu,tanh", "seeds=auto", "hydra.sweeper.max_seeds=9", f"hydra.sweep.dir={out}", *TINY)
    assert r.returncode == 0, r.stderr
    plan = json.loads((out / "seed_plan.json").read_text())
    assert plan["pilot"] == 7 and plan["comparisons"] == 1  # min_pairs(1): 2**(1-7) <= 0.05 / 2
    assert plan["seeds"] == min(max(plan["seeds_needed"], 7), 9)
    folders = [p for p in out.iterdir() if (p / "run.json").is_file()]
    assert len(folders) == 2 * plan["seeds"]  # every seed of both activations, once
    assert {json.loads((p / "run.json").read_text())["seed"] for p in folders} == set(range(plan["seeds"]))
    text = (out / "report.md").read_text()
    assert "seeds planned (seeds=auto)" in text and f"a pilot of {plan['pilot']} seeds" in text


def test_seeds_auto_refuses_a_seed_override(run_py, tmp_path: Path) -> None:
    r = run_py("-m", "activation=relu,tanh", "seeds=auto", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}", *TINY)
    assert r.returncode != 0
    assert "seeds=auto plans the seeds itself: drop the seed=... override" in r.stderr
    assert not list((tmp_path / "s").glob("*/run.json"))
