"""Ctrl-C (SIGINT) and SIGTERM during training keep the finished work; resume=true completes a sweep.

The 'slow' activation (tests.helpers.SlowReLU, ~0.35 s per epoch on the tiny data) makes a run
last long enough to be interrupted after its first epoch.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import Proc, read_json

pytestmark = pytest.mark.slow

# The resume finishes the interrupted sweep, so it is short; but long enough (~0.4 s x 15) that a
# signal sent late by a test process starved of CPU (a full test session runs many torch processes
# on 2 cores) still lands before the slow run ends.
SWEEP_EPOCHS = 15
MID_EPOCH = 0.12  # seconds; an epoch of the slow activation takes >= 0.3 s


def data_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def interrupt_after_first_epoch(jobs: list[tuple[Proc, Path, str, int]], timeout: float = 120) -> None:
    """Send each process its signal in its second epoch: MID_EPOCH s after a metrics.csv matching
    folder/pattern got its first row (like a Ctrl-C at a random time; the moment right after a
    row is written is tested deterministically in test_experiment.py)."""
    pending = list(jobs)
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for job in list(pending):
            proc, folder, pattern, sig = job
            if proc.pid not in seen and any(data_rows(f) >= 1 for f in folder.glob(pattern)):
                seen[proc.pid] = time.monotonic()
            if proc.pid in seen and time.monotonic() - seen[proc.pid] >= MID_EPOCH:
                if proc.poll() is not None:
                    pytest.fail(
                        f"{proc.args} finished before the signal could be sent "
                        f"({time.monotonic() - seen[proc.pid]:.1f} s after its first epoch)"
                    )
                proc.send_signal(sig)
                pending.remove(job)
            elif proc.poll() is not None:
                res = proc.wait()
                pytest.fail(f"{proc.args} ended (rc {res.returncode}) before its first epoch:\n{res.stderr[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no epoch finished within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def interrupted(start_run_py, extra_conf: str, tmp_path_factory):
    """Stopped in their second epoch: a sweep (relu, slow) on the default fused launcher (both
    models in one program), the same sweep on the basic launcher (relu first, then slow) and with
    its two models in two local processes (hydra.launcher.executor=local) by SIGINT, and a single
    slow run by SIGTERM."""
    tmp = tmp_path_factory.mktemp("interrupt")
    args = {
        "sweep": [
            "-m",
            "activation=relu,slow",
            f"epochs={SWEEP_EPOCHS}",
            extra_conf,
            f"hydra.sweep.dir={tmp / 'sweep'}",
        ],
        "basic": [
            "-m",
            "activation=relu,slow",
            f"epochs={SWEEP_EPOCHS}",
            extra_conf,
            "hydra/launcher=basic",
            f"hydra.sweep.dir={tmp / 'basic'}",
        ],
        "local": [
            "-m",
            "activation=relu,slow",
            f"epochs={SWEEP_EPOCHS}",
            extra_conf,
            "hydra.launcher.executor=local",
            "hydra.launcher.processes=2",
            f"hydra.sweep.dir={tmp / 'local'}",
        ],
    }
    sweep, basic, local = (start_run_py(*args[k]) for k in ("sweep", "basic", "local"))
    single = start_run_py("activation=slow", "epochs=100", extra_conf, f"hydra.run.dir={tmp / 'single'}")
    interrupt_after_first_epoch(
        [
            (sweep, tmp / "sweep", "activation=slow*/metrics.csv", signal.SIGINT),
            (basic, tmp / "basic", "activation=slow*/metrics.csv", signal.SIGINT),
            (local, tmp / "local", "activation=slow*/metrics.csv", signal.SIGINT),
            (single, tmp / "single", "metrics.csv", signal.SIGTERM),
        ]
    )
    return {
        "sweep": (sweep.wait(timeout=60), tmp / "sweep"),
        "basic": (basic.wait(timeout=60), tmp / "basic"),
        "local": (local.wait(timeout=60), tmp / "local"),
        "single": (single.wait(timeout=60), tmp / "single"),
        "sweep_args": args["sweep"],
        "basic_args": args["basic"],
        "local_args": args["local"],
    }


def runs_by_activation(sweep: Path) -> dict[str, Path]:
    return {read_json(f)["activation"]: f.parent for f in sweep.glob("*/run.json")}


@pytest.mark.parametrize("which", ["sweep", "basic", "local", "single"])
def test_interrupt_exits_nonzero_without_traceback(interrupted, which: str) -> None:
    res, _ = interrupted[which]
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    assert "interrupted" in res.stderr


@pytest.mark.parametrize("which", ["sweep", "basic", "local", "single"])
def test_interrupted_run_keeps_its_epochs(interrupted, which: str) -> None:
    _, folder = interrupted[which]
    run_dir = folder if which == "single" else runs_by_activation(folder)["slow"]
    run = read_json(run_dir / "run.json")
    assert run["status"] == "interrupted"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) >= 1
    assert len(metrics) == run["epochs_completed"]
    assert metrics["epoch"].tolist() == list(range(1, len(metrics) + 1))
    assert "finished" in run


def test_runs_before_the_interrupt_stay_completed(interrupted) -> None:
    _, sweep = interrupted["basic"]
    runs = runs_by_activation(sweep)
    assert set(runs) == {"relu", "slow"}
    assert read_json(runs["relu"] / "run.json")["status"] == "completed"


def test_every_model_of_a_fused_group_keeps_its_epochs(interrupted) -> None:
    """Trained side by side, relu and slow were both mid-sweep: both interrupted, same epochs kept."""
    _, sweep = interrupted["sweep"]
    runs = {act: read_json(d / "run.json") for act, d in runs_by_activation(sweep).items()}
    assert {r["status"] for r in runs.values()} == {"interrupted"}
    assert {r["engine"] for r in runs.values()} == {"stacked"}
    assert runs["relu"]["epochs_completed"] == runs["slow"]["epochs_completed"] >= 1


@pytest.fixture(scope="module")
def resumed(interrupted, start_run_py):
    _, sweep = interrupted["basic"]
    relu = runs_by_activation(sweep)["relu"]
    before = {"run.json": (relu / "run.json").read_text(), "metrics.csv": (relu / "metrics.csv").read_text()}
    res = start_run_py(*interrupted["basic_args"], "resume=true").wait()
    fused = start_run_py(*interrupted["sweep_args"], "resume=true").wait()
    local = start_run_py(*interrupted["local_args"], "resume=true").wait()
    return res, sweep, before, fused, interrupted["sweep"][1], local, interrupted["local"][1]


@pytest.mark.parametrize("which", ["basic", "fused", "local"])
def test_resume_finishes_the_sweep(resumed, which: str) -> None:
    res, sweep, _, fused, fused_sweep, local, local_sweep = resumed
    if which == "fused":
        res, sweep = fused, fused_sweep
    if which == "local":
        res, sweep = local, local_sweep
    assert res.returncode == 0, res.stderr[-3000:]
    runs = runs_by_activation(sweep)
    assert set(runs) == {"relu", "slow"}, "resume must reuse the same job folders"
    for act, d in runs.items():
        run = read_json(d / "run.json")
        assert run["status"] == "completed", act
        assert len(pd.read_csv(d / "metrics.csv")) == SWEEP_EPOCHS
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["activation"]) == ["relu", "slow"] and set(summary["completed"]) == {1}
    assert "slow" in (sweep / "report.md").read_text()


def test_resume_skips_completed_runs(resumed) -> None:
    _, sweep, before, *_ = resumed
    relu = runs_by_activation(sweep)["relu"]
    after = read_json(relu / "run.json")
    assert after["started"] == json.loads(before["run.json"])["started"]
    assert (relu / "run.json").read_text() == before["run.json"]
    assert (relu / "metrics.csv").read_text() == before["metrics.csv"]
