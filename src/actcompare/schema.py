"""Typed config schema (dataclasses + ConfigStore) and the range checks types cannot express.

Hydra merges the YAML files in ``conf/`` onto :class:`Config`, so a misspelt key or a value of
the wrong type (``batch_size=abc``, ``model.hidden_sizes=12``) fails while composing, before any
training. :func:`validate` then checks ranges and names and returns every problem at once.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Optional

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Init(Enum):
    default = "default"  # PyTorch's nn.Linear init (Kaiming-uniform with a = sqrt(5))
    kaiming = "kaiming"  # He normal, fan_in: keeps ReLU activations' variance constant with depth
    xavier = "xavier"  # Glorot uniform: keeps tanh/sigmoid-like activations' variance constant


@dataclass
class ActivationConf:
    name: str = MISSING  # label used in tables, plots and folder names
    module: Any = MISSING  # {_target_: <nn.Module class>, **kwargs}; a fresh module per layer


@dataclass
class ModelConf:
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    depth: Optional[int] = None  # if set: hidden_sizes = [width] * depth
    width: int = 128
    init: Init = Init.default


@dataclass
class DataConf:
    root: str = "./data"
    normalize: bool = False
    train_samples: Optional[int] = None
    test_samples: Optional[int] = None
    # Hold out the last N training images as a validation split for model selection (best epoch,
    # best lr): they are not trained on, and val_loss/val_acc are recorded every epoch.
    val_samples: Optional[int] = None
    download: bool = True


@dataclass
class Config:
    activation: ActivationConf = field(default_factory=ActivationConf)
    # Optimizers differ in their keys (betas vs momentum), so the node is free-form but
    # struct: unknown keys still fail, and validate() checks _target_ and lr.
    optimizer: Any = MISSING
    model: ModelConf = field(default_factory=ModelConf)
    data: DataConf = field(default_factory=DataConf)
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    device: Device = Device.auto
    threads: Optional[int] = None
    diagnostics: bool = True
    save_model: bool = True
    resume: bool = False


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register_configs()


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


def unknown_key(key: str, siblings: Iterable[str]) -> str:
    """The message for a dotted key that does not exist, naming the nearest of its siblings."""
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, sorted(map(str, siblings)), n=1)
    hint = f" (did you mean '{parent + '.' if parent else ''}{close[0]}'?)" if close else ""
    return f"unknown key '{key}'{hint}; `python run.py --help` lists every key"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def validate(cfg: DictConfig) -> list[str]:
    """Every problem with a composed config, one readable line each (empty list = valid)."""
    problems: list[str] = []

    def need_positive(key: str, allow_none: bool = False) -> None:
        value = OmegaConf.select(cfg, key)
        if value is None and allow_none:
            return
        if not _positive(value):
            allowed = "a number > 0" + (" or null (all)" if allow_none else "")
            problems.append(f"{key}={value!r} is not allowed: use {allowed}")

    # `+key=value` gets past Hydra's struct check; a key the schema does not know would then be
    # silently ignored (a typo like +epoch=3 trains 10 epochs), so name it. The optimizer and
    # activation.module nodes are free-form kwargs, so +optimizer.amsgrad=true stays allowed.
    for node, schema in (("", Config), ("model", ModelConf), ("data", DataConf)):
        sub = OmegaConf.select(cfg, node) if node else cfg
        known = {f.name for f in fields(schema)} | ({"hydra"} if not node else set())  # the sweeper's composes
        for key in sub if isinstance(sub, DictConfig) else []:
            if key not in known:
                problems.append(unknown_key(f"{node}.{key}" if node else str(key), known))
    for key in ("epochs", "batch_size", "model.width"):
        need_positive(key)
    for key in ("data.train_samples", "data.test_samples", "model.depth", "threads"):
        need_positive(key, allow_none=True)
    need_positive("optimizer.lr")

    sizes = cfg.model.hidden_sizes if cfg.model.depth is None else None
    if sizes is not None:
        if len(sizes) == 0:
            problems.append(
                "model.hidden_sizes=[] has no hidden layer, so no activation is ever applied: "
                "give at least one width, e.g. model.hidden_sizes=[128,128]"
            )
        elif any(h <= 0 for h in sizes):
            problems.append(f"model.hidden_sizes={list(sizes)} is not allowed: widths must be > 0")

    for key, base in (("activation.module", torch.nn.Module), ("optimizer", torch.optim.Optimizer)):
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

    device = cfg.device.value if isinstance(cfg.device, Device) else str(cfg.device)
    if device == "cuda" and not torch.cuda.is_available():
        problems.append("device=cuda but this machine has no CUDA GPU: use device=auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        problems.append("device=mps but MPS is not available here: use device=auto or cpu")
    return problems


def resolve_device(device: Device | str) -> torch.device:
    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
