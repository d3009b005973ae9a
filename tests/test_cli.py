"""run.py end to end in subprocesses: a sweep and its report, a single run, bad input, a crashing job.

Each run.py process spends most of its ~10 s importing torch, so the module's processes are all
queued at once (the ``procs`` fixture; they run a few at a time, see conftest's start_run_py) and
each test waits for the one it checks.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from actcompare.runs import METRIC_COLUMNS

from .conftest import REPO, assert_clean_error, read_json

pytestmark = pytest.mark.slow

RUN_FILES = (
    "metrics.csv",
    "run.json",
    "diagnostics.csv",
    "model.pt",
    "confusion.csv",
    "examples.npz",
    "run.log",
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
)
SWEEP_FILES = (
    "results.csv",
    "runs.csv",
    "summary.csv",
    "diagnostics.csv",
    "train_loss.png",
    "test_loss.png",
    "test_accuracy.png",
    "report.md",
    "multirun.yaml",
)
PLOTS = ("train_loss.png", "test_loss.png", "test_accuracy.png")
TRAIN_SAMPLES = 384

# Values refused by validate(), before any data is read (data.root points nowhere: see procs),
# all in one process: its one line names every problem.
REFUSED_ARGS = [
    "+optimizer.momentum=0.9",
    "+activation.module.slope=1",
    "+activation.foo=1",
    f"seed={2**40}",
    "activation.name=../../../escaped",
    "data.train_samples=10000000",
]
REFUSED_MESSAGES = [
    "unknown key 'optimizer.momentum'",
    "Adam does not take 'momentum'",
    "unknown key 'activation.module.slope'",
    "unknown key 'activation.foo'",
    f"seed={2**40} is not allowed",
    "activation.name=../../../escaped is not",
    "data.train_samples=10000000 is more than",
]

BAD = {  # name: (run.py arguments, text stderr must contain)
    "unknown_activation": (["activation=relux"], ["relux", "relu", "sigmoid", "tanh"]),
    "negative_lr": (["optimizer.lr=-1"], ["optimizer.lr"]),
    "negative_lr_in_sweep": (["-m", "optimizer.lr=1e-3,-1"], ["optimizer.lr"]),
    "batch_size_abc": (["batch_size=abc"], ["batch_size=abc", "Integer"]),
    "hidden_sizes_not_a_list": (["model.hidden_sizes=12"], ["model.hidden_sizes=12", "list"]),
    "unknown_key": (["foo=1"], ["unknown key 'foo'"]),
    "misspelt_key": (["epoch=3"], ["unknown key 'epoch'", "did you mean 'epochs'"]),
    "misspelt_nested_key": (["model.hiden_sizes=[64]"], ["unknown key 'model.hiden_sizes'", "model.hidden_sizes"]),
    "appended_unknown_key": (["+epoch=3"], ["unknown key 'epoch'", "did you mean 'epochs'"]),
    "unknown_launcher": (
        ["-m", "hydra/launcher=nonexistent"],
        ["unknown hydra/launcher 'nonexistent'", "basic, ", "joblib, "],
    ),
    "unknown_activation_in_sweep": (
        ["-m", "activation=relu,relux"],
        ["unknown activation 'relux'", "(did you mean 'relu'?)"],
    ),
    "refused_before_data": (REFUSED_ARGS, REFUSED_MESSAGES),
    # the tiny MNIST holds 512 training images: refused when its files are read, before training
    "more_samples_than_the_files": (["data.train_samples=1000"], ["data.train_samples=1000 but", "only 512"]),
    "override_syntax": (["activation=relu,"], ["cannot parse the override 'activation=relu,'"]),
    "cuda_without_gpu": (["device=cuda"], ["cuda"]),
    "missing_data": (["data.download=false"], ["missing"]),  # data.root: see procs
}


BEFORE_DATA = ("refused_before_data",)


@pytest.fixture(scope="module")
def procs(start_run_py, extra_conf: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every process of this module, queued when its first test runs. name -> (Proc, folder)."""
    tmp = tmp_path_factory.mktemp("cli")
    started = {}

    def start(name: str, *args: str, multirun: bool = False) -> None:
        out = tmp / name
        where = f"hydra.sweep.dir={out}" if multirun else f"hydra.run.dir={out}"
        started[name] = (start_run_py(*args, where, queued=True), out)

    sweep = ("-m", "activation=relu,tanh", "seed=0,1", "epochs=2", f"data.train_samples={TRAIN_SAMPLES}")
    start("sweep", *sweep, multirun=True)
    start("diverge_sweep", "-m", "activation=relu,amplify", "epochs=2", extra_conf, multirun=True)
    start("single", "epochs=1")
    start("crash_sweep", "-m", "activation=relu,crash", "epochs=1", extra_conf, multirun=True)
    start("crash_single", "activation=crash", "epochs=1", extra_conf)
    for name, (args, _) in BAD.items():
        if name == "cuda_without_gpu" and torch.cuda.is_available():
            continue
        if name == "missing_data":
            args = [*args, f"data.root={tmp / 'no_data_here'}"]
        if name in BEFORE_DATA:  # if the data were read first, this would fail with "MNIST not found"
            args = [*args, f"data.root={tmp / 'no_data_here'}", "data.download=false"]
        start(name, *args, multirun="-m" in args)
    # a user's own config folder, as Hydra's --config-dir adds it (and --help lists it)
    user_conf = tmp / "user_conf"
    (user_conf / "activation").mkdir(parents=True)
    (user_conf / "activation" / "boom.yaml").write_text("name: boom\nmodule:\n  _target_: torch.nn.ReLU\n")
    start(
        "config_dir_sweep",
        f"--config-dir={user_conf}",
        "-m",
        "activation=relu,boom",
        "epochs=1",
        "data.train_samples=128",
        "model.hidden_sizes=[16]",
        "diagnostics=false",
        "save_model=false",
        multirun=True,
    )
    start("help", f"--config-dir={user_conf}", "--help")
    # (an empty folder and the in-process checks: test_report.py)
    started["report_missing"] = (start_run_py(str(tmp / "not_there"), script="scripts/report.py", queued=True), None)
    return started


