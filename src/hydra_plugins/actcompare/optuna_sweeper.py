"""An Optuna sweeper on current Optuna (ask-and-tell): hydra/sweeper=actcompare_optuna.

    actcompare -m hparams_search=lr_optuna                                      # the preset uses it
    actcompare -m hparams_search=lr_optuna hydra.sweeper.storage=/shared/study.journal   # on each machine

Each batch asks Optuna for ``n_jobs`` trials, hands their overrides to the launcher (fused by
default: a batch trains as one stacked group) and tells Optuna each job's return value. The search
space is ``params``, Hydra override strings (``choice(a,b)``, ``interval(a,b)``, ``tag(log,
interval(a,b))``, ``range(a,b[,step])`` with Hydra's meaning, b excluded, or a fixed value); a sweep
on the command line (``activation=relu,tanh``) replaces that key's entry, other command-line
overrides go to every job unchanged.

``n_trials`` is the study's total, not this run's: the sweep asks until the study holds n_trials
trials (whatever their state), so with a ``storage`` the same command run again continues the
study, and run on several machines at once they split the budget (each its own hydra.sweep.dir).
A path ending in ``.journal`` or ``.log`` is an Optuna JournalStorage file (a shared filesystem is
enough); anything else is an Optuna storage URL (``sqlite:///study.db``). Job numbers are trial
numbers, so a continued study adds new folders to the same sweep folder. A journal whose last record
a killed writer left half-written is repaired under Optuna's lock on it (the torn line moves to
<journal>.torn-<time>, one warning says so) before anything is appended; one damaged before its last
line is refused, naming the line.

A job that raises, or returns something that is not a finite number, is told as a failed trial;
a batch in which every job raised stops the sweep with the first error. At the end the best trial
is logged and written to <sweep dir>/optimization_results.yaml (the file hydra-optuna-sweeper wrote).
"""

# No `from __future__ import annotations`: Hydra scans plugins with exec_module outside sys.modules,
# where dataclasses cannot resolve string annotations. Optuna is imported when a sweep starts, not
# when Hydra scans the plugins (every command would pay for it; it is an optional extra).
import json
import logging
import math
import os
import socket
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"
JOURNAL_SUFFIXES = (".journal", ".log")


@dataclass
class TPESamplerConf:
    seed: Optional[int] = None  # with a storage each process mixes in its host and pid (no twin trials)
    multivariate: bool = False  # model the parameters jointly
    n_startup_trials: int = 10  # random trials before TPE models anything


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.actcompare.optuna_sweeper.OptunaSweeper"
    direction: str = "minimize"  # or maximize
    study_name: str = "actcompare"
    storage: Optional[str] = None  # null: in memory; *.journal / *.log: a journal file; else an Optuna URL
    n_trials: int = 20  # the study's total (a continued study only adds the missing ones)
    n_jobs: int = 2  # trials asked for, and launched, at a time
    sampler: TPESamplerConf = field(default_factory=TPESamplerConf)
    params: Optional[dict[str, str]] = None  # key: Hydra override value (choice, interval, range, fixed)


ConfigStore.instance().store(
    group="hydra/sweeper", name="actcompare_optuna", node=OptunaSweeperConf, provider="actcompare"
)


@dataclass
class Space:
    """One searched key: categorical (choices, texts: each choice as override text), int or float."""

    kind: str
    choices: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    low: float = 0.0
    high: float = 0.0
    step: Optional[float] = None
    log: bool = False


def parse_params(overrides: list[str], config_loader: Any = None) -> tuple[dict[str, Space], dict[str, str]]:
    """Hydra override strings -> ({searched key: Space}, {fixed key: override text}); a later
    string for a key replaces an earlier one (the command line after the config's params)."""
    parser = OverridesParser.create(config_loader=config_loader)
    searched: dict[str, Space] = {}
    fixed: dict[str, str] = {}
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
            space = _space(o) if o.is_sweep_override() else None
        except HydraException as err:
            lines = [x.strip() for x in str(err).splitlines() if x.strip() and not x.strip().startswith("See http")]
            raise HydraException(f"Optuna search space, {line}: {(lines or [type(err).__name__])[-1]}") from err
        key = o.get_key_element()
        searched.pop(key, None)
        fixed.pop(key, None)
        if space is None:
            fixed[key] = o.input_line or line
        else:
            searched[key] = space
    return searched, fixed


