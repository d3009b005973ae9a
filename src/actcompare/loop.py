"""The one epoch loop: one group of runs -> an engine -> one recorder per run.

Read top to bottom: a :class:`GroupJob` (a group that ``engines.plan`` formed: stacked, or one model
with the per-run engine) -> :func:`train_group` (the data on the device once; a group too large for
the free memory trained in parts) -> :func:`_record` (every run's folder started and finished,
Ctrl-C recorded per run) -> :func:`_fit` (activations that fail a tiny batch failed alone, a group
that raises later redone one model at a time) -> :func:`_loop` (the epochs; divergence per run).
``experiment.run_group`` calls it in the sweep's process, ``experiment.train_task`` in an executor's.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import runs
from .data import MNISTTensors, load_mnist
from .diagnostics import probe
from .engines import Engine, Recipe, Variant, make_engine, resolve_device
from .engines.plan import MEMORY_SHARE, fit_memory, own_optimizer, slots, variant_key
from .errors import ConfigError, UserError
from .interrupts import interrupt_caught
from .recorder import RunRecorder
from .schema import hidden_sizes

log = logging.getLogger(__name__)

PROBE_SIZE = 512  # fixed test images used for diagnostics every epoch


@dataclass
class RunSpec:
    """One job: its composed config and the folder it records to."""

    cfg: DictConfig
    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    # Called once, right before the run's folder is first written (the fused launcher writes the
    # job's .hydra/ there): a batch refused before training leaves no folder behind.
    prepare: Callable[[], None] | None = None

    @property
    def label(self) -> str:
        """The job as its overrides name it (for messages)."""
        return " ".join(self.overrides) or "(no overrides)"

    @property
    def config(self) -> dict[str, Any]:
        config = OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True)
        assert isinstance(config, dict)
        return {k: v for k, v in config.items() if k != "hydra"}


@dataclass
class GroupJob:
    """One group to train, as engines.plan formed it: its jobs, the engine, and how they train.
    Built once (experiment.run_group); an executor's task gets it whole."""

    specs: list[RunSpec]
    kind: str = "stacked"  # the engine: "stacked" (one program for the group) or "single" (one model)
    threads: int | None = None  # torch threads (None: the config's ``threads``, else torch's default)
    run_logs: bool = False  # each run also writes its own run.log (the fused launcher)
    task: dict[str, Any] | None = None  # which executor task trains it, for run.json
    share: float = MEMORY_SHARE  # of the free memory the group may plan to take
    configs: list[dict[str, Any]] = field(default_factory=list)  # each job's spec.config (filled in)

    def __post_init__(self) -> None:
        if not self.configs:
            self.configs = [spec.config for spec in self.specs]

    def part(self, jobs: Sequence[int]) -> GroupJob:
        """The group of these jobs alone (a part that fits the free memory)."""
        return replace(self, specs=[self.specs[i] for i in jobs], configs=[self.configs[i] for i in jobs])


Data = tuple[MNISTTensors, tuple[torch.Tensor, torch.Tensor] | None]  # load_data's: (data, validation split)