def result(procs, name: str):
    proc, out = procs[name]
    return proc.wait(), out


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/run.json"))


# ---------------------------------------------------------------- a sweep


def test_sweep_exits_zero(procs) -> None:
    res, _ = result(procs, "sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    # the end-of-sweep table: percent with the spread over seeds, and each group's verdict
    table = res.stdout.split("Sweep finished: ")[1]
    assert "test acc %" in table and "verdict" in table and "baseline" in table, table
    tanh = next(line for line in table.splitlines() if line.strip().startswith("tanh"))
    assert " ± " in tanh and "undecided" in tanh and "nan" not in tanh.lower(), tanh


def test_sweep_job_folders_and_files(procs) -> None:
    _, sweep = result(procs, "sweep")
    names = {d.name for d in job_dirs(sweep)}
    assert names == {
        f"activation={a},data.train_samples={TRAIN_SAMPLES},epochs=2,seed={s}" for a in ("relu", "tanh") for s in (0, 1)
    }
    for d in job_dirs(sweep):
        for f in RUN_FILES:
            assert (d / f).is_file(), f"{d.name}/{f} missing"
        metrics = pd.read_csv(d / "metrics.csv")
        assert list(metrics.columns) == METRIC_COLUMNS and len(metrics) == 2
        # train_acc counts over exactly data.train_samples images
        assert ((metrics["train_acc"] * TRAIN_SAMPLES).round(6) % 1 == 0).all()
        run = read_json(d / "run.json")
        assert run["status"] == "completed"
        assert run["config"]["data"]["train_samples"] == TRAIN_SAMPLES
        assert f"seed={run['seed']}" in d.name and f"activation={run['activation']}" in d.name
    for f in SWEEP_FILES:
        assert (sweep / f).is_file(), f"sweep file {f} missing"


def test_sweep_tables(procs) -> None:
    _, sweep = result(procs, "sweep")
    results = pd.read_csv(sweep / "results.csv")
    assert len(results) == 4 * 2
    assert set(METRIC_COLUMNS) <= set(results.columns)
    runs = pd.read_csv(sweep / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["activation"]) == ["relu", "tanh"]
    assert summary["runs"].tolist() == [2, 2] and summary["completed"].tolist() == [2, 2]
    for col in ("final_test_acc_mean", "final_test_acc_std", "final_test_acc_ci95_low", "final_test_acc_ci95_high"):
        assert summary[col].notna().all(), col
    last = results.sort_values("epoch").groupby("run").tail(1)
    for _, row in summary.iterrows():
        expected = last.loc[last["activation"] == row["activation"], "test_acc"].mean()
        assert row["final_test_acc_mean"] == pytest.approx(expected)


def test_sweep_report_md(procs) -> None:
    _, sweep = result(procs, "sweep")
    text = (sweep / "report.md").read_text()
    assert "relu" in text and "tanh" in text
    for plot in PLOTS:
        assert f"]({plot})" in text, plot
        assert (sweep / plot).read_bytes()[:4] == b"\x89PNG"


def test_report_script_rebuilds_the_sweep_report(procs, capsys: pytest.CaptureFixture) -> None:
    _, sweep = result(procs, "sweep")
    for f in ("report.md", "summary.csv", "results.csv", *PLOTS):
        (sweep / f).unlink()
    spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(sweep)]) == 0
    assert "report.md" in capsys.readouterr().out
    for f in ("report.md", "summary.csv", "results.csv", *PLOTS):
        assert (sweep / f).is_file(), f
    assert len(pd.read_csv(sweep / "summary.csv")) == 2


