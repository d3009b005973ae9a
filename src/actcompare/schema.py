"""Typed config schema (dataclasses + ConfigStore) and the range checks types cannot express.

Hydra merges the YAML files in ``conf/`` (installed: the package ``actcompare.conf``) onto
:class:`Config`, so a misspelt key or a value of the wrong type (``batch_size=abc``,
``model.hidden_sizes=12``) fails while composing, before any training. :func:`validate` then checks
ranges, names and keyword arguments and returns every problem at once.

Every key's meaning lives in ONE place: the ``help`` metadata of its dataclass field below (plus
helptext.GROUP_KEYS for keys that come from a config group's YAML). ``python run.py --help``
(``conf/hydra/help/actcompare.yaml``) is generated from it by helptext.py's ``actcompare.help``
resolver. Where a run trains (``device``) is engines.resolve_device's.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from .runs import FINAL_METRICS, SEED_MAX, VALIDATION_METRICS, safe_label


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Init(Enum):
    default = "default"  # PyTorch's nn.Linear init (Kaiming-uniform with a = sqrt(5))
    kaiming = "kaiming"  # He normal, fan_in: keeps ReLU activations' variance constant with depth
    xavier = "xavier"  # Glorot uniform: keeps tanh/sigmoid-like activations' variance constant


# What real MNIST holds; a larger data.train_samples / data.test_samples is refused by validate().
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
TRACKERS = ("tensorboard",)  # tracker=null (off) or one of these
OBJECTIVES = (*FINAL_METRICS, *VALIDATION_METRICS)  # what `objective` may name


def doc(help: str, shown: str | None = None) -> dict[str, Any]:
    """A dataclass field's metadata: its --help text (``shown``: the default as --help prints it)."""
    return {"help": help, "shown": shown}


@dataclass
class ActivationConf:
    name: str = field(
        default=MISSING,
        metadata=doc(
            "label in tables, plots, folder and file names (letters, digits, . _ + = , @ -)", "the option's name"
        ),
    )
    module: Any = field(
        default=MISSING,
        metadata=doc(
            "{_target_: <any nn.Module class>, **its kwargs}: a fresh module per hidden layer; kwargs are checked "
            "against the class (+activation.module.<kwarg>=...)",
            "per option",
        ),
    )


@dataclass
class ModelConf:
    hidden_sizes: list[int] = field(
        default_factory=lambda: [128, 128], metadata=doc("hidden layer widths: 784-128-128-10")
    )
    depth: Optional[int] = field(
        default=None, metadata=doc("when set: `depth` hidden layers of `width` units (replaces hidden_sizes)")
    )
    width: int = field(default=128, metadata=doc("width of each hidden layer when depth is set"))
    init: Init = field(
        default=Init.default,
        metadata=doc("default (PyTorch's), kaiming (He normal, ReLU-like), xavier (Glorot, tanh-like)"),
    )


@dataclass
class DataConf:
    root: str = field(
        default="./data",
        metadata=doc("folder holding MNIST/raw/ (an empty MNIST_ROOT counts as unset)", "env MNIST_ROOT or ./data"),
    )
    normalize: bool = field(
        default=False,
        metadata=doc("false: pixels / 255 in [0, 1] (tutorial); true: also standardise with the train mean/std"),
    )
    train_samples: Optional[int] = field(
        default=None, metadata=doc("null = all 60000; N = the first N training images (at most 60000)")
    )
    test_samples: Optional[int] = field(
        default=None, metadata=doc("null = all 10000; N = the first N test images (at most 10000)")
    )
    # Hold out the last N training images as a validation split for model selection (best epoch,
    # best lr): they are not trained on, and val_loss/val_acc are recorded every epoch.
    val_samples: Optional[int] = field(
        default=None, metadata=doc("hold out the last N training images as a validation split (val_loss, val_acc)")
    )
    download: bool = field(default=True, metadata=doc("try torchvision's download when the files are missing"))


@dataclass
class ReportConf:
    # Read by the sweep's report and by seeds=auto; not part of a run's identity (runs.BOOKKEEPING_KEYS).
    margin: float = field(
        default=0.3,
        metadata=doc(
            "equivalence margin in accuracy points: a difference within ±margin counts as none (docs/method.md)"
        ),
    )
    baseline: Optional[str] = field(
        default=None,
        metadata=doc("the activation every other one is compared with (null: relu when swept, else the first)"),
    )
    pdf: bool = field(
        default=False,
        metadata=doc("also write every figure as PDF beside its PNG (slower: each figure is drawn twice)"),
    )


