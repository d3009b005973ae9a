"""One run: build everything from the config at the edge, train, and record results on disk.

Files in the run folder (all written as the run goes, so an interrupted run keeps what it did):
- ``metrics.csv``: one row per epoch, appended and flushed after every epoch;
- ``diagnostics.csv``: per-epoch, per-layer diagnostics (when ``diagnostics=true``);
- ``run.json``: status (running/completed/diverged/failed/interrupted), final metrics, the
  resolved config, versions, device, git commit and wall time;
- ``model.pt``, ``confusion.csv``, ``examples.npz``: final weights and predictions (``save_model``).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import diagnostics as diag
from .data import MNISTTensors, load_mnist
from .errors import ConfigError, UserError
from .model import NeuralNetwork
from .schema import hidden_sizes, resolve_device, validate
from .train import confusion_matrix, predict, test, train

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "activation", "seed", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
    "epoch_seconds",
]  # fmt: skip
DIAGNOSTIC_COLUMNS = [
    "activation", "seed", "epoch", "layer", "grad_norm", "dead_frac", "saturated_frac",
    "zero_frac", "act_mean", "act_std",
]  # fmt: skip
FINISHED = ("completed", "diverged")  # outcomes a resumed sweep does not redo
PROBE_SIZE = 512  # fixed test images used for diagnostics every epoch
EXAMPLES = 8  # test digits kept with their softmax probabilities


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Versions and git commit of the code that produced a result."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "hostname": platform.node(),
    }


def _write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class CsvLog:
    """Rows appended to a CSV file and flushed to disk one batch at a time.

    ``count`` and ``last`` describe what is in the file (buffered rows reach the disk at close
    even when Ctrl-C lands mid-write), so run.json can be made to agree with it exactly.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self._file = path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=list(columns), extrasaction="ignore")
        self._writer.writeheader()
        self.count = 0
        self.last: dict | None = None

    def write(self, rows: Sequence[dict]) -> None:
        self._writer.writerows(rows)
        self.count, self.last = self.count + len(rows), (rows[-1] if rows else self.last)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _previous(out_dir: Path, config: dict) -> dict | None:
    """The stored run.json when this exact config already finished in out_dir, else None."""
    try:
        record = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") in FINISHED and _comparable(record.get("config")) == _comparable(config):
        return record
    return None


def _comparable(config: dict | None) -> dict | None:
    if config is None:
        return None
    return {k: v for k, v in config.items() if k not in ("resume", "device", "threads")}