@dataclass(frozen=True)
class _Where:
    """What every attempt at one group shares: its device, the progress display and the data."""

    device: torch.device
    progress: Progress
    data: MNISTTensors
    val: tuple[torch.Tensor, torch.Tensor] | None  # the validation split, or None

    @property
    def probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed test images the diagnostics look at every epoch."""
        return self.data.test.x[:PROBE_SIZE], self.data.test.y[:PROBE_SIZE]


class Progress:
    """Models x epochs done with an ETA: a tqdm bar on a terminal, a log line per epoch otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.bar = None
        if total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="model-epoch", dynamic_ncols=True, leave=False)

    def update(self, n: int, text: str) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)
        else:
            rate = (time.perf_counter() - self.t0) / max(self.done, 1)
            eta = rate * (self.total - self.done)
            log.info("%s [%d/%d model-epochs, ETA %.0f s]", text, self.done, self.total, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_group(job: GroupJob, progress: Progress, loaded: Data | None = None) -> list[dict[str, Any]]:
    """Train one group (every config shares group_key) and record every run; return run.json's dicts.
    A stacked group larger than the device's free memory holds (engines.plan.fit_memory) trains as
    several, one after another. The data is loaded before any run folder is written: a missing
    dataset leaves none behind."""
    cfg = job.specs[0].cfg
    device = resolve_device(cfg.device)
    if job.threads or cfg.threads:
        torch.set_num_threads(int(job.threads or cfg.threads))
    data, val = loaded or load_data(cfg, device)
    if job.kind == "stacked" and len(job.specs) > 1:
        parts = fit_memory(job.configs, hidden_sizes(cfg.model), int(cfg.batch_size), device, job.share)
        if len(parts) > 1:
            out: dict[int, dict[str, Any]] = {}
            for part in parts:
                out.update(zip(part, train_group(job.part(part), progress, (data, val)), strict=True))
            return [out[i] for i in range(len(job.specs))]
    recorders = _recorders(job, device, data, val)
    handler = RunLogs(recorders) if job.run_logs else None
    if handler is not None:
        logging.getLogger("actcompare").addHandler(handler)
    try:
        _record(job.specs, recorders, job.kind, _Where(device, progress, data, val))
    finally:
        if handler is not None:
            logging.getLogger("actcompare").removeHandler(handler)
        for rec in recorders:
            rec.close_log()
    return [rec.record for rec in recorders]


def _recorders(job: GroupJob, device: torch.device, data: MNISTTensors, val: Any) -> list[RunRecorder]:
    """One recorder per run of the group; nothing is written yet."""
    group = {"size": len(job.specs)} if job.kind == "stacked" else None
    images = {"train": len(data.train), "val": len(val[1]) if val is not None else 0, "test": len(data.test)}
    recorders = []
    for spec, config in zip(job.specs, job.configs, strict=True):
        rec = RunRecorder(
            spec.out_dir,
            config,
            overrides=spec.overrides,
            choices=spec.choices,
            engine=job.kind,
            device=str(device),
            threads=torch.get_num_threads(),
            group=group,
            run_log=job.run_logs,
        )
        rec.record["images"] = images  # what was really trained on: the report's setup block reads it
        if job.task:
            rec.record["task"] = job.task
        recorders.append(rec)
    return recorders


def _record(specs: Sequence[RunSpec], recorders: list[RunRecorder], kind: str, where: _Where) -> None:
    """Start every run's folder, train the group, and finish every record whatever happens: Ctrl-C
    records the running runs as interrupted, a UserError (bad data folder, full disk: every run would
    fail) as failed, and both stop the sweep."""
    try:
        for spec, rec in zip(specs, recorders, strict=True):
            if spec.prepare is not None:
                spec.prepare()
            rec.start()
        _fit(specs, recorders, kind, where)
    except KeyboardInterrupt:
        interrupt_caught()
        for rec in recorders:
            if rec.status == runs.RUNNING:
                rec.end(runs.INTERRUPTED)
        raise
    except UserError as err:
        for rec in recorders:
            if rec.status == runs.RUNNING:
                rec.end(runs.FAILED, error=str(err))
        raise
    finally:
        for rec in recorders:
            if not rec.started:
                continue
            try:
                rec.finish()
            except UserError as err:  # the disk is full: say so once, keep what is there
                log.error("%s", err)
            _end_line(rec)


def _fit(specs: Sequence[RunSpec], recorders: list[RunRecorder], kind: str, where: _Where) -> None:
    """Train one group and record every run. In a stacked group, an activation that fails a tiny
    batch fails alone before training; a group that raises later (which model's code raised is
    unknown) redoes its unfinished runs one at a time (same results), so only the run that raises fails."""
    if kind == "stacked":
        specs, recorders = _drop_broken(specs, recorders, where.device)
    if not specs:
        return
    reason = _attempt(specs, recorders, kind, where)
    if reason is None:
        return
    if kind == "stacked" and len(specs) > 1:
        log.warning("stacked group of %d failed (%s): training its unfinished runs one at a time", len(specs), reason)
        for spec, rec in zip(specs, recorders, strict=True):
            if rec.status == runs.RUNNING:
                rec.restart(engine="single")
                _fail(rec, _attempt([spec], [rec], "single", where))
    else:
        for rec in recorders:
            _fail(rec, reason)


def _fail(rec: RunRecorder, reason: str | None) -> None:
    if reason is not None and rec.status == runs.RUNNING:
        rec.end(runs.FAILED, error=reason)
        log.error("%s seed %s failed: %s", *rec.ident.values(), reason, extra=run_extra(rec))


def _variants(specs: Sequence[RunSpec], recorders: Sequence[RunRecorder]) -> tuple[list[str], dict[str, Variant]]:
    """Each run's variant key, and each distinct variant (activation, init, own optimizer values)."""
    keys = [variant_key(rec.config) for rec in recorders]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    variants = {
        k: Variant(
            instantiate(specs[i].cfg.activation.module, _partial_=True),
            specs[i].cfg.model.init.value,
            own_optimizer(recorders[i].config),
        )
        for k, i in sorted(first.items(), key=lambda item: item[1])
    }
    return keys, variants


def _drop_broken(
    specs: Sequence[RunSpec], recorders: Sequence[RunRecorder], device: torch.device
) -> tuple[list[RunSpec], list[RunRecorder]]:
    """Fail the runs whose activation fails a tiny batch (the pre-flight check); the rest train together."""
    width = hidden_sizes(specs[0].cfg.model)[0]
    keys, variants = _variants(specs, recorders)
    broken = {k: why for k, v in variants.items() if (why := _preflight(v, width, device))}
    for rec, k in zip(recorders, keys, strict=True):
        _fail(rec, broken.get(k))
    keep = [i for i, k in enumerate(keys) if k not in broken]
    return [specs[i] for i in keep], [recorders[i] for i in keep]


def _attempt(specs: Sequence[RunSpec], recorders: list[RunRecorder], kind: str, where: _Where) -> str | None:
    """Build the engine for these runs and train them through the epoch loop; why it raised, or None."""
    cfg = specs[0].cfg
    seeds = list(dict.fromkeys(int(s.cfg.seed) for s in specs))
    keys, variants = _variants(specs, recorders)
    slot = slots(seeds, list(variants), [(int(s.cfg.seed), k) for s, k in zip(specs, keys, strict=True)])
    recipe = Recipe(tuple(hidden_sizes(cfg.model)), instantiate(cfg.optimizer), cfg.batch_size)
    try:
        engine = make_engine(kind, list(variants.values()), seeds, recipe, where.data.train.x, where.data.train.y)
        _loop(engine, specs, recorders, slot, where)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


def _loop(
    engine: Engine, specs: Sequence[RunSpec], recorders: list[RunRecorder], slot: list[int], where: _Where
) -> None:
    """The epochs: every model trains and is evaluated, each run records its row; a run that diverges
    stops (its columns keep training in a stacked group, but touch no other model)."""
    cfg, test = specs[0].cfg, where.data.test
    alive = [i for i, rec in enumerate(recorders) if rec.status == runs.RUNNING]
    for epoch in range(1, cfg.epochs + 1):
        tic, trained = time.perf_counter(), len(alive)
        scores = _scores(engine, where)
        share = (time.perf_counter() - tic) / len(alive)  # this model's share of the group's epoch
        for i in list(alive):
            if not _record_epoch(specs[i], recorders[i], slot[i], epoch, scores, share):
                alive.remove(i)
            elif specs[i].cfg.diagnostics:
                recorders[i].layers(epoch, probe(engine.module(slot[i]), *where.probe))
        mean_acc = sum(scores["test_acc"][slot[i]] for i in alive) / max(len(alive), 1)
        # One model (per-run engine, a joblib/submitit job): name it, so interleaved jobs' lines read apart.
        who = "{} seed {}: ".format(*recorders[alive[0]].ident.values()) if len(alive) == 1 else ""
        where.progress.update(
            trained,
            f"{who}epoch {epoch}/{cfg.epochs}: {len(alive)} model(s), mean test acc "
            f"{100 * mean_acc:.2f} %, {share * len(alive):.2f} s",
        )
        if not alive:
            return
    for i in alive:
        recorders[i].end(runs.COMPLETED)
        if specs[i].cfg.save_model:
            recorders[i].save_model(engine.module(slot[i]), test.x, test.y)


def _scores(engine: Engine, where: _Where) -> dict[str, list[float] | None]:
    """One epoch of training, then evaluation: per metrics.csv column, a value per model (val_*: None
    without a validation split)."""
    train_loss, train_acc = engine.train_epoch()
    test_loss, test_acc = engine.evaluate(where.data.test.x, where.data.test.y)
    val_loss, val_acc = engine.evaluate(*where.val) if where.val is not None else (None, None)
    if where.data.test.x.device.type == "cuda":
        torch.cuda.synchronize()
    return {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
    }


def _record_epoch(
    spec: RunSpec, rec: RunRecorder, m: int, epoch: int, scores: dict[str, list[float] | None], share: float
) -> bool:
    """Model ``m``'s row of this epoch into its run's metrics.csv and run.log; False when the run
    diverged (recorded as such)."""
    row = {k: (v[m] if v else None) for k, v in scores.items()}
    rec.epoch({"epoch": epoch, **row, "epoch_seconds": round(share, 4)})
    rec.note(
        f"epoch {epoch}/{spec.cfg.epochs}: train loss {row['train_loss']:.4f}, test loss {row['test_loss']:.4f}, "
        f"test accuracy {100 * row['test_acc']:.2f} %"
    )
    why = runs.diverged(row["train_loss"], row["test_loss"])
    if why:
        rec.end(runs.DIVERGED, diverged_epoch=epoch, diverged_reason=why)
        who = rec.ident.values()
        log.warning("%s seed %s diverged in epoch %d (%s): stopped", *who, epoch, why, extra=run_extra(rec))
        return False
    return True


def load_data(cfg: DictConfig, device: torch.device) -> tuple[MNISTTensors, tuple[torch.Tensor, torch.Tensor] | None]:
    """MNIST on the device, and the validation split (the last data.val_samples training images,
    which are then not trained on) or None."""
    d = cfg.data
    data = load_mnist(d.root, device, d.normalize, d.train_samples, d.test_samples, d.download)
    n_val = d.get("val_samples") or 0
    if not n_val:
        return data, None
    if n_val >= len(data.train):
        raise ConfigError(f"data.val_samples={n_val} leaves no training images (the split has {len(data.train)})")
    train = type(data.train)(data.train.x[:-n_val], data.train.y[:-n_val])
    return type(data)(train=train, test=data.test), (data.train.x[-n_val:], data.train.y[-n_val:])


def _preflight(variant: Variant, width: int, device: torch.device) -> str | None:
    """Why an activation module fails on a tiny batch (forward and backward), or None."""
    try:
        module = variant.activation().to(device)
        leaf = torch.randn(4, width, device=device, requires_grad=True)
        module(leaf * 1.0).sum().backward()  # not the leaf itself: in-place modules (inplace=true) are fine
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job_logging format


def run_extra(rec: RunRecorder) -> dict[str, str]:
    """``extra=`` of a log line about one run: RunLogs puts it in that run's run.log only."""
    return {"run_dir": str(rec.out)}


class RunLogs(logging.Handler):
    """While a group trains under the fused launcher: every line of actcompare's loggers goes to the
    run.log of the run it is about (``extra=run_extra(rec)``), or, a line about the whole group
    (its progress), to the run.log of every run of the group."""

    def __init__(self, recorders: Sequence[RunRecorder]) -> None:
        super().__init__(logging.INFO)
        self.recorders = list(recorders)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(record, "run_dir", None)
        try:
            line = self.format(record)
            for rec in self.recorders:
                if target is None or target == str(rec.out):
                    rec.log_line(line)
        except Exception:
            self.handleError(record)


def _end_line(rec: RunRecorder) -> None:
    final = (rec.record.get("final") or {}).get("test_acc")
    acc = f", final test accuracy {100 * float(final):.2f} %" if final is not None else ""
    log.info(
        "%s seed %s: %s after %s epoch(s)%s; files in %s",
        *rec.ident.values(),
        rec.record["status"],
        rec.record.get("epochs_completed", 0),
        acc,
        rec.out,
        extra=run_extra(rec),
    )
