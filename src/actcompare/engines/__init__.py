"""How models train. Two engines, one interface; what lands on disk is the recorder's job.

- ``single``: one ``NeuralNetwork`` trained step by step (``actcompare.train``): any optimizer,
  any activation; what Hydra's basic/joblib/submitit launchers run, one job each.
- ``stacked``: a whole group of models (variants x seeds) in one program: weights stacked along a
  leading dimension, one batched matmul per layer for all of them, one optimizer step over the
  stacked tensors, the whole step replayed from a CUDA graph on a GPU.

Helpers of the stacked engine: ``capture`` (warm-up, restore to a fresh optimizer, CUDA-graph capture,
as plain functions) and ``optim`` (an lr, or lr/betas/eps/weight decay/momentum, per model in one step).

Both build every model through ``model.build_model`` (same initial weights for the same seed) and
draw each seed's batch order from ``torch.Generator().manual_seed(seed)``, so the same run trained
by either engine gives the same numbers up to float32 round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..model import ActivationFactory, NeuralNetwork

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]  # params -> optimizer (a Hydra partial)


@dataclass(frozen=True)
class Recipe:
    """What every model of one engine shares: its shapes, its optimizer (class and shared values) and
    its batch size. Anything here that differs between jobs puts them in different groups (plan.py)."""

    hidden_sizes: tuple[int, ...]  # widths of the hidden layers, e.g. (128, 128)
    optimizer: OptimizerFactory  # params -> optimizer, e.g. functools.partial(torch.optim.Adam, lr=1e-3)
    batch_size: int  # images per step


@dataclass(frozen=True)
class Variant:
    """What distinguishes models of one stacked group besides their seed."""

    activation: ActivationFactory  # a fresh module per call (one per layer and model)
    init: str  # model.init: default | kaiming | xavier
    # Optimizer values of this variant's models that may differ inside the group (optim.per_model_keys:
    # lr, betas, eps, weight_decay, momentum, dampening), as (key, value) pairs; () = the factory's own.
    optimizer: tuple[tuple[str, Any], ...] = ()


class Engine(Protocol):
    name: str  # recorded in run.json "engine"
    size: int  # number of models M; model m = (seed index m // V, variant m % V)

    def train_epoch(self) -> tuple[list[float], list[float]]:
        """One epoch for every model; per model: mean cross-entropy (nats), accuracy in [0, 1]."""
        ...

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per model: mean loss and accuracy on (x, y), in eval mode, without gradients."""
        ...

    def module(self, m: int) -> NeuralNetwork:
        """Model m's current weights as a standalone NeuralNetwork (diagnostics, model.pt)."""
        ...


def resolve_device(device: Any) -> torch.device:
    """The torch device that the ``device`` key (schema.Device or its name) names: auto is cuda when
    this machine has a CUDA GPU, else cpu."""
    name = str(getattr(device, "value", device))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def make_engine(
    kind: str,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    recipe: Recipe,
    x: torch.Tensor,
    y: torch.Tensor,
) -> Engine:
    """Build the engine ``kind`` ("single" or "stacked") for len(seeds) x len(variants) models."""
    if kind == "single":
        from .single import SingleEngine

        if len(variants) * len(seeds) != 1:
            raise ValueError("the single engine trains one model: use engine 'stacked' for a group")
        return SingleEngine(variants[0], seeds[0], recipe, x, y)
    if kind == "stacked":
        from .stacked import StackedEngine

        return StackedEngine(variants, seeds, recipe, x, y)
    raise ValueError(f"unknown engine {kind!r}: use single or stacked")