# ---------------------------------------------------------------- a single run


def test_single_run(procs) -> None:
    res, out = result(procs, "single")
    assert res.returncode == 0, res.stderr[-3000:]
    run = read_json(out / "run.json")
    assert run["status"] == "completed" and run["epochs_completed"] == 1
    assert len(pd.read_csv(out / "metrics.csv")) == 1
    for f in ("diagnostics.csv", "model.pt", ".hydra/config.yaml"):
        assert (out / f).is_file(), f


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_fails_cleanly(procs, name: str) -> None:
    if name not in procs:
        pytest.skip("this machine has CUDA")
    res, out = result(procs, name)
    assert_clean_error(res, max_lines=2)
    for text in BAD[name][1]:
        assert text in res.stderr, f"{text!r} not in stderr:\n{res.stderr}"
    trained = list(out.rglob("metrics.csv")) if out.exists() else []
    assert not trained, f"nothing may be trained on bad input: {trained}"
    if name in BEFORE_DATA:
        assert "MNIST not found" not in res.stderr, "must be refused before the data is read"
    if name == "refused_before_data":
        assert not list(out.parent.parent.rglob("escaped*")), "nothing may be written outside the run folder"


def test_unknown_activation_is_one_line(procs) -> None:
    res, _ = result(procs, "unknown_activation")
    assert_clean_error(res, max_lines=1)


def test_invalid_value_is_one_line(procs) -> None:
    res, _ = result(procs, "negative_lr")
    assert_clean_error(res, max_lines=1)
    assert res.stderr.startswith("error: optimizer.lr=-1")


def test_sweep_is_checked_before_any_job(procs) -> None:
    res, out = result(procs, "negative_lr_in_sweep")
    assert "optimizer.lr=-1" in res.stderr
    assert not (out.exists() and list(out.rglob("run.json"))), "the valid job must not run either"


def test_report_script_on_a_missing_folder(procs) -> None:
    res, _ = result(procs, "report_missing")
    assert_clean_error(res, max_lines=1)
    assert res.stderr.startswith("error:") and "not_there" in res.stderr


# ---------------------------------------------------------------- a crashing job


def test_crashing_job_in_a_sweep(procs) -> None:
    res, sweep = result(procs, "crash_sweep")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    dirs = {read_json(d / "run.json")["activation"]: d for d in job_dirs(sweep)}
    assert set(dirs) == {"relu", "crash"}
    assert read_json(dirs["relu"] / "run.json")["status"] == "completed"
    crash = read_json(dirs["crash"] / "run.json")
    assert crash["status"] == "failed" and "boom" in crash["error"]
    assert dirs["crash"].name in res.stderr, res.stderr
    assert "boom" in res.stderr
    report = (sweep / "report.md").read_text()
    assert "crash" in report and "failed" in report
    summary = pd.read_csv(sweep / "summary.csv").set_index("activation")
    assert summary.loc["relu", "completed"] == 1 and summary.loc["crash", "failed"] == 1


