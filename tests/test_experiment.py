"""run_experiment() called directly: the files of one run, reproducibility, divergence, failures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from actcompare.errors import ConfigError, DataError
from actcompare.experiment import run_experiment
from actcompare.runs import DIAGNOSTIC_COLUMNS, METRIC_COLUMNS

from .conftest import TEST_N, read_json


@pytest.fixture(scope="module")
def completed_run(tiny_cfg, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("run") / "relu"
    record = run_experiment(tiny_cfg("epochs=2", "seed=3"), out, overrides=["epochs=2", "seed=3"])
    return record, out


def test_metrics_csv(completed_run) -> None:
    _, out = completed_run
    df = pd.read_csv(out / "metrics.csv")
    assert list(df.columns) == METRIC_COLUMNS
    assert len(df) == 2
    assert df["epoch"].tolist() == [1, 2]
    assert set(df["activation"]) == {"relu"} and set(df["seed"]) == {3}
    assert np.isfinite(df[["train_loss", "test_loss"]].to_numpy()).all()
    assert df[["train_acc", "test_acc"]].stack().between(0, 1).all()
    assert (df["epoch_seconds"] > 0).all()
    assert df["train_loss"].iloc[1] < df["train_loss"].iloc[0]


def test_run_json(completed_run) -> None:
    record, out = completed_run
    on_disk = read_json(out / "run.json")
    assert on_disk["status"] == "completed"
    assert record["status"] == "completed" and record["final"] == on_disk["final"]
    assert on_disk["activation"] == "relu" and on_disk["seed"] == 3
    assert on_disk["epochs_completed"] == 2
    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert on_disk["final"][key] == pytest.approx(last[key])
    assert on_disk["torch"] == torch.__version__
    for key in ("python", "torchvision", "numpy", "git_commit", "started", "finished", "wall_seconds", "device"):
        assert key in on_disk, key
    assert on_disk["config"]["epochs"] == 2 and on_disk["config"]["activation"]["name"] == "relu"
    assert on_disk["config"]["model"]["hidden_sizes"] == [32, 32]
    assert on_disk["overrides"] == ["epochs=2", "seed=3"]
    assert "error" not in on_disk


def test_diagnostics_and_saved_model(completed_run) -> None:
    _, out = completed_run
    diag = pd.read_csv(out / "diagnostics.csv")
    assert list(diag.columns) == DIAGNOSTIC_COLUMNS
    assert len(diag) == 2 * 3  # 2 epochs x (2 hidden layers + output layer)
    assert sorted(set(diag["layer"])) == [1, 2, 3]
    assert (diag["grad_norm"] > 0).all()
    hidden = diag[diag["layer"] < 3]
    assert hidden[["dead_frac", "saturated_frac", "zero_frac"]].stack().between(0, 1).all()

    state = torch.load(out / "model.pt", weights_only=True)
    assert state["layers.0.weight"].shape == (32, 784)
    cm = pd.read_csv(out / "confusion.csv", index_col=0)
    assert cm.shape == (10, 10) and int(cm.to_numpy().sum()) == TEST_N
    final_acc = read_json(out / "run.json")["final"]["test_acc"]
    assert np.trace(cm.to_numpy()) / TEST_N == pytest.approx(final_acc)
    ex = np.load(out / "examples.npz")
    assert ex["image"].shape[1:] == (28, 28) and ex["prob"].shape[1] == 10
    np.testing.assert_allclose(ex["prob"].sum(axis=1), 1.0, rtol=1e-5)


def test_no_diagnostics_no_model(tiny_cfg, tmp_path: Path) -> None:
    record = run_experiment(tiny_cfg("epochs=1", "diagnostics=false", "save_model=false"), tmp_path)
    assert record["status"] == "completed"
    assert (tmp_path / "metrics.csv").exists()
    for name in ("diagnostics.csv", "model.pt", "confusion.csv", "examples.npz"):
        assert not (tmp_path / name).exists(), name


def test_same_seed_same_metrics(tiny_cfg, tmp_path: Path) -> None:
    frames = []
    for name in ("a", "b"):
        run_experiment(tiny_cfg("epochs=2", "seed=7", "activation=tanh"), tmp_path / name)
        frames.append(pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="epoch_seconds"))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    run_experiment(tiny_cfg("epochs=2", "seed=8", "activation=tanh"), tmp_path / "c")
    other = pd.read_csv(tmp_path / "c" / "metrics.csv").drop(columns=["epoch_seconds", "seed"])
    assert not other.equals(frames[0].drop(columns="seed")), "a different seed must give different numbers"


def test_divergence_is_recorded_and_rows_kept(tiny_cfg, tmp_path: Path) -> None:
    record = run_experiment(tiny_cfg("epochs=4", "optimizer=sgd", "optimizer.lr=1e6"), tmp_path)
    on_disk = read_json(tmp_path / "run.json")
    assert record["status"] == on_disk["status"] == "diverged"
    epoch = on_disk["diverged_epoch"]
    assert isinstance(epoch, int) and 1 <= epoch < 4
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert len(df) == epoch == on_disk["epochs_completed"]
    last = df.iloc[-1]
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["test_loss"]))


def test_crashing_activation_is_recorded_not_raised(tiny_cfg, tmp_path: Path) -> None:
    record = run_experiment(tiny_cfg("epochs=2", "activation.module._target_=tests.helpers.Exploding"), tmp_path)
    on_disk = read_json(tmp_path / "run.json")
    assert record["status"] == on_disk["status"] == "failed"
    assert "boom" in on_disk["error"] and "RuntimeError" in on_disk["error"]
    assert on_disk["epochs_completed"] == 0
    assert "finished" in on_disk


def test_invalid_config_raises_before_writing(tiny_cfg, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        run_experiment(tiny_cfg("optimizer.lr=-1"), out)
    assert not (out / "run.json").exists()


def test_missing_data_raises_data_error_before_writing(tiny_cfg, tmp_path: Path) -> None:
    """The data is read before a run folder is made: a check that fails before training leaves none."""
    cfg = tiny_cfg(f"data.root={tmp_path / 'nothing'}", "data.download=false")
    with pytest.raises(DataError, match="missing"):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_skips_a_finished_run(tiny_cfg, tmp_path: Path) -> None:
    first = run_experiment(tiny_cfg("epochs=1"), tmp_path)
    before = (tmp_path / "run.json").read_text()
    again = run_experiment(tiny_cfg("epochs=1", "resume=true"), tmp_path)
    assert again == first
    assert (tmp_path / "run.json").read_text() == before
    # A different config in the same folder is another sweep's run: refused, and left as it was.
    with pytest.raises(ConfigError, match=r"run of another config \(epochs: 1 there, 2 here\)"):
        run_experiment(tiny_cfg("epochs=2", "resume=true"), tmp_path)
    assert (tmp_path / "run.json").read_text() == before
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1


def assert_interrupted_after_one_epoch(tiny_cfg, tmp_path: Path) -> None:
    """A 3-epoch run that gets a KeyboardInterrupt in epoch 2: re-raised, and run.json says
    interrupted with exactly the one epoch metrics.csv holds."""
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny_cfg("epochs=3"), tmp_path)
    run = read_json(tmp_path / "run.json")
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert run["status"] == "interrupted"
    assert run["epochs_completed"] == len(rows) == 1
    assert run["final"]["test_acc"] == pytest.approx(rows["test_acc"].iloc[-1])


def test_interrupt_mid_epoch_is_recorded_and_reraised(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    from actcompare.engines import single

    calls = []

    def train_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    real_train = single.train
    monkeypatch.setattr(single, "train", train_then_interrupt)
    assert_interrupted_after_one_epoch(tiny_cfg, tmp_path)


def test_interrupt_right_after_a_row_is_written_keeps_run_json_in_step(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    """A Ctrl-C that arrives while (or just after) an epoch's row is flushed: run.json must still
    count that epoch, as metrics.csv does (was a bug: run.json lagged one epoch behind)."""
    from actcompare import recorder

    real_write = recorder.CsvLog.write

    def write_then_interrupt(self, rows):
        real_write(self, rows)
        if rows and "test_acc" in rows[0]:  # the metrics log: Ctrl-C arrives during its fsync
            raise KeyboardInterrupt

    monkeypatch.setattr(recorder.CsvLog, "write", write_then_interrupt)
    assert_interrupted_after_one_epoch(tiny_cfg, tmp_path)