def _space(o: Any) -> Space:
    value = o.value()
    if o.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        # In the written order (never shuffled): a continued study must see the same choices.
        if isinstance(value, (ChoiceSweep, RangeSweep)):
            raw = list(value.list) if isinstance(value, ChoiceSweep) else list(value.range())
        else:
            raw = list(o.sweep_iterator())  # glob(...): the config group's options
        if not raw:
            raise HydraException("no values to choose from")
        return Space("categorical", [Transformer.encode(x) for x in raw], [Transformer.str(x) for x in raw])
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise HydraException("an empty range")
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        step = abs(value.step) if len(values) > 1 else 1
        return Space(kind, low=min(values), high=max(values), step=step)
    if isinstance(value, IntervalSweep):
        low, high, log_scale = value.start, value.end, "log" in value.tags
        if not low < high or (log_scale and low <= 0):
            raise HydraException(f"needs start < end{' and start > 0 on a log scale' if log_scale else ''}")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Space(kind, low=low, high=high, log=log_scale)
    raise HydraException("not a search space: use choice, interval, tag(log, interval), range or a value")


def suggest(trial: Any, key: str, space: Space) -> str:
    """Draw the trial's value for key; return it as override text."""
    if space.kind == "categorical":
        drawn = trial.suggest_categorical(key, space.choices)
        return space.texts[next(i for i, c in enumerate(space.choices) if c == drawn and type(c) is type(drawn))]
    if space.kind == "int":
        step = int(space.step or 1)
        return str(trial.suggest_int(key, int(space.low), int(space.high), step=step, log=space.log))
    return repr(trial.suggest_float(key, float(space.low), float(space.high), step=space.step, log=space.log))


def make_storage(storage: Optional[str]) -> Any:
    """None (in memory), a JournalStorage on a journal file, or the URL for Optuna to open."""
    if not storage or not str(storage).endswith(JOURNAL_SUFFIXES):
        return storage or None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    class CheckedJournalFileBackend(JournalFileBackend):
        """Optuna's file backend with its default lock (JournalFileSymlinkLock: <journal>.lock, held
        by every writer while it appends) that never appends to a record a killed writer left
        half-written: under that lock, a torn last line is cut off (and kept) first."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with _held(lock):
                cut_torn_tail(path)
                text = "\n".join(json.dumps(one, separators=(",", ":")) for one in logs) + "\n"
                with open(self._file_path, "ab") as f:  # as Optuna's own append_logs
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())

    path = Path(os.path.expanduser(str(storage))).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileSymlinkLock(str(path))  # what JournalFileBackend uses when given none
    backend = CheckedJournalFileBackend(str(path), lock_obj=lock)  # creates an empty file if there is none
    with _held(lock):  # no writer is mid-record while we look
        check_journal(path)
    return JournalStorage(backend)


@contextmanager
def _held(lock: Any) -> Iterator[None]:
    lock.acquire()  # blocks; Optuna frees a lock left by a killed process after its grace period (30 s)
    try:
        yield
    finally:
        lock.release()


def _record_error(line: bytes) -> Optional[str]:
    """None for one whole journal record (a JSON object on a line), else what is wrong with it."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not JSON at column {err.colno}: {err.msg}"
    return None if isinstance(record, dict) else "not a JSON object"


def check_journal(path: Path) -> None:
    """Refuse a journal damaged before its last line; cut off a torn last line. Call it holding the
    journal's lock. A writer killed mid-write leaves its record without the newline that ends every
    record (Optuna appends each one with a single write and holds the lock meanwhile); Optuna skips
    such a line when it reads, but its next append would land on it and make the whole file
    unreadable. A last line that ends but does not parse (an append onto a torn record, by an
    older actcompare or by Optuna alone) is cut off the same way: Optuna never read it either."""
    data = path.read_bytes()
    lines = data.split(b"\n")  # the last item: after the last newline (b"" when the file ends in one)
    whole = len(lines) - 1
    for number, line in enumerate(lines[:-1], start=1):
        why = _record_error(line)
        if why is None:
            continue
        if number == whole and not lines[-1]:  # the last line: a torn record, cut below
            break
        raise HydraException(
            f"{path}: line {number} of {len(lines) - (not lines[-1])} is damaged ({why}), so the Optuna study in it "
            f"cannot be read; restore the file from a copy, or keep its first {number - 1} lines (head -n {number - 1} "
            f"{path} > kept.journal) and use hydra.sweeper.storage=kept.journal (later trials are lost)"
        )
    cut_torn_tail(path, data)


