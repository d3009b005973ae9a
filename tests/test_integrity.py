"""Nothing lost, nothing conflated, nothing written where it must not be (issue 16), through the
commands themselves: ``run.py`` (= ``actcompare``) and ``scripts/report.py`` (= ``actcompare-report``).

Every process of this module is queued at once (``procs``); each test waits for the ones it checks.
Refusals stop before anything trains, so most of these processes cost little more than their imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra.experimental.callback import Callback

from .conftest import read_json, write_run

pytestmark = pytest.mark.slow

SUBDIR = "hydra.sweep.subdir=${activation.name}_${seed}"  # job folders named by activation and seed only
CONFIGS = {  # test-only activation configs (hydra.searchpath)
    "rrelu": "name: rrelu\nmodule:\n  _target_: torch.nn.RReLU\n",  # random slopes in training
    "broken": "name: broken\n",  # no module
    "fake_relu": "name: relu\nmodule:\n  _target_: torch.nn.Tanh\n",  # relu's name, another function
    "fails_later": "name: fails_later\nmodule:\n  _target_: tests.helpers.FailsLater\n",
}


class JobEndRecorder(Callback):
    """Appends what Hydra's on_job_end sees to a JSON-lines file: the job's folder, its return value,
    and the run's files at that moment."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        out = Path(str(config.hydra.runtime.output_dir))
        record = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
        rows = len((out / "metrics.csv").read_text().splitlines()) - 1 if (out / "metrics.csv").exists() else 0
        line = {
            "dir": out.name,
            "status": job_return.status.name,
            "value": job_return._return_value,
            "run_status": record.get("status"),
            "final": record.get("final"),
            "rows": rows,
            "model": (out / "model.pt").exists(),
            "log": (out / "run.log").read_text() if (out / "run.log").exists() else "",
        }
        with self.path.open("a") as f:
            f.write(json.dumps(line, default=str) + "\n")


def callback(path: Path) -> str:
    return f"+hydra.callbacks.rec={{_target_:tests.test_integrity.JobEndRecorder,path:'{path}'}}"


def sweep_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integrity")


@pytest.fixture(scope="module")
def conf(tmp: Path, extra_conf: str) -> list[str]:
    """hydra.searchpath with conftest's test activations and this module's."""
    folder = tmp / "conf"
    (folder / "activation").mkdir(parents=True)
    for name, text in CONFIGS.items():
        (folder / "activation" / f"{name}.yaml").write_text(text)
    theirs = extra_conf.partition("[")[2].rstrip("]")
    return [f"hydra.searchpath=[{theirs},file://{folder}]"]


@pytest.fixture(scope="module")
def procs(start_run_py, conf: list[str], tmp: Path) -> dict[str, tuple[Any, Path]]:
    """name -> (Proc, its folder). Every process of the module, queued together."""
    started: dict[str, tuple[Any, Path]] = {}

    def start(name: str, *args: str, script: str = "run.py") -> None:
        started[name] = (start_run_py(*args, script=script, queued=True), tmp / name)

    def sweep(name: str, *args: str) -> None:
        start(name, "-m", *args, *conf, f"hydra.sweep.dir={tmp / name}")

    # trained: the job contract under both launchers, a stochastic activation, a failed stacked attempt
    sweep("fused", "activation=relu,rrelu", "seed=0,1", "epochs=1", SUBDIR, callback(tmp / "fused.jsonl"))
    sweep(
        "basic",
        "activation=relu,rrelu",
        "seed=0",
        "epochs=1",
        SUBDIR,
        "hydra/launcher=basic",
        callback(tmp / "basic.jsonl"),
    )
    sweep(
        "tracker",
        "activation=relu,fails_later",
        "epochs=2",
        "tracker=tensorboard",
        "diagnostics=false",
        "save_model=false",
    )
    # refused before anything trains
    sweep("typo", "activation=relu,relux", "epochs=1")
    sweep("max_models", "activation=relu,tanh", "epochs=1", "hydra.launcher.max_models=0")
    sweep("broken", "activation=relu,broken", "epochs=1")
    sweep("shared_label", "activation=relu,fake_relu", "epochs=1")
    sweep("zero_twice", "optimizer.weight_decay=0,0.0", "epochs=1")
    sweep("escape", "activation=leaky_relu", "activation.module.negative_slope=../../../escaped", "epochs=1")
    start("non_ascii", "-m", "activation=relu", f"hydra.sweep.dir={tmp / 'données'}")
    start("space_after_comma", "-m", "activation=relu,", "tanh", f"hydra.sweep.dir={tmp / 'space_after_comma'}")
    start("no_data", "data.download=false", f"data.root={tmp / 'nothing'}", f"hydra.run.dir={tmp / 'runs' / 'one'}")
    return started


