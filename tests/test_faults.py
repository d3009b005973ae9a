"""Faults around a sweep: one writer per sweep folder, workers that die with their sweep, a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from actcompare.experiment import RunSpec, run_group
from actcompare.recorder import RecordError

from .conftest import assert_clean_error, read_json


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


@pytest.mark.slow
def test_a_second_sweep_into_a_busy_folder_is_refused(start_run_py, extra_conf: str, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    first = start_run_py("-m", "activation=slow", "epochs=6", extra_conf, f"hydra.sweep.dir={sweep}")
    wait_for(lambda: (sweep / ".actcompare.lock").exists() or first.poll() is not None, 120, "the first sweep's lock")
    second = start_run_py("-m", "activation=relu", "epochs=1", f"hydra.sweep.dir={sweep}").wait()
    assert_clean_error(second, max_lines=2)
    assert "in use by another sweep" in second.stderr and str(first.pid) in second.stderr
    res = first.wait()
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (sweep / ".actcompare.lock").exists(), "the lock must be released at the end"
    assert [read_json(p)["activation"] for p in sweep.glob("*/run.json")] == ["slow"]


@pytest.mark.slow
def test_a_stale_lock_is_taken_over(run_py, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs
    (sweep / ".actcompare.lock").write_text(json.dumps({"pid": dead, "host": os.uname().nodename}))
    res = run_py("-m", "activation=relu", "epochs=1", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "stale lock" in res.stdout + res.stderr
    assert (sweep / "report.md").is_file()


@pytest.mark.slow
def test_killing_a_joblib_sweep_stops_its_workers(start_run_py, extra_conf: str, tmp_path: Path) -> None:
    """kill -9 of the sweep process: its workers notice within seconds, record their runs as
    interrupted with the epochs they have, and write nothing more."""
    sweep = tmp_path / "sweep"
    proc = start_run_py(
        "-m",
        "activation=slow",
        "seed=0,1",
        "epochs=40",
        extra_conf,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    )
    wait_for(
        lambda: any(rows(p) >= 1 for p in sweep.glob("*/metrics.csv")) or proc.poll() is not None,
        180,
        "a worker's first epoch",
    )
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "joblib started no worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def settled() -> bool:
        records = [read_json(p) for p in sweep.glob("*/run.json")]
        return bool(records) and all(r["status"] != "running" for r in records)

    wait_for(settled, 30, "the workers to record their end state")
    sizes = {p: p.stat().st_size for p in sweep.glob("*/metrics.csv")}
    time.sleep(2.0)
    assert {p: p.stat().st_size for p in sweep.glob("*/metrics.csv")} == sizes, "workers still writing"
    for path in sweep.glob("*/run.json"):
        record = read_json(path)
        assert record["status"] == "interrupted"
        metrics = path.parent / "metrics.csv"  # absent when the worker was stopped before its first epoch
        assert record["epochs_completed"] == (len(pd.read_csv(metrics)) if metrics.exists() else 0)
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers still running after their sweep was killed: {alive}"


def test_a_full_disk_names_the_file_and_keeps_complete_rows(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    from actcompare import recorder

    real_fsync, calls = os.fsync, []

    def fsync_fails_on_epoch_2(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 4:  # header, epoch 1 (metrics), header, epoch 1 (diagnostics) ... then full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(recorder.os, "fsync", fsync_fails_on_epoch_2)
    with pytest.raises(RecordError, match=r"could not write .*\.csv: No space left on device"):
        run_group([RunSpec(tiny_cfg("epochs=3"), tmp_path / "run")])
    monkeypatch.setattr(recorder.os, "fsync", real_fsync)
    for name in ("metrics.csv", "diagnostics.csv"):
        text = (tmp_path / "run" / name).read_text()
        assert text.endswith("\n")  # no partial row
        pd.read_csv(tmp_path / "run" / name)  # parses
    record = read_json(tmp_path / "run" / "run.json")
    assert record["status"] == "failed" and "No space left" in record["error"]
    assert record["epochs_completed"] == len(pd.read_csv(tmp_path / "run" / "metrics.csv"))


@pytest.mark.slow
def test_sweeping_experiment_is_refused_before_training(run_py, tmp_path: Path) -> None:
    res = run_py("-m", "experiment=tutorial,lr_sweep", f"hydra.sweep.dir={tmp_path / 's'}")
    assert_clean_error(res, max_lines=2)
    assert "sweeping experiment= is not supported" in res.stderr and "for e in" in res.stderr
    assert not list((tmp_path / "s").glob("*/run.json"))


@pytest.mark.slow
def test_jobs_that_would_share_a_folder_are_refused(run_py, tmp_path: Path) -> None:
    """A folder name that leaves out a swept key (here: a fixed subdir while the seed is swept)
    would put two different runs in one folder: refused before anything trains."""
    res = run_py("-m", "seed=0,1", "epochs=1", "hydra.sweep.subdir=same", f"hydra.sweep.dir={tmp_path / 's'}")
    assert_clean_error(res, max_lines=2)
    assert "would share the folder" in res.stderr
    assert not (tmp_path / "s" / "same" / "run.json").exists()
