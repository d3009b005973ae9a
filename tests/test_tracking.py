"""tracker=tensorboard: what the tracker writes, read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from actcompare.errors import ConfigError
from actcompare.runs import METRIC_COLUMNS
from actcompare.tracking import open_tracker

from .conftest import compose_cfg, read_json

pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")

CONFIG = dict(
    activation={"name": "tanh", "module": {"_target_": "torch.nn.Tanh"}},
    optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.003, "betas": [0.9, 0.999]},
    model={"hidden_sizes": [32, 32], "depth": None, "width": 128, "init": "default"},
    data={
        "root": "/data",
        "normalize": False,
        "train_samples": 512,
        "test_samples": None,
        "val_samples": None,
        "download": True,
    },
    seed=3,
    epochs=2,
    batch_size=64,
    device="cpu",
    threads=1,
    diagnostics=True,
    save_model=False,
    resume=False,
    tracker="tensorboard",
    objective="test_acc",
)


def row(epoch: int, acc: float) -> dict:
    values = dict(
        activation="tanh",
        seed=3,
        epoch=epoch,
        train_loss=1.0 / epoch,
        train_acc=acc - 0.05,
        test_loss=1.2 / epoch,
        test_acc=acc,
        val_loss="",
        val_acc="",
        epoch_seconds=0.25,
    )
    assert set(values) == set(METRIC_COLUMNS)
    return values


def read_events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    hparams, metrics = {}, []
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for key, value in data.session_start_info.hparams.items():
                hparams[key] = (
                    value.string_value
                    if value.HasField("string_value")
                    else (value.number_value if value.HasField("number_value") else value.bool_value)
                )
        if data.HasField("experiment"):
            metrics = [m.name.tag for m in data.experiment.metric_infos]
    return scalars, hparams, metrics


def test_off_by_default() -> None:
    assert compose_cfg().tracker is None
    assert open_tracker(None, Path("unused"), CONFIG) is None


def test_scalars_per_epoch_and_hparams_with_final_metrics(tmp_path: Path) -> None:
    tracker = open_tracker("tensorboard", tmp_path, CONFIG)
    tracker.log_epoch(row(1, 0.80))
    tracker.log_epoch(row(2, 0.90))
    tracker.close(
        {
            "status": "completed",
            "final": {
                "train_loss": 0.5,
                "train_acc": 0.85,
                "test_loss": 0.6,
                "test_acc": 0.90,
                "val_loss": None,
                "val_acc": None,
            },
        }
    )
    assert (tmp_path / "tensorboard").is_dir()
    scalars, hparams, metrics = read_events(tmp_path / "tensorboard")

    # every numeric metrics.csv column, the epoch as the step; empty val_* columns are skipped
    for column in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"):
        assert [step for step, _ in scalars[column]] == [1, 2], column
    assert [round(v, 4) for _, v in scalars["test_acc"]] == [0.8, 0.9]
    assert "val_acc" not in scalars

    # HParams: the run's identity (flattened, scalars only) and its status; no bookkeeping keys
    assert hparams["activation.name"] == "tanh"
    assert hparams["optimizer.lr"] == pytest.approx(0.003)
    assert hparams["seed"] == 3 and hparams["epochs"] == 2
    assert hparams["model.hidden_sizes"] == "[32, 32]"
    assert hparams["status"] == "completed"
    assert hparams["optimizer"] == "Adam"  # the class, not torch.optim.Adam's path or Hydra's _partial_
    assert not [k for k in hparams if "_partial_" in k or "_target_" in k or k == "optimizer.fused"], hparams
    for bookkeeping in ("device", "threads", "tracker", "objective", "data.root", "resume"):
        assert bookkeeping not in hparams, bookkeeping
    # ... with the final metrics, so the HPARAMS table compares runs by them
    assert set(metrics) == {"final/train_loss", "final/train_acc", "final/test_loss", "final/test_acc"}
    assert scalars["final/test_acc"][0][1] == pytest.approx(0.9)


def test_a_restarted_run_starts_its_curves_afresh(tmp_path: Path) -> None:
    first = open_tracker("tensorboard", tmp_path, CONFIG)
    first.log_epoch(row(1, 0.5))
    first.close({"status": "interrupted", "final": {"test_acc": 0.5}})
    second = open_tracker("tensorboard", tmp_path, CONFIG)  # resume=true redoes the run
    second.log_epoch(row(1, 0.7))
    second.close({"status": "diverged", "final": {"test_acc": float("nan")}})
    scalars, hparams, metrics = read_events(tmp_path / "tensorboard")
    assert [round(v, 4) for _, v in scalars["test_acc"]] == [0.7]
    assert hparams["status"] == "diverged" and metrics == []  # a NaN final metric is left out


def test_missing_tensorboard_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when it is absent
    with pytest.raises(ConfigError, match=r"pip install 'actcompare\[tensorboard\]'") as info:
        open_tracker("tensorboard", tmp_path, CONFIG)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- through run.py


@pytest.mark.slow
def test_run_py_tracker_tensorboard(run_py, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    res = run_py(
        "-m",
        "activation=relu,tanh",
        "tracker=tensorboard",
        "epochs=2",
        "data.train_samples=256",
        "model.hidden_sizes=[16]",
        "save_model=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(sweep.glob("*/run.json"))
    assert len(runs) == 2
    for path in runs:
        record = read_json(path)
        scalars, hparams, metrics = read_events(path.parent / "tensorboard")
        assert [step for step, _ in scalars["test_acc"]] == [1, 2]
        assert scalars["test_acc"][-1][1] == pytest.approx(record["final"]["test_acc"], abs=1e-6)
        assert hparams["activation.name"] == record["activation"] and hparams["status"] == "completed"
        assert "final/test_acc" in metrics
