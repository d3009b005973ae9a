"""One epoch of the default recipe on the real MNIST (needs MNIST_ROOT with MNIST/raw/)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from actcompare.experiment import run_experiment

from .conftest import RAW_FILES, compose_cfg, read_json

ROOT = os.environ.get("MNIST_ROOT")
HAVE_MNIST = bool(ROOT) and all((Path(ROOT) / "MNIST" / "raw" / f).is_file() for f in RAW_FILES)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_MNIST, reason="set MNIST_ROOT to a folder with MNIST/raw/ (the real data)"),
]


def test_default_recipe_one_epoch_on_real_mnist(tmp_path: Path) -> None:
    cfg = compose_cfg([f"data.root={ROOT}", "epochs=1", "data.download=false"])
    record = run_experiment(cfg, tmp_path)
    assert record["status"] == "completed"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert len(metrics) == 1
    assert metrics["test_acc"].iloc[0] > 0.94, metrics.to_dict("records")
    assert read_json(tmp_path / "run.json")["final"]["test_acc"] > 0.94
    cm = pd.read_csv(tmp_path / "confusion.csv", index_col=0)
    assert int(cm.to_numpy().sum()) == 10_000  # the whole test split