def result(procs, name: str):
    proc, folder = procs[name]
    return proc.wait(), folder


def assert_refused(res, *must: str) -> None:
    """Non-zero exit, no traceback, the error last, and nothing that reads as success."""
    text = res.stdout + res.stderr
    assert res.returncode not in (0, 130), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), res.stderr[-3000:]
    assert "Sweep finished" not in text and "report:" not in text and "no sweep report" not in text, text[-3000:]
    for m in must:
        assert m in res.stderr, (m, res.stderr[-3000:])


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "must"),
    [
        ("typo", ["unknown activation 'relux'"]),
        ("max_models", ["hydra.launcher.max_models=0 is not allowed"]),
        ("broken", ["activation.module", "(in job activation=broken"]),
        ("shared_label", ["activation name 'relu' is shared by two different activation configs"]),
        ("zero_twice", ["are the same run", "0 and 0.0"]),
        ("escape", ["outside the sweep folder", "activation.module.negative_slope=../../../escaped"]),
    ],
)
def test_a_refused_sweep_says_one_thing_and_leaves_nothing(procs, name: str, must: list[str]) -> None:
    res, folder = result(procs, name)
    assert_refused(res, *must)
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1, res.stderr
    assert not folder.exists(), f"a refused sweep left {sorted(p.name for p in folder.rglob('*'))}"
    assert not list(folder.parent.glob("escaped*")), "a run was written outside its sweep folder"


def test_an_override_hydra_cannot_parse_says_what_to_quote(procs) -> None:
    res, folder = result(procs, "non_ascii")
    assert_refused(res, "'é'", "inside quotes", 'hydra.sweep.dir="')
    assert len(res.stderr.strip().splitlines()) == 1 and not folder.exists()
    res, folder = result(procs, "space_after_comma")
    assert_refused(res, "cannot parse the override 'activation=relu,'", "space after a comma", "quote")
    assert not folder.exists()


def test_a_missing_dataset_leaves_no_run_folder(procs, tmp: Path) -> None:
    res, _ = result(procs, "no_data")
    assert_refused(res, "MNIST")
    assert not (tmp / "runs" / "one").exists()


def test_resume_into_another_configs_runs_is_refused(procs, start_run_py, conf: list[str]) -> None:
    """Same job folder names (relu_0, ...), another config: refused in one line, the runs untouched."""
    res, folder = result(procs, "fused")
    assert res.returncode == 0, res.stderr[-3000:]
    before = sweep_files(folder)
    again = start_run_py(
        "-m", "activation=relu,rrelu", "seed=0,1", "epochs=2", SUBDIR, "resume=true", *conf, f"hydra.sweep.dir={folder}"
    ).wait()
    assert_refused(again, "run of another config", "epochs: 1 there, 2 here", "resume=true continues only")
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
    after = {k: v for k, v in sweep_files(folder).items() if not k.startswith(".")}
    assert after == {k: v for k, v in before.items() if not k.startswith(".")}


# ---------------------------------------------------------------- Hydra's job contract


@pytest.mark.parametrize("launcher", ["fused", "basic"])
def test_on_job_end_sees_the_finished_job_and_its_run_log_holds_its_own_lines(procs, tmp: Path, launcher: str) -> None:
    res, _ = result(procs, launcher)
    assert res.returncode == 0, res.stderr[-3000:]
    seen = [json.loads(line) for line in (tmp / f"{launcher}.jsonl").read_text().splitlines()]
    jobs = {"relu_0", "rrelu_0"} | ({"relu_1", "rrelu_1"} if launcher == "fused" else set())
    assert sorted(s["dir"] for s in seen) == sorted(jobs)
    for s in seen:
        assert s["status"] == "COMPLETED" and s["run_status"] == "completed", s
        assert s["rows"] == 1 and s["model"], s  # trained and saved before on_job_end
        assert s["value"] == pytest.approx(float(s["final"]["test_acc"])), s  # the real objective
        act, seed = s["dir"].rsplit("_", 1)
        log = s["log"]
        assert f"- {act} seed {seed}: " in log and "completed" in log, log
        for other in jobs - {s["dir"]}:
            o_act, o_seed = other.rsplit("_", 1)
            assert f"- {o_act} seed {o_seed}: " not in log, (s["dir"], log)
        if launcher == "fused":
            assert "epoch 1/1" in log, log


