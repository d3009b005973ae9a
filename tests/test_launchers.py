"""Every launcher gives the same files and numbers as Hydra's basic launcher (one model per job):
the default fused launcher (stacked engine: all models in one program), the fused launcher handing
its groups to two local processes (hydra.launcher.executor=local), joblib and submitit_local.

This is the engines' equivalence test through run.py: 2 activations x 2 seeds x 2 epochs. Also: the
fused launcher composes each job once (it takes the configs Hydra's batch check composed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext
from omegaconf import OmegaConf

from hydra_plugins.actcompare.launcher import KeptConfigs

from .conftest import read_json

slow = pytest.mark.slow  # the sweeps (run.py subprocesses); the KeptConfigs tests are fast

LAUNCHERS = ("fused", "fused_local", "basic", "joblib", "submitit_local")
EXTRA = {
    "fused": ["hydra.verbose=[hydra_plugins.actcompare.launcher]"],  # the default; its debug lines
    "fused_local": ["hydra.launcher.executor=local", "hydra.launcher.processes=2"],  # a group per seed
}
ARGS = ("-m", "activation=relu,tanh", "seed=0,1", "epochs=2")
OTHERS = [name for name in LAUNCHERS if name != "basic"]


@pytest.fixture(scope="module")
def sweeps(start_run_py, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """One sweep per launcher, queued together. launcher -> (CompletedProcess, folder)."""
    tmp = tmp_path_factory.mktemp("launchers")
    procs = {}
    for launcher in LAUNCHERS:
        extra = EXTRA.get(launcher, [f"hydra/launcher={launcher}"])
        procs[launcher] = (
            start_run_py(*ARGS, *extra, f"hydra.sweep.dir={tmp / launcher}", queued=True),
            tmp / launcher,
        )
    return {name: (proc.wait(), out) for name, (proc, out) in procs.items()}


def files(sweep: Path) -> set[str]:
    """Relative paths of everything in the sweep folder except submitit's own bookkeeping."""
    return {
        p.relative_to(sweep).as_posix()
        for p in sweep.rglob("*")
        if p.is_file() and not p.relative_to(sweep).as_posix().startswith(".submitit/")
    }


def metrics(sweep: Path) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in sorted(sweep.glob("*/metrics.csv"))]
    return pd.concat(frames, ignore_index=True).drop(columns="epoch_seconds").sort_values(["activation", "seed"])


@slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sweep_succeeds(sweeps, launcher: str) -> None:
    res, out = sweeps[launcher]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    runs = [read_json(f) for f in out.glob("*/run.json")]
    assert sorted((r["activation"], r["seed"]) for r in runs) == [("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1)]
    assert {r["status"] for r in runs} == {"completed"}
    assert {r["engine"] for r in runs} == {"stacked" if launcher.startswith("fused") else "single"}
    assert (out / "report.md").is_file()


@slow
@pytest.mark.parametrize("launcher", OTHERS)
def test_same_files_as_basic(sweeps, launcher: str) -> None:
    basic, other = files(sweeps["basic"][1]), files(sweeps[launcher][1])
    assert basic, "the basic sweep wrote nothing"
    assert other == basic, f"only basic: {sorted(basic - other)}; only {launcher}: {sorted(other - basic)}"


@slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_same_metrics_as_basic(sweeps, launcher: str) -> None:
    basic, other = metrics(sweeps["basic"][1]), metrics(sweeps[launcher][1])
    assert len(basic) == 8
    exact = ["activation", "seed", "epoch", "train_acc", "test_acc"]
    pd.testing.assert_frame_equal(basic[exact].reset_index(drop=True), other[exact].reset_index(drop=True))
    # Losses: a launcher may give each job fewer torch threads, which reorders float sums (~1e-7).
    pd.testing.assert_frame_equal(basic.reset_index(drop=True), other.reset_index(drop=True), rtol=1e-5)


@slow
@pytest.mark.parametrize("launcher", ["joblib", "fused_local"])
def test_parallel_workers_split_the_cores(sweeps, launcher: str) -> None:
    _, out = sweeps[launcher]
    cores = os.cpu_count() or 1
    expected = 1 if launcher == "joblib" else max(1, cores // 2)  # joblib n_jobs=-1: one job per core
    assert {read_json(f)["threads"] for f in out.glob("*/run.json")} == {expected}
    if launcher == "fused_local":  # two groups (one per seed), two tasks
        assert {read_json(f)["group"]["size"] for f in out.glob("*/run.json")} == {2}


@slow
@pytest.mark.parametrize("fused", ["fused", "fused_local"])
def test_stacked_engine_matches_the_per_run_engine(sweeps, fused: str) -> None:
    """Same initial weights and batch order per seed: every metrics.csv value of the 4 runs agrees,
    losses to float32 round-off (1e-4 relative), accuracies within 0.3 points: in one group of 4 in
    this process, or in two groups of 2 in two processes."""
    basic, fused = (metrics(sweeps[name][1]).reset_index(drop=True) for name in ("basic", fused))
    assert len(basic) == len(fused) == 8
    pd.testing.assert_frame_equal(basic[["activation", "seed", "epoch"]], fused[["activation", "seed", "epoch"]])
    for col in ("train_loss", "test_loss"):
        assert ((fused[col] - basic[col]).abs() <= 1e-4 * basic[col].abs()).all(), (col, basic[col], fused[col])
    for col in ("train_acc", "test_acc"):
        assert ((fused[col] - basic[col]).abs() <= 0.003).all(), (col, basic[col], fused[col])


@slow
def test_fused_composes_each_job_once_and_speaks_first(sweeps) -> None:
    """Hydra's BasicSweeper composes every job to check the batch; the launcher reuses those configs
    (its debug line counts them). The command's first line comes before torch's imports."""
    res, _ = sweeps["fused"]
    assert "composed 4 jobs: 4 in the sweeper's batch check" in res.stdout and " 0 here " in res.stdout, res.stdout
    lines = res.stdout.splitlines()
    assert "][actcompare] starting a sweep" in lines[0], lines[:3]
    said = [
        next(i for i, line in enumerate(lines) if text in line)
        for text in ("composing 4 jobs", "planning: 1 group", "reading MNIST", "epoch 1/2")
    ]
    assert said == sorted(said), lines[:12]


class _Loader:
    """A config loader that counts its compositions."""

    def __init__(self) -> None:
        self.calls = 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.calls += 1
        return OmegaConf.create({"overrides": list(sweep_overrides)})


class _Sweeper(Sweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config

    def sweep(self, arguments):
        raise NotImplementedError


def test_kept_configs_hand_each_checked_config_out_once() -> None:
    loader, master = _Loader(), OmegaConf.create({"a": 1})
    kept = KeptConfigs.install(loader)
    assert KeptConfigs.install(loader) is kept  # once per loader
    sweeper = _Sweeper()
    sweeper.setup(hydra_context=HydraContext(config_loader=loader, callbacks=None), task_function=None, config=master)
    sweeper.validate_batch_is_legal([["x=1"], ["x=2"]])  # Hydra's own check, as BasicSweeper calls it
    assert loader.calls == 2
    assert kept.take(master, ("x=1",)).overrides == ["x=1"]
    assert kept.take(master, ["x=1"]) is None  # handed out once
    assert kept.take(OmegaConf.create({"a": 1}), ["x=2"]) is None  # only for the master config it was composed from
    loader.load_sweep_config(master, ["x=3"])  # not from the check: its caller may keep and change it
    assert kept.take(master, ["x=3"]) is None and loader.calls == 3