def run_experiment(
    cfg: DictConfig,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    choices: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train one network as ``cfg`` says, write its files to ``out_dir``, return run.json's dict.

    A config problem raises ConfigError before anything is trained; a missing dataset raises
    DataError. Anything that goes wrong during training is recorded as ``failed`` (with the
    message) and returned; Ctrl-C is recorded as ``interrupted`` and re-raised.
    """
    problems = validate(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    if cfg.resume:
        done = _previous(out, config)
        if done is not None:
            log.info("resume: %s already %s, skipped", out, done["status"])
            return done

    device = resolve_device(cfg.device)
    threads = threads or cfg.threads
    if threads:
        torch.set_num_threads(int(threads))
    record: dict[str, Any] = {
        "status": "running",
        "activation": cfg.activation.name,
        "seed": cfg.seed,
        "overrides": list(overrides),
        "choices": dict(choices or {}),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epochs_completed": 0,
        "config": config,
        **provenance(),
    }
    _write_json(out / "run.json", record)

    ident = {"activation": cfg.activation.name, "seed": cfg.seed}
    metrics = diagnostics = None
    t_start = time.perf_counter()
    try:
        data = load_mnist(
            cfg.data.root, device, cfg.data.normalize, cfg.data.train_samples,
            cfg.data.test_samples, cfg.data.download,
        )  # fmt: skip
        torch.manual_seed(cfg.seed)  # weight init; the batch order has its own generator
        model = NeuralNetwork(
            activation=instantiate(cfg.activation.module, _partial_=True),
            hidden_sizes=hidden_sizes(cfg.model),
            init=cfg.model.init.value,
        ).to(device)
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        generator = torch.Generator().manual_seed(cfg.seed)
        metrics = CsvLog(out / "metrics.csv", METRIC_COLUMNS)
        if cfg.diagnostics:
            diagnostics = CsvLog(out / "diagnostics.csv", DIAGNOSTIC_COLUMNS)
        probe_x, probe_y = data.test.x[:PROBE_SIZE], data.test.y[:PROBE_SIZE]
        for epoch in range(1, cfg.epochs + 1):
            tic = time.perf_counter()
            fit = train(model, data.train.x, data.train.y, optimizer, cfg.batch_size, generator)
            ev = test(model, data.test.x, data.test.y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            row = {
                **ident, "epoch": epoch, "train_loss": fit.loss, "train_acc": fit.accuracy,
                "test_loss": ev.loss, "test_acc": ev.accuracy,
                "epoch_seconds": round(time.perf_counter() - tic, 4),
            }  # fmt: skip
            metrics.write([row])
            if not (math.isfinite(fit.loss) and math.isfinite(ev.loss)):
                record.update(status="diverged", diverged_epoch=epoch)
                log.warning("%s seed %s diverged in epoch %d (loss %s): stopped", *ident.values(),
                            epoch, fit.loss)  # fmt: skip
                break
            if diagnostics is not None:
                layers = diag.probe(model, probe_x, probe_y)
                diagnostics.write([{**ident, "epoch": epoch, **r} for r in layers])
            log.info(
                "%s seed %d epoch %d/%d: train loss %.4f, test loss %.4f, test acc %.2f %% (%.2f s)",
                cfg.activation.name, cfg.seed, epoch, cfg.epochs, fit.loss, ev.loss,
                100 * ev.accuracy, row["epoch_seconds"],
            )  # fmt: skip
        else:
            record["status"] = "completed"
        if cfg.save_model and record["status"] == "completed":
            _save_predictions(model, data, out)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        raise
    except UserError as err:  # bad data folder etc.: every run would fail, so stop the sweep
        record.update(status="failed", error=str(err))
        raise
    except Exception as err:  # one broken run must not take the sweep down
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        log.error("%s seed %s failed: %s", *ident.values(), record["error"])
    finally:
        if metrics is not None and metrics.last is not None:  # agree with metrics.csv exactly
            record.update(epochs_completed=metrics.count, final={k: metrics.last[k] for k in METRIC_COLUMNS[3:7]})
        for csv_log in (metrics, diagnostics):
            if csv_log is not None:
                csv_log.close()
        record["wall_seconds"] = round(time.perf_counter() - t_start, 3)
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_json(out / "run.json", record)
    return record


def _save_predictions(model: NeuralNetwork, data: MNISTTensors, out: Path) -> None:
    """Final weights, the test confusion matrix, and a few test digits with probabilities."""
    import pandas as pd

    torch.save(model.state_dict(), out / "model.pt")
    cm = confusion_matrix(model, data.test.x, data.test.y).cpu().numpy()
    pd.DataFrame(cm, index=pd.RangeIndex(10, name="true"), columns=[f"pred_{c}" for c in range(10)]).to_csv(
        out / "confusion.csv"
    )
    # The first EXAMPLES test digits and the first EXAMPLES the model gets wrong.
    probs = torch.softmax(predict(model, data.test.x), dim=1)
    wrong = (probs.argmax(dim=1) != data.test.y).nonzero().flatten()[:EXAMPLES]
    idx = torch.cat([torch.arange(min(EXAMPLES, len(data.test)), device=wrong.device), wrong])
    np.savez_compressed(
        out / "examples.npz",
        index=idx.cpu().numpy(),
        image=data.test.x[idx].reshape(-1, 28, 28).cpu().numpy().astype(np.float32),
        label=data.test.y[idx].cpu().numpy(),
        prob=probs[idx].cpu().numpy(),
    )
