"""benchmarks/gpu_acceptance.py: the one command for a lent GPU, run here on the CPU as a smoke test."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actcompare.engines.plan import ELEMENTWISE_OPTIMIZERS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_acceptance.py"


@pytest.fixture(scope="module")
def acceptance():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_acceptance"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_acceptance", None)


def test_it_checks_every_optimizer_the_engine_may_graph(acceptance) -> None:
    import torch

    expected = {
        n
        for n in ELEMENTWISE_OPTIMIZERS
        if "capturable" in inspect.signature(getattr(torch.optim, n.rsplit(".", 1)[1])).parameters
    }
    assert set(acceptance.graphable_optimizers()) == expected and "torch.optim.NAdam" in expected


def test_it_reads_the_reference_recipe(acceptance) -> None:
    recipe = acceptance.reference_recipe()
    assert recipe.hidden == [128, 128] and recipe.batch_size == 64 and recipe.epochs == 10
    assert set(recipe.reference_acc) >= set(acceptance.TUTORIAL_ACTS)
    assert all(96 < acc < 99 for acc in recipe.reference_acc.values())
    assert recipe.activations["leaky_relu"]().negative_slope == 0.01


def test_table_has_a_verdict_per_row(acceptance) -> None:
    t = acceptance.Table()
    t.add("a", "x", "0", "0", True)
    t.add("b", "y", "2", "<= 1", False)
    t.skip("f", "z", "no hydra")
    lines = t.render().splitlines()
    assert [line.split("|")[-1].strip() for line in lines[2:]] == ["PASS", "FAIL", "SKIP"]


@pytest.mark.slow
def test_quick_cpu_run_prints_the_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_ROOT"}  # synthetic data
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "table.json"
    res = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--quick",
            "--json",
            str(out),
            "--csv",
            str(tmp_path / "f.csv"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["item"] for r in rows} == set("abcdefgh")
    assert {r["verdict"] for r in rows} <= {"PASS", "INFO", "SKIP"}
    assert [r["verdict"] for r in rows if r["item"] == "a"] == ["PASS"] * 6  # restore exact on the CPU too
    assert "| verdict" in res.stdout and "synthetic" in res.stdout
    # targets.py's figures: only from a real GPU run on MNIST, so none from this one
    assert (tmp_path / "f.csv").read_text().splitlines() == ["name,value,unit,note", "device_cuda,0,,"]