@dataclass
class Config:
    activation: ActivationConf = field(
        default_factory=ActivationConf,
        metadata=doc("config group (conf/activation/, --config-dir, hydra.searchpath): which non-linearity", "relu"),
    )
    # Optimizers differ in their keys (betas vs momentum), so the node is free-form but
    # struct: unknown keys still fail, and validate() checks _target_, lr and every kwarg.
    optimizer: Any = field(default=MISSING, metadata=doc("config group: adam, adamw, sgd (momentum 0.9)", "adam"))
    model: ModelConf = field(default_factory=ModelConf, metadata=doc("the MLP"))
    data: DataConf = field(default_factory=DataConf, metadata=doc("MNIST"))
    seed: int = field(default=0, metadata=doc(f"seeds weight init and batch order (0 ... {SEED_MAX})"))
    epochs: int = field(default=10, metadata=doc("training epochs"))
    batch_size: int = field(default=64, metadata=doc("training mini-batch size (reshuffled every epoch)"))
    device: Device = field(default=Device.auto, metadata=doc("auto (CUDA when present, else CPU), cpu, cuda, mps"))
    threads: Optional[int] = field(
        default=None, metadata=doc("torch threads per run; null = torch's default, or cores / parallel jobs")
    )
    diagnostics: bool = field(
        default=True, metadata=doc("per-epoch gradient norms, dead/saturated units (diagnostics.csv)")
    )
    save_model: bool = field(
        default=True, metadata=doc("save model.pt, confusion.csv and examples.npz at the end of a run")
    )
    resume: bool = field(
        default=False, metadata=doc("with hydra.sweep.dir=<existing sweep>: skip runs that already finished")
    )
    tracker: Optional[str] = field(
        default=None,
        metadata=doc(
            "null (off) or tensorboard: per-epoch scalars + HParams under <run>/tensorboard/ "
            "(pip install 'actcompare[tensorboard]')"
        ),
    )
    objective: str = field(
        default="test_acc",
        metadata=doc(
            "the final metric a run returns to a sweeper such as Optuna: "
            + ", ".join(OBJECTIVES)
            + " (val_*: needs data.val_samples)"
        ),
    )
    report: ReportConf = field(default_factory=ReportConf, metadata=doc("the sweep's report"))


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register_configs()


# ---------------------------------------------------------------- helpers


def hidden_sizes(model: DictConfig | ModelConf) -> list[int]:
    """The hidden layer widths the model config asks for (depth x width wins when set)."""
    if model.depth is not None:
        return [int(model.width)] * int(model.depth)
    return [int(h) for h in model.hidden_sizes]


def _import(target: str) -> Any:
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ImportError(f"'{target}' is not a dotted path like torch.nn.ReLU")
    return getattr(importlib.import_module(module_name), attr)


def _dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, DictConfig):
        for key in node:
            full = f"{prefix}{key}"
            yield full
            try:
                child = node._get_node(key)
            except Exception:
                continue
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                yield from _dotted_keys(child, full + ".")


def unknown_key(key: str, siblings: Iterable[str], root: DictConfig | None = None) -> str:
    """The message for a dotted key that does not exist, naming the nearest real key.

    The nearest sibling first (epoch -> epochs); else, given the whole config, a key of the same
    name elsewhere (lr -> optimizer.lr).
    """
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, sorted(map(str, siblings)), n=1)
    guess = f"{parent + '.' if parent else ''}{close[0]}" if close else None
    if guess is None and root is not None:
        everywhere = sorted(set(_dotted_keys(root)) - {key})
        same_name = [k for k in everywhere if k.rpartition(".")[2] == name and not k.startswith("hydra.")]
        guess = min(same_name, key=len) if same_name else None
    hint = f" (did you mean '{guess}'?)" if guess else ""
    return f"unknown key '{key}'{hint}; `actcompare --help` lists every key"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


