"""actcompare's Optuna sweeper (hydra/sweeper=actcompare_optuna): Hydra's own sweeper and integration
suites with Hydra's test apps, the params parser, failed trials, and a study continued through a
journal file. Tiny apps only: no training (test_optuna.py runs the preset end to end)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite
from omegaconf import OmegaConf

from hydra_plugins.actcompare.optuna_sweeper import OptunaSweeper, Space, parse_params

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