# ---------------------------------------------------------------- results do not depend on company


def test_a_stochastic_activation_gives_the_same_numbers_in_any_company(procs) -> None:
    """rrelu (random slopes in training) seed 0 trained in a sweep of 4 under the fused launcher and
    beside one other run under the basic launcher: the same numbers; the fused launcher said why."""
    fused, f_dir = result(procs, "fused")
    basic, b_dir = result(procs, "basic")
    assert fused.returncode == 0 and basic.returncode == 0, fused.stderr[-2000:] + basic.stderr[-2000:]
    assert "rrelu depends on the random state" in fused.stdout + fused.stderr
    a = pd.read_csv(f_dir / "rrelu_0" / "metrics.csv").drop(columns="epoch_seconds")
    b = pd.read_csv(b_dir / "rrelu_0" / "metrics.csv").drop(columns="epoch_seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert read_json(f_dir / "rrelu_0" / "run.json")["engine"] == "single"
    assert read_json(f_dir / "relu_0" / "run.json")["engine"] == "stacked"


def test_a_redone_stacked_attempt_leaves_no_tracker_files(procs) -> None:
    """fails_later breaks the stacked group in epoch 2; both runs are redone one at a time. The run
    that fails again before its first epoch keeps no scalars; the other only its own attempt's."""
    res, folder = result(procs, "tracker")
    assert res.returncode == 1, res.stderr[-3000:]
    runs = {read_json(p)["activation"]: p.parent for p in folder.glob("*/run.json")}
    failed, relu = read_json(runs["fails_later"] / "run.json"), read_json(runs["relu"] / "run.json")
    assert failed["status"] == "failed" and failed["epochs_completed"] == 0
    assert not (runs["fails_later"] / "tensorboard").exists()
    assert relu["status"] == "completed" and relu["engine"] == "single"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["relu"] / "tensorboard"))  # every event file in the folder
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]  # the stacked attempt's epoch 1 is gone


# ---------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def reports(start_run_py, tmp: Path) -> dict[str, tuple[Any, Path]]:
    """Report processes on synthetic run folders (scripts/report.py = actcompare-report)."""
    r = tmp / "reports"
    # two sweeps both called "sweep", job folders named by activation: different runs, same base names
    for where, accs in (("a", (0.90, 0.91)), ("b", (0.80, 0.81))):
        for act, shift in (("relu", 0.0), ("tanh", 0.02)):
            for seed in (0, 1):
                early = (0.5,) if where == "a" else (0.5, 0.6)  # a: 2 epochs, b: 3 (another config)
                write_run(r / where / "sweep" / f"{act}_{seed}", act, seed, test_acc=(*early, accs[seed] + shift))
    # one sweep: lr 1e-3 and 1.0000001e-3 (two settings), weight_decay 0 and 0.0 (one run, found twice),
    # and malformed figure files
    ident = r / "ident"
    for lr, shift in ((1e-3, 0.0), (1.0000001e-3, 0.05)):
        for seed in (0, 1):
            for act in ("relu", "tanh"):
                write_run(
                    ident / f"{act}_lr{lr}_{seed}",
                    act,
                    seed,
                    test_acc=(0.5, 0.9 + shift + 0.01 * seed),
                    optimizer={"_target_": "torch.optim.Adam", "lr": lr, "weight_decay": 0},
                )
    twin = write_run(
        ident / "relu_again_0",
        "relu",
        0,
        test_acc=(0.5, 0.9),
        optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 0.0},
    )
    (twin / "examples.npz").write_bytes(b"")
    (ident / "relu_lr0.001_0" / "examples.npz").write_bytes(b"PK\x03\x04 truncated")
    (ident / "tanh_lr0.001_0" / "examples.npz").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}")
    (ident / "relu_lr0.001_1" / "confusion.csv").write_text("true,pred_0,pred_1\n0,5,\n1,,5\n")
    # a run folder as input: its own diagnostics.csv must stay as it is
    run = write_run(r / "single_run", "relu", 0)
    (run / "diagnostics.csv").write_text("activation,seed,epoch,layer,grad_norm\nrelu,0,1,1,0.5\n")
    procs: dict[str, tuple[Any, Path]] = {}

    def report(name: str, *args: str) -> None:  # name -> (Proc, the --out folder)
        procs[name] = (start_run_py(*args, script="scripts/report.py", queued=True), Path(args[-1]))

    report("merged", str(r / "a" / "sweep"), str(r / "b" / "sweep"), "--out", str(r / "merged"))
    report("ident", str(ident), "--out", str(r / "ident_out"))
    report("into_run", str(run), "--out", str(run))
    report("from_run", str(run), "--out", str(r / "from_run"))
    return procs