# Hydra's instantiate keywords, never passed to the class.
_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _kwargs_problems(key: str, cls: type, node: DictConfig, skip: Iterable[str] = ()) -> list[str]:
    """Keys of ``node`` that ``cls(...)`` does not accept, one line each (none if it takes **kwargs)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return []  # a builtin without a signature: instantiate will say
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in skip]
    problems = []
    for name in node:
        name = str(name)
        if name in _HYDRA_KEYS or name in accepted:
            continue
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f"did you mean '{key}.{close[0]}'? " if close else ""
        problems.append(
            f"unknown key '{key}.{name}': {cls.__module__}.{cls.__qualname__} does not take "
            f"'{name}' ({hint}it takes {', '.join(accepted) or 'no arguments'})"
        )
    return problems


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- validate


# ---------------------------------------------------------------- validate: a table of named checks
# Each check takes the composed config and returns its problems, one readable line each.


def _check_unknown_keys(cfg: DictConfig) -> list[str]:
    """`+key=value` gets past Hydra's struct check; a key the schema does not know would then be
    silently ignored (a typo like +epoch=3 trains 10 epochs), so name it. The optimizer and
    activation.module nodes are free-form kwargs, checked against their class (_check_classes)."""
    problems = []
    for node, schema in (("", Config), ("model", ModelConf), ("data", DataConf), ("activation", ActivationConf)):
        sub = OmegaConf.select(cfg, node) if node else cfg
        known = {f.name for f in fields(schema)} | ({"hydra"} if not node else set())  # the sweeper's composes
        for key in sub if isinstance(sub, DictConfig) else []:
            if key not in known:
                problem = unknown_key(f"{node}.{key}" if node else str(key), known, cfg)
                if node == "activation" and "did you mean" not in problem:  # a kwarg put one level too high
                    problem = (
                        f"unknown key 'activation.{key}': activation has only name and module; a keyword "
                        f"argument of the module goes under activation.module (+activation.module.{key}=...)"
                    )
                problems.append(problem)
    return problems


# Checked by _check_positive (which refuses nan and inf there too).
_POSITIVE_KEYS = ("epochs", "batch_size", "model.width", "optimizer.lr", "report.margin")


def _check_positive(cfg: DictConfig) -> list[str]:
    problems = []
    optional = ("data.train_samples", "data.test_samples", "data.val_samples", "model.depth", "threads")
    for key in (*_POSITIVE_KEYS, *optional):
        value = OmegaConf.select(cfg, key)
        if value is None and key in optional:
            continue
        if not _positive(value):
            allowed = ("a finite number > 0" if _not_finite(value) else "a number > 0") + (
                " or null (all)" if key in optional else ""
            )
            problems.append(f"{key}={value!r} is not allowed: use {allowed}")
    return problems


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf under a config node; a list is one leaf (key=[...])."""
    for key in list(node.keys()):
        if not prefix and key == "hydra":  # the sweeper's compose: Hydra's own node, not an option
            continue
        try:
            value = node[key]  # resolves interpolations; one that fails is another check's to report
        except Exception:
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted, value


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, (ListConfig, list, tuple)):
        for item in value:
            yield from _flat(item)
    else:
        yield value


_OPEN_BOUNDS = {"min_val", "max_val", "threshold"}  # activation keywords that may be +-inf


def _check_finite(cfg: DictConfig) -> list[str]:
    """nan or inf in a float option (optimizer.weight_decay=inf, optimizer.betas=[0.9,inf]) would
    train anyway and only show up as a diverged run. An activation's bound may be open
    (torch.nn.Hardtanh(max_val=inf), Softplus(threshold=inf)): those keywords take inf, never nan."""
    problems = []
    for key, value in _leaves(cfg, ""):
        if key in _POSITIVE_KEYS:  # (_leaves never enters Hydra's own node)
            continue
        numbers = list(_flat(value))
        bound = key.startswith("activation.module.") and key.rpartition(".")[2] in _OPEN_BOUNDS
        bad = [x for x in numbers if _not_finite(x) and (math.isnan(x) or not bound)]
        if bad and isinstance(value, (ListConfig, list, tuple)):
            problems.append(f"{key}=[{', '.join(repr(x) for x in numbers)}] is not allowed: use finite numbers")
        elif bad:
            problems.append(f"{key}={value!r} is not allowed: use a finite number")
    return problems


def _check_seed(cfg: DictConfig) -> list[str]:
    seed = OmegaConf.select(cfg, "seed")
    if _as_int(seed) is None or not 0 <= seed <= SEED_MAX:
        return [
            f"seed={seed} is not allowed: use an integer from 0 to {SEED_MAX} "
            "(torch keeps only 32 bits of a seed, so larger ones would repeat smaller ones)"
        ]
    return []


