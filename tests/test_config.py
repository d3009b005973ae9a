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
        ("basic", "BasicLauncher", None),  # torch's default
        ("joblib", "JoblibLauncher", 1),  # n_jobs=-1: one job per core, one thread each
        ("parallel", "JoblibLauncher", max(1, (os.cpu_count() or 1) // min(2, os.cpu_count() or 1))),
        ("submitit_local", "LocalLauncher", None),
        ("local_processes", "LocalLauncher", 1),  # cpus_per_task=1: jobs that all start at once share the cores
        ("slurm", "SlurmLauncher", 4),  # cpus_per_task
    ],
)
def test_launcher_configs_and_threads_per_job(launcher: str, target: str, threads: int | None) -> None:
    from actcompare.task import threads_per_job

    cfg = compose_cfg([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert threads_per_job(cfg.hydra) == threads


def test_sweep_parent_process_imports_no_torchvision() -> None:
    """run.py's parent process (sweeper, validation, report) must not pay for torchvision's ~1.5 s
    of imports: under joblib/submitit it never trains. It must still register the config schema."""
    code = (
        "import sys, actcompare.cli, actcompare.report\n"
        "import hydra_plugins.actcompare.callback, hydra_plugins.actcompare.launcher\n"
        "from hydra.core.config_store import ConfigStore\n"
        "print('torchvision' in sys.modules, 'config_schema.yaml' in ConfigStore.instance().repo)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_entry_point_imports_no_torch() -> None:
    """`import actcompare.cli` (what run.py, `python -m actcompare` and the `actcompare` command
    import before their Ctrl-C handling is in place) must not import torch: ~2 s on 2 cores."""
    code = "import sys, actcompare.cli, actcompare.schema\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stderr


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


# ---------------------------------------------------------------- issue 10/12: validation before training


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # a keyword the class does not take: refused by validate(), i.e. before any data is loaded
        (["+optimizer.momentum=0.9"], "unknown key 'optimizer.momentum': torch.optim.adam.Adam does not take"),
        (["+activation.module.inplac=true"], "did you mean 'activation.module.inplace'?"),
        (["activation=prelu", "+activation.module.slope=1"], "torch.nn.modules.activation.PReLU does not take 'slope'"),
        # keys the schema does not have under activation (+ gets past Hydra's struct check)
        (["+activation.foo=1"], "unknown key 'activation.foo': activation has only name and module"),
        (["+activation.nam=x"], "did you mean 'activation.name'?"),
        # a key that exists elsewhere in the config
        (["+lr=0.01"], "unknown key 'lr' (did you mean 'optimizer.lr'?)"),
        # labels become folder and file names
        (["activation.name=../../x"], "activation.name=../../x is not allowed"),
        (["activation.name=a b"], "activation.name=a b is not allowed"),
        # seeds torch cannot represent (it keeps 32 bits) and negative ones
        ([f"seed={2**32}"], f"seed={2**32} is not allowed"),
        (["seed=-1"], "seed=-1 is not allowed"),
        # more samples than MNIST has
        (["data.train_samples=10000000"], "data.train_samples=10000000 is more than MNIST's 60000"),
        (["data.test_samples=10001"], "data.test_samples=10001 is more than MNIST's 10000"),
        (["data.train_samples=100", "data.val_samples=100"], "data.val_samples=100 leaves no training images"),
        (["tracker=mlflow"], "tracker=mlflow is not allowed"),
        (["objective=accuracy"], "objective=accuracy is not allowed"),
        (["objective=val_acc"], "objective=val_acc needs a validation split"),
    ],
)
def test_validate_rejects_with_one_line(overrides: list[str], expected: str) -> None:
    problems = validate(compose_cfg(overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0], problems
    assert "\n" not in problems[0]


@pytest.mark.parametrize(
    "overrides",
    [
        ["+optimizer.amsgrad=true"],  # a real Adam keyword
        ["optimizer=sgd", "+optimizer.dampening=0.1"],
        ["+activation.module.inplace=false"],
        ["activation=leaky_relu", "activation.module.negative_slope=0.2"],
        ["activation=identity", "+activation.module.anything=1"],  # nn.Identity takes **kwargs
        [f"seed={2**32 - 1}"],
        ["data.train_samples=60000", "data.test_samples=10000"],
        ["data.val_samples=5000", "objective=val_acc"],
        ["tracker=tensorboard", "objective=test_loss"],
        ["activation.name=my_relu-1.5"],
    ],
)
def test_validate_accepts(overrides: list[str]) -> None:
    assert validate(compose_cfg(overrides)) == []


def test_validate_tracker_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    problems = validate(compose_cfg(["tracker=tensorboard"]))
    assert problems == ["tracker=tensorboard needs the tensorboard package: pip install 'actcompare[tensorboard]'"]


def test_new_keys_and_their_defaults() -> None:
    cfg = compose_cfg()
    assert cfg.tracker is None and cfg.objective == "test_acc"


@pytest.mark.parametrize("value", ["", None])
def test_empty_mnist_root_counts_as_unset(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("MNIST_ROOT", raising=False)
    else:
        monkeypatch.setenv("MNIST_ROOT", value)
    assert compose_cfg().data.root == "./data"
    monkeypatch.setenv("MNIST_ROOT", "/somewhere")
    assert compose_cfg().data.root == "/somewhere"


def test_sample_counts_beyond_the_files_are_refused(tiny_mnist: str) -> None:
    """A dataset smaller than MNIST at data.root: asking for more than it holds fails, naming both."""
    from actcompare.errors import DataError

    with pytest.raises(DataError, match=r"data.train_samples=600 but .* holds only 512 train images"):
        load_mnist(tiny_mnist, train_samples=600)
    with pytest.raises(DataError, match=r"data.test_samples=257 .* only 256 test images"):
        load_mnist(tiny_mnist, test_samples=257)
    assert len(load_mnist(tiny_mnist, train_samples=512).train) == 512


# ---------------------------------------------------------------- one-line config errors (asks Hydra)


def _config_error(overrides: list[str], config_dir: str | None = None) -> str:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from actcompare.cli import config_error

    with pytest.raises(HydraException) as info:
        if config_dir is None:
            compose_cfg(overrides)
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                compose(config_name="config", overrides=[f"hydra.searchpath=[file://{config_dir}]", *overrides])
    return config_error(info.value)


def test_unknown_key_suggests_the_key_of_that_name() -> None:
    message = _config_error(["lr=0.01"])
    assert message.startswith("error: unknown key 'lr' (did you mean 'optimizer.lr'?)"), message


def test_unknown_group_option_names_hydras_options(tmp_path) -> None:
    """The options come from Hydra's own config repository: the packaged configs plus any search path."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    message = _config_error(["activation=relux"])
    assert message.startswith("error: unknown activation 'relux' (did you mean 'relu'?): choose one of "), message
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("activation")
    assert ", ".join(sorted(options)) in message and "\n" not in message

    (tmp_path / "activation").mkdir()
    (tmp_path / "activation" / "boom.yaml").write_text("name: boom\nmodule:\n  _target_: torch.nn.ReLU\n")
    message = _config_error(["activation=boomx"], config_dir=str(tmp_path))
    assert "unknown activation 'boomx' (did you mean 'boom'?)" in message and "boom, elu" in message, message


# ---------------------------------------------------------------- --help: one source with the schema


def _leaf_keys(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for key in node:
        child = node[key]
        if isinstance(child, DictConfig) and key not in ("module",) and prefix + str(key) != "optimizer":
            keys += _leaf_keys(child, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_help_documents_every_key_of_the_schema() -> None:
    from actcompare.helptext import documented_keys, help_text

    documented = {key: (default, meaning) for key, default, meaning in documented_keys()}
    for key in _leaf_keys(compose_cfg()):
        assert key in documented, f"{key} has no help text in actcompare.schema"
        assert documented[key][1], f"{key}: empty help"
    text = help_text()
    for key, default, meaning in documented_keys():
        assert key in text and meaning in text and default in text
    for word in (
        "hydra/launcher=parallel",
        "hydra/launcher=local_processes",
        "hparams_search=lr_optuna",
        "experiment=",
        "$APP_CONFIG_GROUPS",
        "$CONFIG",
    ):
        assert word in text, word
    # Hydra fills the template with string.Template: any other $name would crash --help.
    import string

    string.Template(text).substitute(APP_CONFIG_GROUPS="", CONFIG="", HYDRA_CONFIG_GROUPS="", FLAGS_HELP="")


def test_help_config_is_selected() -> None:
    cfg = compose_cfg(return_hydra_config=True)
    assert cfg.hydra.help.template.startswith("actcompare: "), "config.yaml's defaults: override hydra/help: actcompare"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # inf passed the "> 0" check and trained (recorded diverged, exit 0); nan was refused
        (["optimizer.lr=inf"], "optimizer.lr=inf is not allowed: use a finite number > 0"),
        (["optimizer.lr=nan"], "optimizer.lr=nan is not allowed: use a finite number > 0"),
        (["report.margin=inf"], "report.margin=inf is not allowed: use a finite number > 0"),
        (["optimizer.weight_decay=inf"], "optimizer.weight_decay=inf is not allowed: use a finite number"),
        (["optimizer.weight_decay=-inf"], "optimizer.weight_decay=-inf is not allowed: use a finite number"),
        (["optimizer.betas=[0.9,inf]"], "optimizer.betas=[0.9, inf] is not allowed: use finite numbers"),
        (["+optimizer.eps=nan"], "optimizer.eps=nan is not allowed: use a finite number"),
        (["optimizer=sgd", "optimizer.momentum=inf"], "optimizer.momentum=inf is not allowed: use a finite number"),
        (["optimizer=adamw", "optimizer.weight_decay=nan"], "optimizer.weight_decay=nan is not allowed"),
        (["activation=leaky_relu", "activation.module.negative_slope=inf"], "activation.module.negative_slope=inf"),
        (["activation=elu", "activation.module.alpha=nan"], "activation.module.alpha=nan is not allowed"),
    ],
)
def test_validate_refuses_non_finite_floats(overrides: list[str], expected: str) -> None:
    problems = validate(compose_cfg(overrides))
    assert len(problems) == 1 and problems[0].startswith(expected) and "\n" not in problems[0], problems


def test_an_open_activation_bound_may_be_inf() -> None:
    """Hardtanh(max_val=inf) is a real choice (no upper clip); nan never is."""
    hardtanh = ["activation.module._target_=torch.nn.Hardtanh", "+activation.module.min_val=-inf"]
    assert validate(compose_cfg([*hardtanh, "+activation.module.max_val=inf"])) == []
    assert validate(compose_cfg([*hardtanh, "+activation.module.max_val=nan"])) == [
        "activation.module.max_val=nan is not allowed: use a finite number"
    ]
