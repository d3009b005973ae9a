"""build_report() on run folders written by run_experiment(), and scripts/report.py's errors."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from actcompare.errors import UserError
from actcompare.experiment import run_experiment
from actcompare.report import build_report, load_sweep, summarize

from .conftest import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("train_loss.png", "test_loss.png", "test_accuracy.png")


@pytest.fixture(scope="module")
def sweep_dir(tiny_cfg, tmp_path_factory) -> Path:
    """relu and tanh x seeds 0, 1 (2 epochs each) plus one failed run, laid out like a Hydra sweep."""
    root = tmp_path_factory.mktemp("sweep")
    for act in ("relu", "tanh"):
        for seed in (0, 1):
            overrides = [f"activation={act}", f"seed={seed}", "epochs=2"]
            run_experiment(tiny_cfg(*overrides), root / f"activation={act},seed={seed}", overrides=overrides,
                           choices={"activation": act})  # fmt: skip
    # What run.py records for an activation file crash.yaml whose module raises.
    crash = ["activation.name=crash", "activation.module._target_=tests.helpers.Exploding", "epochs=2"]
    run_experiment(tiny_cfg(*crash), root / "activation=crash,seed=0", overrides=["activation=crash", "epochs=2"],
                   choices={"activation": "crash"})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def report(sweep_dir: Path) -> dict[str, Path]:
    return build_report([sweep_dir])


def finals(sweep_dir: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f in sorted(sweep_dir.glob("activation=*,seed=*/metrics.csv")):
        df = pd.read_csv(f)
        if df.empty:  # the failed run: header only
            continue
        out.setdefault(df["activation"].iloc[0], []).append(float(df["test_acc"].iloc[-1]))
    return out


def test_files_are_written(report: dict[str, Path], sweep_dir: Path) -> None:
    for name in ("results.csv", "runs.csv", "summary.csv", "diagnostics.csv", "report.md", *PLOTS):
        path = sweep_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert report["report"] == sweep_dir / "report.md"
    for name, path in report.items():
        assert path.exists(), name
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC, name
    assert not list(sweep_dir.glob(".*.tmp")), "temporary files left behind"


def test_results_and_runs(report, sweep_dir: Path) -> None:
    results = pd.read_csv(sweep_dir / "results.csv")
    assert len(results) == 4 * 2  # the failed run has no epoch rows
    for col in ("run", "status", "activation", "seed", "epoch", "train_loss", "test_loss", "test_acc", "group"):
        assert col in results.columns, col
    runs = pd.read_csv(sweep_dir / "runs.csv")
    assert len(runs) == 5
    assert sorted(runs["status"]) == ["completed"] * 4 + ["failed"]
    crashed = runs[runs["status"] == "failed"].iloc[0]
    assert crashed["activation"] == "crash" and "boom" in crashed["error"]


def test_summary_statistics(report, sweep_dir: Path) -> None:
    summary = pd.read_csv(sweep_dir / "summary.csv", index_col=0)
    for stat in ("mean", "std", "ci95_low", "ci95_high"):
        assert f"final_test_acc_{stat}" in summary.columns, stat
    assert set(summary["activation"]) == {"relu", "tanh", "crash"}
    by_act = summary.set_index("activation")
    assert by_act.loc["crash", "runs"] == 1 and by_act.loc["crash", "failed"] == 1
    assert math.isnan(by_act.loc["crash", "final_test_acc_mean"])
    for act, values in finals(sweep_dir).items():
        row = by_act.loc[act]
        assert row["runs"] == 2 and row["completed"] == 2
        s = pd.Series(values)
        assert row["final_test_acc_mean"] == pytest.approx(s.mean())
        assert row["final_test_acc_std"] == pytest.approx(s.std(ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 1) * s.std(ddof=1) / math.sqrt(2)
        # Student t interval over seeds, clipped to the possible range of an accuracy.
        assert row["final_test_acc_ci95_low"] == pytest.approx(max(s.mean() - half, 0.0), abs=1e-9)
        assert row["final_test_acc_ci95_high"] == pytest.approx(min(s.mean() + half, 1.0), abs=1e-9)
        assert row["final_test_acc_ci95_low"] <= row["final_test_acc_mean"] <= row["final_test_acc_ci95_high"]
    # Sorted best first.
    means = summary["final_test_acc_mean"].dropna().tolist()
    assert means == sorted(means, reverse=True)


def test_report_md(report, sweep_dir: Path) -> None:
    text = (sweep_dir / "report.md").read_text()
    for act in ("relu", "tanh"):
        assert act in text
    for plot in PLOTS:
        assert f"]({plot})" in text, plot
    assert "crash" in text and "failed" in text and "boom" in text


def test_summarize_matches_load_sweep(sweep_dir: Path) -> None:
    sweep = load_sweep([sweep_dir])
    assert sweep.group_cols == ["activation"]
    summary = summarize(sweep)
    assert summary.loc["relu", "runs"] == 2


def test_report_is_rebuilt_elsewhere(sweep_dir: Path, tmp_path: Path) -> None:
    written = build_report([sweep_dir], out_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "report.md").exists()
    assert all(Path(p).parent == tmp_path / "elsewhere" for p in written.values())


def test_no_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no runs"):
        build_report([tmp_path])
    with pytest.raises(UserError, match="does not exist"):
        build_report([tmp_path / "missing"])
    assert build_report([tmp_path], missing_ok=True) == {}


def _report_script():
    spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_report_script_errors_in_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "missing" if case == "missing" else tmp_path
    assert _report_script().main([str(target)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert str(target) in err


def test_report_script_builds(sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _report_script().main([str(sweep_dir), "--out", str(tmp_path / "r")]) == 0
    assert str(tmp_path / "r" / "report.md") in capsys.readouterr().out
    assert (tmp_path / "r" / "summary.csv").exists()


def test_diverged_and_failed_runs_are_reported(tiny_cfg, tmp_path: Path) -> None:
    """A group whose only run diverged, one whose only run crashed, and one that completed."""
    specs = {
        "relu": ("activation=relu",),
        "leaky_relu": ("activation=leaky_relu", "optimizer=sgd", "optimizer.lr=1e6", "epochs=3"),
        "crash": ("activation.name=crash", "activation.module._target_=tests.helpers.Exploding"),
    }
    for act, overrides in specs.items():
        record = run_experiment(tiny_cfg("epochs=2", *overrides), tmp_path / act, overrides=[f"activation={act}"],
                                choices={"activation": act})  # fmt: skip
        assert record["status"] == {"relu": "completed", "leaky_relu": "diverged", "crash": "failed"}[act]
    written = build_report([tmp_path])
    for plot in PLOTS:
        assert plot in written, plot
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("activation")
    assert summary.loc["leaky_relu", "diverged"] == 1 and summary.loc["leaky_relu", "completed"] == 0
    assert summary.loc["crash", "failed"] == 1
    assert summary.index[0] == "relu"  # the only group with a completed run ranks first
    text = (tmp_path / "report.md").read_text()
    epoch = pd.read_csv(tmp_path / "runs.csv").set_index("activation").loc["leaky_relu", "diverged_epoch"]
    assert f"**diverged** in epoch {int(epoch)}" in text
    assert "**failed**" in text and "boom" in text


def test_report_when_every_run_failed(tiny_cfg, tmp_path: Path) -> None:
    crash = ("activation.name=crash", "activation.module._target_=tests.helpers.Exploding")
    run_experiment(tiny_cfg("epochs=1", *crash), tmp_path / "crash", overrides=["activation=crash"])
    written = build_report([tmp_path])
    assert "report" in written and "runs.csv" in written
    assert "summary.csv" not in written
    text = (tmp_path / "report.md").read_text()
    assert "crash" in text and "**failed**" in text
