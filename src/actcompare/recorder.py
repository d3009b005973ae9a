"""What lands on disk for one run while it trains, whichever engine trained it (record.py reads,
checks and names the folder's files).

Files in the run folder (written as the run goes, so an interrupted run keeps what it did):
- ``metrics.csv``: one row per epoch (runs.METRIC_COLUMNS), appended, flushed and fsynced;
- ``diagnostics.csv``: per epoch and layer (runs.DIAGNOSTIC_COLUMNS) when ``diagnostics=true``;
- ``run.json``: status, final metrics (always equal to metrics.csv's last row), the resolved
  config, its run id, engine, device, versions, git commit and wall time; written atomically;
- ``model.pt``, ``confusion.csv``, ``examples.npz``: final weights and predictions (``save_model``).
A write that fails (a full disk) raises RecordError naming the file; the partial row or file is
removed and everything written before stays.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import record, runs
from .errors import UserError
from .files import atomic_path
from .tracking import open_tracker

log = logging.getLogger(__name__)

EXAMPLES = 8  # test digits kept with their softmax probabilities


class RecordError(UserError):
    """A result could not be written (disk full, permissions): says which file."""


def _cannot_write(path: Path, err: OSError) -> RecordError:
    return RecordError(
        f"could not write {path}: {err.strerror or err} (the files written before are kept; "
        "free some space or choose another hydra.sweep.dir, then resume=true)"
    )


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Versions and git commit of the code that produced a result."""
    import numpy as np
    import torch
    import torchvision

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True)
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


