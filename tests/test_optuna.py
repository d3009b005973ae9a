"""The objective a run returns to a sweeper, and the Optuna preset (hparams_search=lr_optuna) end to end."""

from __future__ import annotations

import importlib.util
import math

import pytest
import yaml

from actcompare.errors import ConfigError
from actcompare.objective import direction, objective_value, worst_value
from actcompare.runs import COMPLETED, DIVERGED, FAILED, INTERRUPTED, divergence_threshold
from actcompare.schema import validate

from .conftest import compose_cfg, read_json

FINAL = {"train_loss": 0.2, "train_acc": 0.94, "test_loss": 0.25, "test_acc": 0.93, "val_loss": 0.3, "val_acc": 0.92}


@pytest.mark.parametrize("metric", list(FINAL))
def test_completed_runs_return_their_final_metric(metric: str) -> None:
    assert objective_value({"status": COMPLETED, "final": FINAL}, metric) == FINAL[metric]


@pytest.mark.parametrize("status", [DIVERGED, FAILED, INTERRUPTED, "running"])
def test_unfinished_runs_score_worst(status: str) -> None:
    record = {"status": status, "final": FINAL}
    assert objective_value(record, "test_acc") == 0.0
    assert objective_value(record, "test_loss") == divergence_threshold()


@pytest.mark.parametrize("final", [{}, {"test_acc": None}, {"test_acc": ""}, {"test_acc": float("nan")}, None])
def test_a_missing_or_non_finite_metric_scores_worst(final) -> None:
    assert objective_value({"status": COMPLETED, "final": final}, "test_acc") == 0.0


def test_worst_values_rank_below_every_real_run() -> None:
    assert direction("test_acc") == "maximize" and direction("val_loss") == "minimize"
    assert worst_value("val_acc") == 0.0  # an accuracy cannot be lower
    # a loss above the divergence threshold means the run diverged, so no finished run scores worse
    assert math.isfinite(worst_value("test_loss")) and worst_value("test_loss") >= divergence_threshold()
    with pytest.raises(ConfigError, match="objective=accuracy"):
        objective_value({"status": COMPLETED, "final": FINAL}, "accuracy")


def test_optuna_accepts_the_worst_value() -> None:
    """nan would make the trial fail instead of rank last; the worst value is a normal, completed trial."""
    optuna = pytest.importorskip("optuna", reason="the optional optuna extra is not installed")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction("test_acc"))
    for record in ({"status": COMPLETED, "final": FINAL}, {"status": DIVERGED, "final": {"test_acc": float("nan")}}):
        trial = study.ask()
        study.tell(trial, objective_value(record, "test_acc"))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.best_value == FINAL["test_acc"]


# ---------------------------------------------------------------- the preset

# Skips only where the optional extra is absent (`dev` includes it, so CI runs these).
HAVE_OPTUNA = importlib.util.find_spec("optuna") is not None
needs_optuna = pytest.mark.skipif(not HAVE_OPTUNA, reason="the optional optuna extra is not installed")

TINY = (
    "data.train_samples=512",
    "data.test_samples=256",
    "data.val_samples=128",
    "epochs=1",
    "hydra.sweeper.n_trials=3",
    "model.hidden_sizes=[32]",
    "diagnostics=false",
    "save_model=false",
)


@needs_optuna
def test_preset_composes_and_validates() -> None:
    cfg = compose_cfg(["hparams_search=lr_optuna"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"  # follows `objective` (val_acc)
    assert cfg.objective == "val_acc" and cfg.data.val_samples
    params = cfg.hydra.sweeper.params
    assert params["optimizer.lr"].startswith("tag(log, interval(")
    assert params["activation"].startswith("choice(")
    cfg = compose_cfg(["hparams_search=lr_optuna", "objective=val_loss"], return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == "minimize"
    assert validate(compose_cfg(["hparams_search=lr_optuna"])) == []


@needs_optuna
@pytest.mark.slow
def test_lr_optuna_preset_end_to_end(run_py, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    res = run_py("-m", "hparams_search=lr_optuna", *TINY, f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    records = [read_json(p) for p in sweep.glob("*/run.json")]
    assert len(records) == 3, "3 trials, 3 run folders"
    lrs = {r["config"]["optimizer"]["lr"] for r in records}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    assert {r["config"]["activation"]["name"] for r in records} <= {"relu", "sigmoid", "tanh", "leaky_relu"}
    # Optuna saw each run's objective: its best value is the best final val_acc on disk
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(objective_value(r, "val_acc") for r in records)
    assert result["best_value"] == pytest.approx(best)
    assert (sweep / "report.md").is_file()
