"""The joblib and submitit_local launchers give the same files and numbers as Hydra's basic launcher."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import read_json

pytestmark = pytest.mark.slow

LAUNCHERS = ("basic", "joblib", "submitit_local")
ARGS = ("-m", "activation=relu,tanh", "epochs=1")


def start_background(request: pytest.FixtureRequest) -> dict:
    """The three sweeps, queued at the start of the session (conftest). launcher -> (Proc, folder)."""
    start_run_py = request.getfixturevalue("start_run_py")
    tmp = request.getfixturevalue("tmp_path_factory").mktemp("launchers")
    procs = {}
    for launcher in LAUNCHERS:
        extra = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
        procs[launcher] = (
            start_run_py(*ARGS, *extra, f"hydra.sweep.dir={tmp / launcher}", queued=True),
            tmp / launcher,
        )
    return procs


@pytest.fixture(scope="module")
def sweeps(background) -> dict[str, tuple]:
    return {name: (proc.wait(), out) for name, (proc, out) in background[__name__].items()}


def files(sweep: Path) -> set[str]:
    """Relative paths of everything in the sweep folder except submitit's own bookkeeping."""
    return {p.relative_to(sweep).as_posix() for p in sweep.rglob("*")
            if p.is_file() and not p.relative_to(sweep).as_posix().startswith(".submitit/")}  # fmt: skip


def metrics(sweep: Path) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in sorted(sweep.glob("*/metrics.csv"))]
    return pd.concat(frames, ignore_index=True).drop(columns="epoch_seconds").sort_values(["activation", "seed"])


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sweep_succeeds(sweeps, launcher: str) -> None:
    res, out = sweeps[launcher]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    runs = [read_json(f) for f in out.glob("*/run.json")]
    assert sorted(r["activation"] for r in runs) == ["relu", "tanh"]
    assert {r["status"] for r in runs} == {"completed"}
    assert (out / "report.md").is_file()


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_same_files_as_basic(sweeps, launcher: str) -> None:
    basic, other = files(sweeps["basic"][1]), files(sweeps[launcher][1])
    assert basic, "the basic sweep wrote nothing"
    assert other == basic, f"only basic: {sorted(basic - other)}; only {launcher}: {sorted(other - basic)}"


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_same_metrics_as_basic(sweeps, launcher: str) -> None:
    basic, other = metrics(sweeps["basic"][1]), metrics(sweeps[launcher][1])
    assert len(basic) == 2
    exact = ["activation", "seed", "epoch", "train_acc", "test_acc"]
    pd.testing.assert_frame_equal(basic[exact].reset_index(drop=True), other[exact].reset_index(drop=True))
    # Losses: a launcher may give each job fewer torch threads, which reorders float sums (~1e-7).
    pd.testing.assert_frame_equal(basic.reset_index(drop=True), other.reset_index(drop=True), rtol=1e-5)


def test_joblib_splits_the_cores_between_jobs(sweeps) -> None:
    _, out = sweeps["joblib"]
    assert {read_json(f)["threads"] for f in out.glob("*/run.json")} == {1}  # n_jobs=-1: one job per core