class CsvLog:
    """Rows appended to a CSV file, flushed and fsynced per call. ``count`` and ``last`` describe
    exactly what is in the file, so run.json can be made to agree with it."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path, self.columns = path, list(columns)
        try:
            self._file = path.open("w", newline="")
            self._write(lambda w: w.writeheader())
        except OSError as err:
            raise _cannot_write(path, err) from None
        self.count = 0
        self.last: dict | None = None

    def _write(self, how) -> None:
        buf = io.StringIO()
        how(csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore"))
        size = self._file.tell()
        try:
            self._file.write(buf.getvalue())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:  # no partial row: cut the file back to its last complete row
            try:
                self._file.truncate(size)
                self._file.seek(size)
            except (OSError, ValueError):
                pass
            raise _cannot_write(self.path, err) from None

    def write(self, rows: Sequence[dict]) -> None:
        self._write(lambda w: w.writerows(rows))
        self.count += len(rows)
        self.last = rows[-1] if rows else self.last

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class RunRecorder:
    """One run folder. ``start`` -> ``epoch``/``layers`` per epoch -> ``finish`` (always)."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        config: dict,
        *,
        overrides: Sequence[str] = (),
        choices: dict[str, str] | None = None,
        engine: str,
        device: str,
        threads: int,
        group: dict[str, Any] | None = None,
        run_log: bool = False,
    ) -> None:
        self.out = Path(out_dir)
        # run_log: this recorder writes the run's own run.log (the fused launcher; under Hydra's
        # launchers Hydra's job logging writes it).
        self.run_log = run_log
        self._log_file: Any = None
        self.started = False
        self.config = config
        self.status = runs.RUNNING
        self.extra: dict[str, Any] = {}
        self.record: dict[str, Any] = {
            "status": runs.RUNNING,
            "activation": config["activation"]["name"],
            "seed": config["seed"],
            "run_id": runs.run_id(config),
            "overrides": list(overrides),
            "choices": dict(choices or {}),
            "engine": engine,
            **({"group": group} if group else {}),
            "device": device,
            "threads": threads,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epochs_completed": 0,
            "config": config,
            **provenance(),
        }
        self.metrics: CsvLog | None = None
        self.diagnostics: CsvLog | None = None
        self.tracker: Any = None
        self._t0 = time.perf_counter()
        self.finished = False

    def _json(self) -> None:
        path = self.out / record.RUN_JSON
        try:
            record.write_record(path, self.record)
        except OSError as err:
            raise _cannot_write(path, err) from None

    def start(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _cannot_write(self.out, err) from None
        self.started = True
        record.written_here(self.out)
        self._discard_tracker()
        record.clear_results(self.out)  # an earlier attempt's (resume redoes the run): not this run's
        if self.run_log:  # this attempt's log from its first line
            self.close_log()
            (self.out / "run.log").unlink(missing_ok=True)
        self._json()
        # metrics.csv, diagnostics.csv and the tracker appear with the first epoch's row: a run
        # stopped before training (no data, a bad module) leaves run.json saying why, nothing else.

    def _discard_tracker(self) -> None:
        """Drop an earlier attempt's tracker (its scalars would show as this run's)."""
        if self.tracker is not None:
            self.tracker.discard()
            self.tracker = None

    def log_line(self, line: str) -> None:
        """Append one formatted line to this run's run.log (when this recorder writes it)."""
        if not self.run_log or not self.started:
            return
        try:
            if self._log_file is None:
                self._log_file = (self.out / "run.log").open("a", encoding="utf-8")
            self._log_file.write(line.rstrip("\n") + "\n")
            self._log_file.flush()
        except OSError as err:
            log.warning("%s: %s", self.out / "run.log", err.strerror or err)
            self.run_log = False

    def note(self, message: str) -> None:
        """A line about this run alone (its epochs) for its own run.log; nowhere else."""
        if self.run_log:
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            self.log_line(
                f"[{stamp}][{__name__}][INFO] - {self.ident['activation']} seed {self.ident['seed']}: {message}"
            )

    def close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def restart(self, engine: str) -> None:
        """Start the folder afresh (another engine redoes this run from its first epoch)."""
        for csv_log in (self.metrics, self.diagnostics):
            if csv_log is not None:
                csv_log.close()
        self._discard_tracker()
        self.status, self.extra, self.finished = runs.RUNNING, {}, False
        self.metrics = self.diagnostics = None
        self.record.pop("group", None)
        self.record.update(
            engine=engine,
            status=runs.RUNNING,
            epochs_completed=0,
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        self._t0 = time.perf_counter()
        self.start()

    @property
    def ident(self) -> dict[str, Any]:
        return {"activation": self.record["activation"], "seed": self.record["seed"]}

    def epoch(self, row: dict[str, Any]) -> None:
        if self.metrics is None:
            self.metrics = CsvLog(self.out / record.METRICS, runs.METRIC_COLUMNS)
            if self.config.get("tracker"):
                self.tracker = open_tracker(self.config["tracker"], self.out, self.config)
        row = {**self.ident, **row}
        self.metrics.write([row])
        if self.tracker is not None:
            self.tracker.log_epoch(row)

    def layers(self, epoch: int, rows: Sequence[dict[str, Any]]) -> None:
        if self.config.get("diagnostics"):
            if self.diagnostics is None:
                self.diagnostics = CsvLog(self.out / record.DIAGNOSTICS, runs.DIAGNOSTIC_COLUMNS)
            self.diagnostics.write([{**self.ident, "epoch": epoch, **r} for r in rows])

    def end(self, status: str, **extra: Any) -> None:
        """Set the outcome (may be called again: the last call before finish() wins)."""
        self.status = status
        self.extra.update(extra)

    def finish(self) -> dict[str, Any]:
        """Close the files and write run.json's final state, agreeing with metrics.csv exactly."""
        if self.finished:
            return self.record
        self.finished = True
        self.record.update(self.extra, status=self.status)
        if self.metrics is not None and self.metrics.last is not None:
            last = self.metrics.last
            final = {k: last.get(k) for k in [*runs.FINAL_METRICS, *runs.VALIDATION_METRICS]}
            self.record.update(epochs_completed=self.metrics.count, final=final)
        for csv_log in (self.metrics, self.diagnostics):
            if csv_log is not None:
                csv_log.close()
        self.record["wall_seconds"] = round(time.perf_counter() - self._t0, 3)
        self.record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            if self.tracker is not None:
                self.tracker.close(self.record)
        finally:
            self._json()
        return self.record

    def save_model(self, model: Any, test_x: Any, test_y: Any) -> None:
        """Final weights, the test confusion matrix, and a few test digits with probabilities."""
        import numpy as np
        import pandas as pd
        import torch

        from .train import confusion_counts, predict

        def write(name: str, how) -> None:
            path = self.out / name
            try:
                with atomic_path(path) as tmp:
                    how(tmp)
            except OSError as err:
                raise _cannot_write(path, err) from None

        # CPU tensors: a model trained on a GPU loads anywhere without map_location
        write("model.pt", lambda tmp: torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp))
        logits = predict(model, test_x)  # one pass over the test set for the confusion matrix and the examples
        cm = confusion_counts(test_y, logits.argmax(dim=1)).cpu().numpy()
        frame = pd.DataFrame(cm, index=pd.RangeIndex(10, name="true"), columns=[f"pred_{c}" for c in range(10)])
        write("confusion.csv", lambda tmp: frame.to_csv(tmp))
        # The first EXAMPLES test digits and the first EXAMPLES the model gets wrong.
        probs = torch.softmax(logits, dim=1)
        wrong = (probs.argmax(dim=1) != test_y).nonzero().flatten()[:EXAMPLES]
        idx = torch.cat([torch.arange(min(EXAMPLES, len(test_y)), device=wrong.device), wrong])
        arrays = {
            "index": idx.cpu().numpy(),
            "label": test_y[idx].cpu().numpy(),
            "prob": probs[idx].cpu().numpy(),
            "image": test_x[idx].reshape(-1, 28, 28).cpu().numpy().astype(np.float32),
        }

        def savez(tmp: Path) -> None:
            with tmp.open("wb") as f:  # a file object: numpy would append ".npz" to a path
                np.savez_compressed(f, **arrays)

        write("examples.npz", savez)
