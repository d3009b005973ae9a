"""hydra.launcher.executor: where the planned groups train.

Fast: how groups are dealt out to tasks, the cores split between local processes, and the Slurm array
submitit would submit (its sbatch script, rendered without a cluster). Slow, through run.py with real
processes (submitit's local executor): a task killed mid-epoch leaves only its own group unfinished,
recorded as interrupted, while the other task's runs complete; resume=true redoes only the killed
group. That the local executor's numbers equal the in-process ones is tests/test_launchers.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import submitit

from actcompare.errors import ConfigError
from actcompare.executors import Executor

from .conftest import read_json
from .helpers import KILL_MARKER


def test_groups_go_to_the_least_loaded_task() -> None:
    local = Executor("local", processes=2)
    assert local.deal([4, 3, 2, 1]) == [[0, 3], [1, 2]]  # 5 and 5 model-epochs
    assert local.deal([5]) == [[0]]  # never an empty task
    assert local.cap(5) == 3  # groups of at most 3 models: every process gets work
    assert local.threads() == max(1, (os.cpu_count() or 1) // 2)
    assert Executor().deal([1, 2, 3]) == [[0, 1, 2]] and Executor().threads() is None
    assert Executor("slurm", slurm={"cpus_per_task": 4}).deal([1, 2]) == [[0], [1]]  # a task per group
    assert Executor("slurm", slurm={"cpus_per_task": 4}).threads() == 4
    with pytest.raises(ConfigError, match="executor='cluster' is not allowed"):
        Executor("cluster")
    with pytest.raises(ConfigError, match="processes=0"):
        Executor("local", processes=0)


def test_a_finished_sweep_resumed_on_an_executor_submits_nothing(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    from actcompare.experiment import RunSpec, run_group

    def specs(*extra: str) -> list[RunSpec]:
        return [RunSpec(tiny_cfg(f"seed={s}", "epochs=1", *extra), tmp_path / f"relu-{s}") for s in (0, 1)]

    first = run_group(specs())
    monkeypatch.setattr(Executor, "run", lambda *a, **k: pytest.fail("a task was submitted"))
    again = run_group(specs("resume=true"), executor=Executor("local", processes=2))
    assert [r["run_id"] for r in again] == [r["run_id"] for r in first]
    assert {r["status"] for r in again} == {"completed"}


def test_slurm_groups_are_one_array_with_the_configured_resources(tmp_path: Path, monkeypatch) -> None:
    """submitit's sbatch script for 3 groups, as it would reach sbatch (captured instead of submitted)."""
    script = tmp_path / "sbatch.sh"
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    monkeypatch.setattr(
        submitit.SlurmExecutor,
        "_make_submission_command",
        lambda self, path: ["sh", "-c", f'cp "$0" {script}; echo Submitted batch job 42', str(path)],
    )
    params = {"partition": "gpu", "time": 30, "gpus_per_task": 1, "cpus_per_task": 4, "array_parallelism": 2}
    ex = Executor("slurm", folder=str(tmp_path / "submitit"), slurm=params)
    jobs = ex._submit(submitit, print, [("a",), ("b",), ("c",)])
    assert [j.job_id for j in jobs] == ["42_0", "42_1", "42_2"]
    text = script.read_text()
    for line in ("--array=0-2%2", "--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=4", "--time=30"):
        assert f"#SBATCH {line}" in text, text
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.slurm: Unavailable parameter"):
        Executor("slurm", folder=str(tmp_path), slurm={"gpus": 1})._submit(submitit, print, [()])


def test_slurm_without_a_cluster_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 0))
    with pytest.raises(ConfigError, match="needs a Slurm cluster"):
        Executor("slurm", folder=str(tmp_path))._submit(submitit, print, [()])


# The executors that start real processes: two local processes, or a Slurm array of two one-core
# tasks (`pytest -m slurm` where sbatch is on PATH; CI has no cluster).
EXECUTORS = {
    "local": ["hydra.launcher.executor=local", "hydra.launcher.processes=2"],
    "slurm": [
        "hydra.launcher.executor=slurm",
        "hydra.launcher.slurm.gpus_per_task=null",
        "hydra.launcher.slurm.cpus_per_task=1",
        "hydra.launcher.slurm.time=10",
    ],
}