def test_crashing_single_run(procs) -> None:
    """A single run that crashes keeps its files, says failed in run.json, and exits non-zero."""
    res, out = result(procs, "crash_single")
    assert_clean_error(res, max_lines=2)
    assert res.stderr.startswith("error: the run failed") and "boom" in res.stderr, res.stderr
    run = read_json(out / "run.json")
    assert run["status"] == "failed" and "boom" in run["error"]


# ---------------------------------------------------------------- users' own configs, --help


def test_config_dir_adds_an_activation(procs) -> None:
    """Hydra's --config-dir (not only the packaged configs) provides options to the sweep."""
    res, sweep = result(procs, "config_dir_sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {read_json(d / "run.json")["activation"] for d in job_dirs(sweep)} == {"relu", "boom"}


def test_help_explains_keys_defaults_launchers_and_presets(procs) -> None:
    from actcompare.helptext import LAUNCHERS, documented_keys

    res, _ = result(procs, "help")
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    assert text.startswith("actcompare: "), text[:500]
    lines = text.splitlines()
    for key, default, meaning in documented_keys():
        assert any(line.split()[:1] == [key] and default in line and meaning in line for line in lines), key
    for launcher in LAUNCHERS:
        assert launcher in text, launcher
    assert "hparams_search=lr_optuna" in text and "experiment: all_activations, depth" in text
    assert "activation: boom, elu, " in text  # the groups as Hydra sees them, --config-dir included
    assert "epochs: 10" in text  # the composed config


# ---------------------------------------------------------------- Ctrl-C at any moment


def _slow_run(start_run_py, extra_conf: str, tmp: Path):
    return start_run_py("activation=slow", "epochs=200", extra_conf, f"hydra.run.dir={tmp}", "diagnostics=false")


def _assert_interrupted(res) -> None:
    assert res.returncode == 130, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("interrupted"), res.stderr


@pytest.mark.parametrize(
    "delays", [(0.2,), (0.2, 0.25), (1.0,), (1.0, 1.02)], ids=["early", "early-twice", "importing", "importing-twice"]
)
def test_ctrl_c_while_starting(start_run_py, extra_conf: str, tmp_path: Path, delays: tuple[float, ...]) -> None:
    """Ctrl-C (once or twice) while Python imports torch and Hydra: exit 130 with one line."""
    import signal
    import time

    proc = _slow_run(start_run_py, extra_conf, tmp_path)
    t0 = time.monotonic()
    for delay in delays:
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    # Known issue (seen twice in CI on a loaded machine, never reproduced quietly): a Ctrl-C ~1 s
    # after start can be lost. After 20 s without an exit, press it once more; the process must
    # then still end with exit 130 and one line.
    try:
        proc.popen.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc.wait(timeout=60))
    assert not list(tmp_path.glob("**/metrics.csv")) or read_json(tmp_path / "run.json")["status"] == "interrupted"


def test_double_ctrl_c_while_training(start_run_py, extra_conf: str, tmp_path: Path) -> None:
    import signal
    import time

    proc = _slow_run(start_run_py, extra_conf, tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.csv").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.wait().stderr[-3000:]
    proc.send_signal(signal.SIGINT)
    time.sleep(0.03)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc.wait(timeout=60))


def test_a_diverging_run_in_a_fused_sweep_stops_alone(procs) -> None:
    res, out = procs["diverge_sweep"][0].wait(), procs["diverge_sweep"][1]
    assert res.returncode == 0, res.stderr[-2000:]
    runs = {read_json(p)["activation"]: read_json(p) for p in out.glob("*/run.json")}
    assert runs["amplify"]["status"] == "diverged" and runs["amplify"]["diverged_epoch"] == 1
    assert runs["relu"]["status"] == "completed" and runs["relu"]["epochs_completed"] == 2
    assert {r["engine"] for r in runs.values()} == {"stacked"}
    summary = pd.read_csv(out / "summary.csv")
    assert summary.set_index("activation").loc["amplify", "completed"] == 0  # never in a mean
