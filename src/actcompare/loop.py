"""The one epoch loop: one group of runs -> an engine -> one recorder per run.

``train_group`` trains a group that ``engines.plan`` formed (stacked, or one model with the per-run
engine) and records every run through ``recorder.RunRecorder``: the data on the device once, a group
too large for the free memory split into parts, activations that fail a tiny batch failed alone, a
group that raises later redone one model at a time, divergence and Ctrl-C recorded per run.
``experiment.run_group`` calls it in the sweep's process, ``experiment.train_task`` in an executor's.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import runs
from .data import MNISTTensors, load_mnist
from .engines import Recipe, Variant, make_engine
from .engines.plan import MEMORY_SHARE, free_memory, memory_cap, model_bytes, own_optimizer, plan, slots, variant_key
from .errors import ConfigError, UserError
from .recorder import RunRecorder
from .schema import hidden_sizes, resolve_device

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


def train_group(
    specs: Sequence[RunSpec],
    configs: Sequence[dict],
    kind: str,
    threads: int | None,
    progress: Progress,
    run_logs: bool = False,
    task: dict[str, Any] | None = None,
    loaded: tuple[MNISTTensors, tuple[torch.Tensor, torch.Tensor] | None] | None = None,
    share: float = MEMORY_SHARE,
) -> list[dict[str, Any]]:
    """Train one group (all configs share group_key) with engine ``kind``; record every run
    (``task``: which executor task trained it, for run.json). A stacked group larger than the
    device's free memory holds (engines.plan.memory_cap) trains as several, one after another.

    The data is loaded before any run folder is written: a missing dataset leaves none behind."""
    from .interrupts import interrupt_caught

    cfg = specs[0].cfg
    device = resolve_device(cfg.device)
    if threads or cfg.threads:
        torch.set_num_threads(int(threads or cfg.threads))
    data, val = loaded or load_data(cfg, device)
    if kind == "stacked" and len(specs) > 1:
        sizes, free = hidden_sizes(cfg.model), free_memory(device)
        cap = memory_cap(free, sizes, int(cfg.batch_size), share)
        if len(specs) > cap:
            parts = plan(configs, cap)
            log.info(
                "a group of %d models needs ~%.1f GiB, %.1f GiB is free on %s: it trains as %d groups of at most "
                "%d (%.0f %% of the free memory; hydra.launcher.max_models caps it lower)",
                len(specs),
                len(specs) * model_bytes(sizes, int(cfg.batch_size)) / 2**30,
                free / 2**30,
                device,
                len(parts),
                cap,
                100 * share,
            )
            out: dict[int, dict[str, Any]] = {}
            for part in parts:
                records = train_group(
                    [specs[i] for i in part],
                    [configs[i] for i in part],
                    kind,
                    threads,
                    progress,
                    run_logs,
                    task,
                    (data, val),
                    share,
                )
                out.update(zip(part, records, strict=True))
            return [out[i] for i in range(len(specs))]
    group = {"size": len(specs)} if kind == "stacked" else None
    recorders = [
        RunRecorder(
            spec.out_dir,
            config,
            overrides=spec.overrides,
            choices=spec.choices,
            engine=kind,
            device=str(device),
            threads=torch.get_num_threads(),
            group=group,
            run_log=run_logs,
        )
        for spec, config in zip(specs, configs, strict=True)
    ]
    images = {"train": len(data.train), "val": len(val[1]) if val is not None else 0, "test": len(data.test)}
    for rec in recorders:  # what was really trained on: the report's setup block reads it
        rec.record["images"] = images
        if task:
            rec.record["task"] = task
    handler = RunLogs(recorders) if run_logs else None
    if handler is not None:
        logging.getLogger("actcompare").addHandler(handler)
    try:
        for spec, rec in zip(specs, recorders, strict=True):
            if spec.prepare is not None:
                spec.prepare()
            rec.start()
        _fit(specs, recorders, kind, _Where(device, progress, data, val))
    except KeyboardInterrupt:
        interrupt_caught()
        for rec in recorders:
            if rec.status == runs.RUNNING:
                rec.end(runs.INTERRUPTED)
        raise
    except UserError as err:  # bad data folder, full disk: every run would fail, so stop the sweep
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
        if handler is not None:
            logging.getLogger("actcompare").removeHandler(handler)
        for rec in recorders:
            rec.close_log()
    return [rec.record for rec in recorders]


@dataclass(frozen=True)
class _Where:
    """What every attempt at one group shares: its device, the progress display and the data."""

    device: torch.device
    progress: Progress
    data: MNISTTensors
    val: tuple[torch.Tensor, torch.Tensor] | None  # the validation split, or None


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


def _loop(engine, specs, recorders, slot, where: _Where) -> None:
    from . import diagnostics as diag

    cfg, data, val, progress = specs[0].cfg, where.data, where.val, where.progress
    probe_x, probe_y = data.test.x[:PROBE_SIZE], data.test.y[:PROBE_SIZE]
    alive = [i for i, rec in enumerate(recorders) if rec.status == runs.RUNNING]
    for epoch in range(1, cfg.epochs + 1):
        tic, trained = time.perf_counter(), len(alive)
        train_loss, train_acc = engine.train_epoch()
        test_loss, test_acc = engine.evaluate(data.test.x, data.test.y)
        val_loss, val_acc = engine.evaluate(*val) if val is not None else (None, None)
        if data.test.x.device.type == "cuda":
            torch.cuda.synchronize()
        share = (time.perf_counter() - tic) / len(alive)  # this model's share of the group's epoch
        for i in list(alive):
            m, rec = slot[i], recorders[i]
            row = {
                "epoch": epoch,
                "train_loss": train_loss[m],
                "train_acc": train_acc[m],
                "test_loss": test_loss[m],
                "test_acc": test_acc[m],
                "val_loss": val_loss[m] if val_loss else None,
                "val_acc": val_acc[m] if val_acc else None,
                "epoch_seconds": round(share, 4),
            }
            rec.epoch(row)
            rec.note(
                f"epoch {epoch}/{cfg.epochs}: train loss {train_loss[m]:.4f}, test loss {test_loss[m]:.4f}, "
                f"test accuracy {100 * test_acc[m]:.2f} %"
            )
            why = runs.diverged(train_loss[m], test_loss[m])
            if why:
                rec.end(runs.DIVERGED, diverged_epoch=epoch, diverged_reason=why)
                log.warning(
                    "%s seed %s diverged in epoch %d (%s): stopped",
                    *rec.ident.values(),
                    epoch,
                    why,
                    extra=run_extra(rec),
                )
                alive.remove(i)  # its columns keep training in a stacked group, but touch no other model
            elif specs[i].cfg.diagnostics:
                rec.layers(epoch, diag.probe(engine.module(m), probe_x, probe_y))
        mean_acc = sum(test_acc[slot[i]] for i in alive) / max(len(alive), 1)
        # One model (per-run engine, a joblib/submitit job): name it, so interleaved jobs' lines read apart.
        who = "{} seed {}: ".format(*recorders[alive[0]].ident.values()) if len(alive) == 1 else ""
        progress.update(
            trained,
            f"{who}epoch {epoch}/{cfg.epochs}: {len(alive)} model(s), mean test acc "
            f"{100 * mean_acc:.2f} %, {share * len(alive):.2f} s",
        )
        if not alive:
            return
    for i in alive:
        rec = recorders[i]
        rec.end(runs.COMPLETED)
        if specs[i].cfg.save_model:
            rec.save_model(engine.module(slot[i]), data.test.x, data.test.y)