def test_merged_sweeps_with_one_base_name_keep_their_runs_apart(reports) -> None:
    res, out = reports["merged"][0].wait(), reports["merged"][1]
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and runs["run"].is_unique, runs["run"].tolist()
    assert {r.split("/sweep/")[0] for r in runs["run"]} == {"a", "b"}
    results = pd.read_csv(out / "results.csv")
    assert results.groupby("run")["epoch"].max().to_dict() == {
        r: (2 if r.startswith("a/") else 3) for r in runs["run"]
    }, "a run's rows come from another run"


def test_identity_is_canonical_and_labels_tell_groups_apart(reports) -> None:
    res, out = reports["ident"][0].wait(), reports["ident"][1]
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8, runs[["run", "group"]]  # weight_decay 0 and 0.0: one run, counted once
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and summary.iloc[:, 0].is_unique, summary.iloc[:, 0].tolist()
    assert {"0.001", "0.0010000001"} <= set(runs["optimizer.lr"].astype(str)), runs["optimizer.lr"].tolist()
    # malformed figure files: one warning naming each, the report written all the same
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    for name in ("relu_lr0.001_0/examples.npz", "tanh_lr0.001_0/examples.npz", "relu_lr0.001_1/confusion.csv"):
        assert sum(name in w for w in warnings) == 1, (name, res.stderr)
    assert "Traceback" not in res.stderr and (out / "report.md").is_file()


def test_a_report_never_writes_into_a_run_folder(reports) -> None:
    res, run = reports["into_run"][0].wait(), reports["into_run"][1]
    assert res.returncode == 2 and "is a run folder" in res.stderr, res.stderr
    res, out = reports["from_run"][0].wait(), reports["from_run"][1]
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "diagnostics.csv").read_text() == "activation,seed,epoch,layer,grad_norm\nrelu,0,1,1,0.5\n"
    assert sorted(p.name for p in run.iterdir()) == ["diagnostics.csv", "metrics.csv", "run.json"]
    assert (out / "report.md").is_file()


def test_an_out_folder_holds_exactly_one_report(reports, run_py, tmp: Path) -> None:
    """The ident report (an lr setting: accuracy_vs_*, best_settings.csv) replaced by the merged
    sweeps' (no setting) in the same folder: none of the first one's files stay; a folder holding
    anything else is refused."""
    out = reports["ident"][1]
    assert reports["ident"][0].wait().returncode == 0
    first = {p.name for p in out.iterdir()}
    assert any(n.startswith("accuracy_vs_") for n in first) and "best_settings.csv" in first, first
    r = tmp / "reports"
    res = run_py(str(r / "a" / "sweep"), "--out", str(out), script="scripts/report.py")
    assert res.returncode == 0, res.stderr[-3000:]
    second = {p.name for p in out.iterdir()}
    assert not any(n.startswith("accuracy_vs_") for n in second) and "best_settings.csv" not in second, second
    assert len(pd.read_csv(out / "runs.csv")) == 4
    (out / "notes.txt").write_text("mine")
    res = run_py(str(r / "a" / "sweep"), "--out", str(out), script="scripts/report.py")
    assert res.returncode == 2 and "notes.txt" in res.stderr and "one report only" in res.stderr, res.stderr
    assert (out / "notes.txt").read_text() == "mine"
