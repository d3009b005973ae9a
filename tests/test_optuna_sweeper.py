"""actcompare's Optuna sweeper (hydra/sweeper=actcompare_optuna): Hydra's own sweeper and integration
suites with Hydra's test apps, the params parser, failed trials, and a study continued through a
journal file. Tiny apps only: no training (test_optuna.py runs the preset end to end)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite
from omegaconf import OmegaConf

from hydra_plugins.actcompare.optuna_sweeper import OptunaSweeper, Space, make_storage, parse_params

optuna = pytest.importorskip("optuna", reason="the optional optuna extra is not installed")

SWEEPER = ["hydra/sweeper=actcompare_optuna"]


@pytest.fixture(autouse=True)
def _fresh_version_base():
    """As in test_hydra_plugins.py: each suite test as in a fresh process (version base 1.1)."""
    from hydra import version

    base = version.VersionBase.instance()
    saved = base.version_base
    version.setbase("1.1")
    yield
    base.version_base = saved


class GridOrder(optuna.samplers.BaseSampler):
    """Trial n takes the n-th point of the grid of its categorical params, first key slowest: the
    order Hydra's basic sweeper launches, which BatchedSweeperTestSuite expects. TPE draws at random."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        i = len(trial.params)  # params already drawn for this trial: this one's place in the grid
        stride = math.prod(self.sizes[i + 1 :])
        return param_distribution.choices[(trial.number // stride) % self.sizes[i]]


@pytest.fixture
def grid_order(monkeypatch: pytest.MonkeyPatch):
    def use(sizes: list[int]) -> None:
        monkeypatch.setattr(optuna.samplers, "TPESampler", lambda **_: GridOrder(sizes))

    return use


def test_discovery() -> None:
    assert OptunaSweeper.__name__ in [p.__name__ for p in Plugins.instance().discover(Sweeper)]


# Hydra's suite for a sweeper that batches: 6 jobs (group1=file1,file2 x bar=100,200,300) in 3
# batches of n_jobs=2, each job's overrides, config and folder. Its expected order is the grid's,
# so the sampler walks the grid in order here (test_tpe_sweep below: the same with TPE's draws).
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("basic", [*SWEEPER, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2"]),
        ("fused", [*SWEEPER, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2"]),
    ],
)
class TestOptunaSweeperBatched(BatchedSweeperTestSuite):
    @pytest.fixture(autouse=True)
    def _grid(self, grid_order) -> None:
        grid_order([2, 3])


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [pytest.param({}, ["-m", *SWEEPER, "hydra.sweeper.n_trials=1"], id="actcompare_optuna")],
)
class TestOptunaSweeperIntegration(IntegrationTestSuite):
    pass


def test_tpe_sweep(hydra_sweep_runner, tmp_path: Path) -> None:
    """TPE's own draws: batches of n_jobs (the last one smaller), each job's config follows its
    overrides, and optimization_results.yaml names the best job."""
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=lambda cfg: cfg.foo + cfg.bar,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[
            *SWEEPER,
            *("hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=0"),
            *("hydra.sweeper.direction=maximize", "group1=file1,file2", "bar=range(100,400,100)", "+baz=7"),
            "+qux=choice(1,2)",
        ],
        temp_dir=tmp_path / "sweep",
    )
    with sweep:
        assert [len(batch) for batch in sweep.returns] == [2, 2, 1]
        values = []
        for job in (job for batch in sweep.returns for job in batch):
            baz, group, bar, qux = job.overrides  # the fixed overrides, then the searched keys
            assert qux in ("+qux=1", "+qux=2") and f"+qux={job.cfg.qux}" == qux
            assert group in ("group1=file1", "group1=file2") and bar in ("bar=100", "bar=200", "bar=300")
            assert baz == "+baz=7" and job.cfg.baz == 7
            assert job.cfg.foo == (10 if group.endswith("file1") else 20) and f"bar={job.cfg.bar}" == bar
            values.append(job.return_value)
        result = OmegaConf.load(Path(sweep.temp_dir) / "optimization_results.yaml")
        assert result.name == "optuna" and result.best_value == max(values)
        assert set(result.best_params) == {"group1", "bar", "qux"}  # Optuna's names: no + prefix


# ---------------------------------------------------------------- the params parser


def test_parser_reads_every_form() -> None:
    searched, fixed = parse_params(
        [
            "activation=choice(relu,sigmoid,tanh,leaky_relu)",
            "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
            "momentum=interval(0, 0.9)",
            "width=range(32,129,32)",
            "dropout=range(0.1,0.35,0.1)",
            "order=shuffle(range(1,4))",
            "epochs=3",
            "seed=1,2",  # a later entry replaces an earlier one (the command line after params)
            "epochs=5",
        ]
    )
    acts = ["relu", "sigmoid", "tanh", "leaky_relu"]
    # vars(): Hydra's plugin scan executes the module again, so Space may be another class object
    assert vars(searched["activation"]) == vars(Space("categorical", choices=acts, texts=acts))
    assert vars(searched["optimizer.lr"]) == vars(Space("float", low=1e-4, high=1e-1, log=True))
    assert vars(searched["momentum"]) == vars(Space("float", low=0, high=0.9))
    assert vars(searched["width"]) == vars(Space("int", low=32, high=128, step=32))  # range: the end is excluded
    dropout = searched["dropout"]
    assert (dropout.kind, dropout.low, dropout.step) == ("float", 0.1, pytest.approx(0.1))
    assert dropout.high == pytest.approx(0.3)
    assert searched["order"].choices == [1, 2, 3]  # never shuffled: a continued study sees the same choices
    assert searched["seed"].choices == [1, 2]
    assert fixed == {"epochs": "epochs=5"}


def test_parser_values_are_override_text() -> None:
    searched, _ = parse_params(["x=choice(1, 2.5, true, 'a b', [1,2])"])
    assert searched["x"].choices == [1, 2.5, True, "a b", "[1,2]"]  # what Optuna stores
    assert searched["x"].texts == ["1", "2.5", "True", "a\\ b", "[1,2]"]  # what each job's override says


@pytest.mark.parametrize(
    "line, why",
    [
        ("optimizer.lr=loguniform(1e-4, 1e-1)", "Available: bool,choice"),
        ("optimizer.lr=interval(0.1, 0.01)", "needs start < end"),
        ("optimizer.lr=tag(log, interval(0, 1))", "start > 0 on a log scale"),
        ("width=range(3, 3)", "an empty range"),
    ],
)
def test_parser_names_the_key_of_a_bad_form(line: str, why: str) -> None:
    with pytest.raises(HydraException) as info:
        parse_params(["activation=relu", line])
    message = str(info.value)
    assert message.startswith(f"Optuna search space, {line}: ") and why in message and "\n" not in message


# ---------------------------------------------------------------- failures and storage


def _sweep(runner, tmp_path: Path, name: str, task, *overrides: str):
    return runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[*SWEEPER, *overrides],
        temp_dir=tmp_path / name,
    )


def _bad_bars(cfg):
    if cfg.bar == 300:
        raise RuntimeError("bar=300 crashes")
    return float("nan") if cfg.bar == 200 else float(cfg.bar)


def test_failed_and_non_finite_jobs_are_failed_trials(hydra_sweep_runner, tmp_path: Path, grid_order) -> None:
    grid_order([3])
    journal = tmp_path / "study.journal"
    common = (f"hydra.sweeper.storage={journal}", "hydra.sweeper.n_jobs=3", "hydra.sweeper.n_trials=3")
    with _sweep(hydra_sweep_runner, tmp_path, "a", _bad_bars, *common, "bar=100,200,300") as sweep:
        result = OmegaConf.load(Path(sweep.temp_dir) / "optimization_results.yaml")
        assert result.best_value == 100.0 and result.best_params == {"bar": 100}
    study = _journal_study(journal)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL"]


def test_a_batch_where_every_job_raises_stops_the_sweep(hydra_sweep_runner, tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    common = (f"hydra.sweeper.storage={journal}", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=6")
    with (
        pytest.raises(RuntimeError, match="bar=300 crashes"),
        _sweep(hydra_sweep_runner, tmp_path, "a", _bad_bars, *common, "bar=300"),
    ):
        pass
    study = _journal_study(journal)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"], "stopped after the first batch, none running"


def _journal_study(journal: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="actcompare", storage=JournalStorage(JournalFileBackend(str(journal))))


def test_a_journal_file_continues_one_study(hydra_sweep_runner, tmp_path: Path) -> None:
    """n_trials is the study's total: a second sweep on the same journal adds only the missing
    trials, numbered on from the first sweep's (job folders too), and reports the whole study's best."""
    journal = tmp_path / "shared" / "study.journal"
    common = (f"hydra.sweeper.storage={journal}", "hydra.sweeper.n_jobs=2", "bar=interval(0, 1)")
    with _sweep(hydra_sweep_runner, tmp_path, "a", lambda cfg: cfg.bar, *common, "hydra.sweeper.n_trials=3") as a:
        assert [job.hydra_cfg.hydra.job.num for batch in a.returns for job in batch] == [0, 1, 2]
        first = [job.return_value for batch in a.returns for job in batch]
    with _sweep(hydra_sweep_runner, tmp_path, "b", lambda cfg: cfg.bar, *common, "hydra.sweeper.n_trials=5") as b:
        assert [job.hydra_cfg.hydra.job.num for batch in b.returns for job in batch] == [3, 4]
        second = [job.return_value for batch in b.returns for job in batch]
        result = OmegaConf.load(Path(b.temp_dir) / "optimization_results.yaml")
        assert result.best_value == min(first + second)  # direction: minimize (the default)
    with _sweep(hydra_sweep_runner, tmp_path, "c", lambda cfg: cfg.bar, *common, "hydra.sweeper.n_trials=5") as c:
        assert c.returns == [], "the study is complete: nothing more to ask"
    study = _journal_study(journal)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert [t.value for t in study.trials] == first + second


# ---------------------------------------------------------------- a damaged journal


def _journal_trials(journal: Path, n_trials: int) -> list:
    """Open the journal as the sweeper does (make_storage), run the study up to n_trials trials with
    a cheap objective, and return its trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="actcompare", storage=make_storage(str(journal)), load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials - len(study.trials))
    return study.trials


def _states(data: bytes, tmp_path: Path) -> list[str]:
    """The states of the trials Optuna itself reads from these (whole) journal records."""
    copy = tmp_path / "intact.journal"
    copy.write_bytes(data)
    try:
        return [t.state.name for t in _journal_study(copy).trials]
    except KeyError:  # not even the study's creation record
        return []
    finally:
        copy.unlink()


@pytest.fixture(scope="module")
def real_journal(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real journal: a study of 4 finished trials."""
    journal = tmp_path_factory.mktemp("journal") / "study.journal"
    assert len(_journal_trials(journal, 4)) == 4
    return journal.read_bytes()


def test_a_torn_last_record_is_cut_off_and_the_study_continues(real_journal: bytes, tmp_path: Path, caplog) -> None:
    """A writer killed mid-write leaves its last line without its newline. Cut there at offsets
    across the file (inside the first, a middle and the last record, and just before the last
    newline): the next run keeps the whole records before the cut, moves the torn bytes to
    <journal>.torn-<time> (one warning) and runs the study on to its total. Before the fix, Optuna
    appended onto the torn line and the study stopped for good with a JSONDecodeError."""
    ends = [i + 1 for i, b in enumerate(real_journal) if b == ord("\n")]
    assert len(ends) > 8 and ends[-1] == len(real_journal)
    cuts = [ends[0] - 5, ends[len(ends) // 2] + 7, ends[-2] + 1, len(real_journal) - 1]
    for cut in cuts:
        folder = tmp_path / str(cut)
        folder.mkdir()
        journal = folder / "study.journal"
        journal.write_bytes(real_journal[:cut])
        whole = real_journal[: real_journal.rfind(b"\n", 0, cut) + 1]
        before = _states(whole, folder)  # the trial whose record was cut may stay RUNNING, as Optuna read it
        caplog.clear()
        trials = _journal_trials(journal, 6)
        assert [t.number for t in trials] == list(range(6)), f"cut at byte {cut}"
        assert [t.state.name for t in trials] == before + ["COMPLETE"] * (6 - len(before))
        data = journal.read_bytes()
        assert data.startswith(whole) and data.endswith(b"\n"), "the whole records are kept, nothing lost"
        assert all(json.loads(line) for line in data.splitlines()), "every line is a record"
        (torn,) = folder.glob("study.journal.torn-*")
        assert torn.read_bytes() == real_journal[len(whole) : cut], "the removed bytes are kept"
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and str(journal) in warnings[0] and torn.name in warnings[0]


def test_a_journal_damaged_by_an_append_onto_a_torn_record_is_repaired(real_journal: bytes, tmp_path: Path) -> None:
    """What the old code left: a torn record with a whole one appended onto it, as the last line
    (Optuna skips it when it reads). It is cut off like a torn record and the study continues."""
    lines = real_journal.splitlines(keepends=True)
    journal = tmp_path / "study.journal"
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:20] + lines[-1])
    before = _states(b"".join(lines[:-1]), tmp_path)
    trials = _journal_trials(journal, 6)
    assert [t.state.name for t in trials] == before + ["COMPLETE"] * (6 - len(before))
    (torn,) = tmp_path.glob("study.journal.torn-*")
    assert torn.read_bytes() == lines[-1][:20] + lines[-1]


def test_a_journal_damaged_in_the_middle_is_refused_in_one_line(real_journal: bytes, tmp_path: Path) -> None:
    lines = real_journal.splitlines(keepends=True)
    journal = tmp_path / "study.journal"
    damaged = b"".join(lines[:2]) + lines[2][:10] + b"\n" + b"".join(lines[3:])
    journal.write_bytes(damaged)
    with pytest.raises(HydraException) as info:
        make_storage(str(journal))
    message = str(info.value)
    assert f"{journal}: line 3 of {len(lines)} is damaged (not JSON" in message and "head -n 2" in message
    assert "\n" not in message
    assert journal.read_bytes() == damaged and not list(tmp_path.glob("*.torn-*")), "refused: nothing changed"


def test_a_record_torn_while_the_study_runs_is_cut_before_the_next_append(real_journal: bytes, tmp_path: Path) -> None:
    """Another machine's writer killed mid-write while this study runs: this process's next append
    first cuts the torn line off (under the journal's lock), so nothing lands on it."""
    journal = tmp_path / "study.journal"
    journal.write_bytes(real_journal)
    study = optuna.load_study(study_name="actcompare", storage=make_storage(str(journal)))
    with open(journal, "ab") as f:
        f.write(b'{"op_code":4,"worker_id":"elsewhere","trial_')
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [t.state.name for t in _journal_study(journal).trials] == ["COMPLETE"] * 6
    assert [json.loads(line)["op_code"] for line in journal.read_bytes().splitlines()]
    (torn,) = tmp_path.glob("study.journal.torn-*")
    assert torn.read_bytes() == b'{"op_code":4,"worker_id":"elsewhere","trial_'


def test_a_torn_record_is_cut_only_under_the_journal_lock(real_journal: bytes, tmp_path: Path) -> None:
    """While another process holds Optuna's lock on the journal (it may be mid-append), the torn
    looking tail is left alone; the repair waits for the lock."""
    import threading

    from optuna.storages.journal import JournalFileSymlinkLock

    journal = tmp_path / "study.journal"
    journal.write_bytes(real_journal[:-9])
    other = JournalFileSymlinkLock(str(journal))
    assert other.acquire()
    opened = threading.Thread(target=make_storage, args=(str(journal),))
    opened.start()
    opened.join(timeout=0.5)
    assert opened.is_alive() and journal.read_bytes() == real_journal[:-9], "waits, touches nothing"
    other.release()
    opened.join(timeout=10)
    assert not opened.is_alive() and journal.read_bytes().endswith(b"\n")
    assert len(list(tmp_path.glob("study.journal.torn-*"))) == 1


@pytest.mark.slow
def test_the_preset_continues_a_study_from_a_torn_journal(run_py, tmp_path: Path) -> None:
    """End to end: hparams_search=lr_optuna on a journal whose last record a killed writer cut
    (trial 1 running, its tell half-written) trains the one missing trial and exits 0."""
    from .test_optuna import TINY

    journal = tmp_path / "study.journal"
    study = optuna.create_study(
        study_name="lr_per_activation", storage=make_storage(str(journal)), direction="maximize"
    )
    for _ in range(2):
        trial = study.ask()
        trial.suggest_categorical("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
        trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
    study.tell(0, 0.5)
    study.tell(1, 0.6)
    data = journal.read_bytes()
    journal.write_bytes(data[:-12])  # the last record, trial 1's tell, cut
    sweep = tmp_path / "sweep"
    res = run_py(
        "-m", "hparams_search=lr_optuna", *TINY, f"hydra.sweeper.storage={journal}", f"hydra.sweep.dir={sweep}"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    said = [line for line in (res.stdout + res.stderr).splitlines() if "cut off mid-write" in line]
    assert len(said) == 1 and str(journal) in said[0], res.stdout[-3000:]
    assert len(list(sweep.glob("*/run.json"))) == 1, "one new trial: the study holds 3"
    trials = optuna.load_study(study_name="lr_per_activation", storage=make_storage(str(journal))).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING", "COMPLETE"]
