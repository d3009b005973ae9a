"""The Hydra configs: every activation composes and trains; validate() and the typed schema reject bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from actcompare.data import load_mnist
from actcompare.model import NeuralNetwork
from actcompare.schema import hidden_sizes, validate
from actcompare.train import train

from .conftest import CONF_DIR, compose_cfg

ACTIVATIONS = sorted(p.stem for p in (CONF_DIR / "activation").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))


def test_there_are_activation_configs() -> None:
    assert {"relu", "sigmoid", "tanh", "leaky_relu", "prelu"} <= set(ACTIVATIONS)


def test_defaults_are_the_tutorial_recipe() -> None:
    cfg = compose_cfg()
    assert cfg.activation.name == "relu"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == pytest.approx(1e-3)
    assert hidden_sizes(cfg.model) == [128, 128]
    assert (cfg.batch_size, cfg.epochs, cfg.seed) == (64, 10, 0)
    assert cfg.data.normalize is False
    assert validate(cfg) == []


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_config_trains_one_batch(name: str, tiny_mnist: str) -> None:
    cfg = compose_cfg([f"activation={name}", f"data.root={tiny_mnist}"])
    assert cfg.activation.name == name, "the name: field must match the file name (folder names, plots)"
    assert validate(cfg) == []
    factory = instantiate(cfg.activation.module, _partial_=True)
    assert isinstance(factory(), torch.nn.Module)
    torch.manual_seed(0)
    model = NeuralNetwork(factory, hidden_sizes=hidden_sizes(cfg.model))
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    data = load_mnist(tiny_mnist)
    x, y = data.train.x[: cfg.batch_size], data.train.y[: cfg.batch_size]
    before = [p.detach().clone() for p in model.parameters()]
    res = train(model, x, y, optimizer, cfg.batch_size, torch.Generator().manual_seed(0))
    assert math.isfinite(res.loss) and res.loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_configs_instantiate(name: str) -> None:
    cfg = compose_cfg([f"optimizer={name}"])
    assert validate(cfg) == []
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr)


def test_depth_replaces_hidden_sizes() -> None:
    cfg = compose_cfg(["model.depth=3", "model.width=20"])
    assert hidden_sizes(cfg.model) == [20, 20, 20]
    assert validate(cfg) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr=-1", "optimizer.lr"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("epochs=0", "epochs"),
        ("batch_size=0", "batch_size"),
        ("batch_size=-5", "batch_size"),
        ("model.hidden_sizes=[]", "model.hidden_sizes"),
        ("model.hidden_sizes=[128,0]", "model.hidden_sizes"),
        ("model.depth=0", "model.depth"),
        ("data.train_samples=0", "data.train_samples"),
        ("threads=0", "threads"),
        ("activation.module._target_=torch.nn.NoSuchThing", "activation.module._target_"),
        ("activation.module._target_=torch.optim.Adam", "activation.module._target_"),
        ("optimizer._target_=torch.nn.ReLU", "optimizer._target_"),
    ],
)
def test_validate_rejects(override: str, expected: str) -> None:
    problems = validate(compose_cfg([override]))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_validate_reports_every_problem_at_once() -> None:
    problems = validate(compose_cfg(["epochs=0", "batch_size=0", "optimizer.lr=-1"]))
    assert len(problems) == 3
    assert {p.split("=")[0] for p in problems} == {"epochs", "batch_size", "optimizer.lr"}


def test_validate_rejects_cuda_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = validate(compose_cfg(["device=cuda"]))
    assert len(problems) == 1 and "cuda" in problems[0].lower()
    assert validate(compose_cfg(["device=cpu"])) == []
    assert validate(compose_cfg(["device=auto"])) == []


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("batch_size=abc", "batch_size"),
        ("epochs=1.5", "epochs"),
        ("model.hidden_sizes=12", "hidden_sizes"),
        ("model.hidden_sizes=[a,b]", "hidden_sizes"),
        ("foo=1", "foo"),
        ("model.widht=64", "widht"),
        ("device=gpu", "device"),
        ("model.init=he", "init"),
        ("activation=relux", "relux"),
    ],
)
def test_bad_values_fail_at_compose_time(override: str, key: str) -> None:
    with pytest.raises(Exception) as info:  # Hydra's ConfigCompositionException / MissingConfigException
        compose_cfg([override])
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert key in "\n".join(chain), chain


def test_resolved_config_is_plain_data(tiny_mnist: str) -> None:
    cfg = compose_cfg([f"data.root={tiny_mnist}"])
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert plain["data"]["root"] == tiny_mnist
    assert plain["device"] == "auto" and plain["model"]["init"] == "default"


@pytest.mark.parametrize(
    ("launcher", "target", "threads"),
    [
        (None, "BasicLauncher", None),  # torch's default
        ("joblib", "JoblibLauncher", 1),  # n_jobs=-1: one job per core, one thread each
        ("parallel", "JoblibLauncher", max(1, (os.cpu_count() or 1) // min(2, os.cpu_count() or 1))),
        ("submitit_local", "LocalLauncher", None),
        ("slurm", "SlurmLauncher", 4),  # cpus_per_task
    ],
)
def test_launcher_configs_and_threads_per_job(launcher: str | None, target: str, threads: int | None) -> None:
    if launcher in ("parallel", "slurm") and not (CONF_DIR / "hydra" / "launcher" / f"{launcher}.yaml").exists():
        pytest.skip(f"conf/hydra/launcher/{launcher}.yaml does not exist")
    from actcompare.cli import _threads_per_job

    cfg = compose_cfg([f"hydra/launcher={launcher}"] if launcher else [], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert _threads_per_job(cfg.hydra) == threads


def test_sweep_parent_process_imports_no_torchvision() -> None:
    """run.py's parent process (sweeper, validation, report) must not pay for torchvision's ~1.5 s
    of imports: under joblib/submitit it never trains. It must still register the config schema."""
    code = (
        "import sys, actcompare.cli, actcompare.report\n"
        "import hydra_plugins.actcompare_sweeper.comparison_sweeper\n"
        "from hydra.core.config_store import ConfigStore\n"
        "print('torchvision' in sys.modules, 'config_schema.yaml' in ConfigStore.instance().repo)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epoch=3", "error: unknown key 'epoch' (did you mean 'epochs'?)"),
        ("model.widht=3", "error: unknown key 'model.widht' (did you mean 'model.width'?)"),
        ("batch_size=abc", "error: batch_size=abc: Value 'abc' of type 'str' could not be converted to Integer"),
        ("activation=relu,", "error: cannot parse the override 'activation=relu,'"),
    ],
)
def test_config_errors_are_one_line(override: str, expected: str) -> None:
    from hydra.errors import HydraException

    from actcompare.cli import config_error

    with pytest.raises(HydraException) as info:
        compose_cfg([override])
    message = config_error(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message