def cut_torn_tail(path: Path, data: Optional[bytes] = None) -> None:
    """If the journal's last line is not a whole record, move it to <journal>.torn-<time> (logging
    one warning) and truncate the journal to its whole records. Call it holding the journal's lock."""
    if data is None:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if not size:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":  # the cheap check before every append: the file ends with a record
                return
        data = path.read_bytes()
    start = (data[:-1] if data.endswith(b"\n") else data).rfind(b"\n") + 1  # where the last line starts
    last = data[start:]
    if not last or (last.endswith(b"\n") and _record_error(last) is None):
        return
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept = path.with_name(f"{path.name}.torn-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = path.with_name(f"{path.name}.torn-{stamp}-{n}")
    with open(kept, "xb") as f:  # the removed bytes first, safe on disk, then the cut
        f.write(last)
        f.flush()
        os.fsync(f.fileno())
    with open(path, "r+b") as f:
        f.truncate(start)
        os.fsync(f.fileno())
    whole = data.count(b"\n", 0, start)
    log.warning(
        f"{path}: its last record was cut off mid-write (a writer stopped): removed that line ({len(last)} bytes, "
        f"kept in {kept.name}); the study continues from the {whole} whole records"
    )


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: str = "minimize",
        study_name: str = "actcompare",
        storage: Optional[str] = None,
        n_trials: int = 20,
        n_jobs: int = 2,
        sampler: Optional[Any] = None,
        params: Optional[Any] = None,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise HydraException(f"hydra.sweeper.direction={direction}: use maximize or minimize")
        if n_trials < 1 or n_jobs < 1:
            raise HydraException(f"hydra.sweeper: n_trials={n_trials} and n_jobs={n_jobs} must be at least 1")
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler = dict(sampler or {})
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = self.sampler.get("seed")
        if self.storage and seed is not None:  # machines sharing a study must not draw the same trials
            seed = (seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())) % 2**32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                multivariate=bool(self.sampler.get("multivariate", False)),
                n_startup_trials=int(self.sampler.get("n_startup_trials", 10)),
            )
        return optuna.create_study(
            study_name=self.study_name,
            storage=make_storage(self.storage),
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        loader = self.hydra_context.config_loader if self.hydra_context else None
        searched, fixed = parse_params([f"{k}={v}" for k, v in self.params.items()] + list(arguments), loader)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = self._study()
        held = len(study.get_trials(deepcopy=False))
        where = f"storage {self.storage}" if self.storage else "in memory"
        log.info(f"Optuna study '{study.study_name}' ({where}): {held} of {self.n_trials} trials held")
        returns = []
        while True:
            trials = []
            try:
                while len(trials) < self.n_jobs and len(study.get_trials(deepcopy=False)) < self.n_trials:
                    trials.append(study.ask())
                if not trials:
                    break
                # Optuna names a parameter by its key without Hydra's + or ++ (a job's override keeps them)
                batch = [
                    [*fixed.values(), *(f"{k}={suggest(t, k.lstrip('+'), s)}" for k, s in searched.items())]
                    for t in trials
                ]
                results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            except BaseException:  # Ctrl-C, or a batch the launcher refused: no trial stays running
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
            returns.append(results)
            for trial, ret in zip(trials, results, strict=True):
                try:
                    value = float(ret.return_value)  # raises the job's own error when it failed
                    error = None if math.isfinite(value) else f"returned {value}"
                except Exception as err:
                    error = f"{type(err).__name__}: {err}"
                if error is None:
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                    log.warning(f"Optuna trial {trial.number} failed: {error}")
            if all(r.status == JobStatus.FAILED for r in results):
                _ = results[0].return_value  # every job raised: stop with the first one's error
        self._write_results(study, sweep_dir)
        return returns

    def _write_results(self, study: Any, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning(f"Optuna study '{study.study_name}': no trial has completed, no best trial")
            return
        best = study.best_trial
        results = {"name": "optuna", "best_params": dict(best.params), "best_value": best.value}
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        params = " ".join(f"{k}={v}" for k, v in best.params.items())
        log.info(f"Optuna best trial {best.number} of {len(study.trials)}: {best.value} with {params}")