def _check_data(cfg: DictConfig) -> list[str]:
    """Sample counts beyond what MNIST holds would silently train on less than the config says."""
    problems = []
    train_n, test_n, val_n = (_as_int(OmegaConf.select(cfg, f"data.{s}_samples")) for s in ("train", "test", "val"))
    if train_n is not None and train_n > SPLIT_SIZES["train"]:
        problems.append(
            f"data.train_samples={train_n} is more than MNIST's {SPLIT_SIZES['train']} training images: "
            "use null (all) or a smaller number"
        )
    if test_n is not None and test_n > SPLIT_SIZES["test"]:
        problems.append(
            f"data.test_samples={test_n} is more than MNIST's {SPLIT_SIZES['test']} test images: "
            "use null (all) or a smaller number"
        )
    if val_n is not None and val_n >= (train_n or SPLIT_SIZES["train"]):
        problems.append(
            f"data.val_samples={val_n} leaves no training images: the validation split is carved from "
            f"the {train_n or SPLIT_SIZES['train']} training images, so use fewer"
        )
    root = OmegaConf.select(cfg, "data.root")
    if root is not None and not str(root).strip():
        problems.append("data.root is empty: name the folder that holds MNIST/raw/ (or leave MNIST_ROOT unset: ./data)")
    return problems


def _check_model(cfg: DictConfig) -> list[str]:
    sizes = cfg.model.hidden_sizes if cfg.model.depth is None else None
    if sizes is not None and len(sizes) == 0:
        return [
            "model.hidden_sizes=[] has no hidden layer, so no activation is ever applied: "
            "give at least one width, e.g. model.hidden_sizes=[128,128]"
        ]
    if sizes is not None and any(h <= 0 for h in sizes):
        return [f"model.hidden_sizes={list(sizes)} is not allowed: widths must be > 0"]
    return []


def _check_activation_name(cfg: DictConfig) -> list[str]:
    name = OmegaConf.select(cfg, "activation.name")
    why = safe_label(str(name)) if isinstance(name, str) else "it must be a string"
    return [f"activation.name={name} is not allowed: {why}"] if why else []


def _check_classes(cfg: DictConfig) -> list[str]:
    """activation.module and optimizer name importable classes of the right kind, with keyword
    arguments the class takes."""
    import torch  # here, not at the top: `import actcompare` stays light (Ctrl-C during imports, --help)

    problems = []
    classes = (("activation.module", torch.nn.Module, ()), ("optimizer", torch.optim.Optimizer, ("params",)))
    for key, base, skip in classes:
        target = OmegaConf.select(cfg, f"{key}._target_")
        if not isinstance(target, str):
            problems.append(f"{key}._target_ is missing: name a class, e.g. torch.nn.ReLU")
            continue
        try:
            cls = _import(target)
        except (ImportError, AttributeError) as err:
            problems.append(f"{key}._target_={target} cannot be imported ({err})")
            continue
        if not (isinstance(cls, type) and issubclass(cls, base)):
            problems.append(f"{key}._target_={target} is not a {base.__module__}.{base.__name__}")
            continue
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig):
            problems.extend(_kwargs_problems(key, cls, node, skip))
    return problems


def _check_tracker_and_objective(cfg: DictConfig) -> list[str]:
    problems = []
    tracker = OmegaConf.select(cfg, "tracker")
    if tracker is not None and tracker not in TRACKERS:
        problems.append(f"tracker={tracker} is not allowed: use null (off) or {', '.join(TRACKERS)}")
    elif tracker is not None and importlib.util.find_spec(tracker) is None:
        problems.append(f"tracker={tracker} needs the {tracker} package: pip install 'actcompare[{tracker}]'")
    objective = OmegaConf.select(cfg, "objective")
    if objective not in OBJECTIVES:
        problems.append(f"objective={objective} is not allowed: use one of {', '.join(OBJECTIVES)}")
    elif str(objective).startswith("val_") and not _as_int(OmegaConf.select(cfg, "data.val_samples")):
        problems.append(f"objective={objective} needs a validation split: set data.val_samples=<N>")
    return problems


def _check_device(cfg: DictConfig) -> list[str]:
    import torch

    device = cfg.device.value if isinstance(cfg.device, Device) else str(cfg.device)
    if device == "cuda" and not torch.cuda.is_available():
        return ["device=cuda but this machine has no CUDA GPU: use device=auto or cpu"]
    if device == "mps" and not torch.backends.mps.is_available():
        return ["device=mps but MPS is not available here: use device=auto or cpu"]
    return []


CHECKS = {  # name -> check; validate() runs them in this order
    "unknown keys": _check_unknown_keys,
    "positive numbers": _check_positive,
    "finite numbers": _check_finite,
    "seed": _check_seed,
    "data sizes": _check_data,
    "model shape": _check_model,
    "activation name": _check_activation_name,
    "classes and their arguments": _check_classes,
    "tracker and objective": _check_tracker_and_objective,
    "device": _check_device,
}


def validate(cfg: DictConfig) -> list[str]:
    """Every problem with a composed config, one readable line each (empty list = valid): the
    problems of every check in CHECKS."""
    return [problem for check in CHECKS.values() for problem in check(cfg)]