# Not for slurm: a task SIGKILLed there ends without a result file, and only sacct (Slurm's accounting)
# tells submitit that it ended; the single-node Slurm this was tried on had no accounting, and the
# sweep waited. Same code path as local's once submitit reports the job ended. A task stopped by a
# signal says so itself: test_a_cancelled_slurm_task_leaves_only_its_group.
@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local"])
def test_a_killed_task_leaves_only_its_group_and_resume_redoes_only_that(
    start_run_py, extra_conf: str, tmp_path: Path, monkeypatch, executor: str
) -> None:
    """relu and killer x batch 32 and 64: two groups (batch size splits them), two tasks. killer
    SIGKILLs its task on its first 32-row batch: that task's two runs stay unfinished."""
    sweep = tmp_path / "sweep"
    monkeypatch.setenv(KILL_MARKER, str(tmp_path / "killed-once"))
    args = (
        "-m",
        "activation=relu,killer",
        "batch_size=32,64",
        "epochs=2",
        *EXECUTORS[executor],
        extra_conf,
        f"hydra.sweep.dir={sweep}",
    )
    res = start_run_py(*args).wait()
    assert (tmp_path / "killed-once").exists(), res.stderr[-3000:]
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "task 1 of 2 ended without finishing" in out and "ended without a result" in out, out[-3000:]
    assert "resume=true" in res.stderr, res.stderr[-3000:]

    def records() -> dict[tuple[str, int], tuple[str, dict]]:
        """(activation, batch size) -> (run folder name, run.json)"""
        return {
            (r["activation"], r["config"]["batch_size"]): (p.parent.name, r)
            for p in sweep.glob("*/run.json")
            for r in [read_json(p)]
        }

    first = records()
    assert {k: r["status"] for k, (_, r) in first.items()} == {
        ("relu", 32): "interrupted",
        ("killer", 32): "interrupted",
        ("relu", 64): "completed",
        ("killer", 64): "completed",
    }
    assert all("its task ended" in first[(a, 32)][1]["error"] for a in ("relu", "killer"))
    kept = {
        name: (r["started"], (sweep / name / "metrics.csv").read_bytes())
        for (_, b), (name, r) in first.items()
        if b == 64
    }

    again = start_run_py(*args, "resume=true").wait()
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r["status"] for _, r in records().values()} == {"completed"}
    for name, (started, metrics) in kept.items():  # the finished group was not trained again
        assert read_json(sweep / name / "run.json")["started"] == started
        assert (sweep / name / "metrics.csv").read_bytes() == metrics
    assert (sweep / "report.md").is_file()


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_tasks_give_the_in_process_numbers(start_run_py, tmp_path: Path) -> None:
    """2 activations x 2 seeds as two Slurm tasks (groups of 2) and in this process (one group of 4):
    the same metrics.csv values (losses to float32 round-off, accuracies within 0.3 points)."""
    sweep = ("-m", "activation=relu,tanh", "seed=0,1", "epochs=2")
    slurm = start_run_py(
        *sweep, *EXECUTORS["slurm"], "hydra.launcher.max_models=2", f"hydra.sweep.dir={tmp_path / 's'}"
    )
    here = start_run_py(*sweep, f"hydra.sweep.dir={tmp_path / 'h'}")
    for res in (slurm.wait(), here.wait()):
        assert res.returncode == 0, res.stderr[-3000:]
    frames = {}
    for name in ("s", "h"):
        csvs = sorted((tmp_path / name).glob("*/metrics.csv"))
        assert len(csvs) == 4
        frames[name] = pd.concat(map(pd.read_csv, csvs)).sort_values(["activation", "seed", "epoch"])
    tasks = {read_json(p)["task"]["job_id"] for p in (tmp_path / "s").glob("*/run.json")}
    assert len(tasks) == 2, tasks  # an array of two tasks
    a, b = (frames[n].reset_index(drop=True) for n in ("s", "h"))
    assert ((a["test_loss"] - b["test_loss"]).abs() <= 1e-4 * b["test_loss"].abs()).all()
    assert ((a["test_acc"] - b["test_acc"]).abs() <= 0.003).all()


@pytest.mark.slow
@pytest.mark.slurm
def test_a_cancelled_slurm_task_leaves_only_its_group(start_run_py, extra_conf: str, tmp_path: Path) -> None:
    """scancel of one array task (SIGTERM, as preemption or a time limit sends): its runs are recorded
    interrupted with their epochs, the other task's runs complete, and resume=true redoes only those."""
    import subprocess
    import time

    sweep = tmp_path / "sweep"
    args = ("-m", "activation=relu,slow", "batch_size=32,64", "epochs=15", *EXECUTORS["slurm"], extra_conf)
    proc = start_run_py(*args, f"hydra.sweep.dir={sweep}")
    deadline, job = time.monotonic() + 120, None
    while job is None and time.monotonic() < deadline:  # the batch-32 task, once it has an epoch on disk
        for path in sweep.glob("*batch_size=32*/metrics.csv"):
            record = read_json(path.parent / "run.json")
            if len(path.read_text().splitlines()) > 1 and "task" in record:
                job = record["task"]["job_id"]
        time.sleep(0.2)
    assert job is not None, "no epoch of the batch-32 group within 120 s"
    subprocess.run(["scancel", job], check=True)
    res = proc.wait()
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "TaskInterrupted" in res.stdout + res.stderr, (res.stdout + res.stderr)[-3000:]
    first = {p.parent.name: read_json(p) for p in sweep.glob("*/run.json")}
    status = {(r["activation"], r["config"]["batch_size"]): r["status"] for r in first.values()}
    assert status == {("relu", 32): "interrupted", ("slow", 32): "interrupted"} | {
        ("relu", 64): "completed",
        ("slow", 64): "completed",
    }
    assert all(r["epochs_completed"] >= 1 for r in first.values())
    again = start_run_py(*args, f"hydra.sweep.dir={sweep}", "resume=true").wait()
    assert again.returncode == 0, again.stderr[-3000:]
    for name, record in first.items():
        now = read_json(sweep / name / "run.json")
        assert now["status"] == "completed"
        assert (now["started"] == record["started"]) == (record["config"]["batch_size"] == 64), name
