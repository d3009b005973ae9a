"""The per-run engine: one NeuralNetwork, trained step by step by ``actcompare.train``."""

from __future__ import annotations

import torch

from ..model import NeuralNetwork, build_model
from ..train import test, train
from . import Recipe, Variant


class SingleEngine:
    name = "single"
    size = 1

    def __init__(
        self,
        variant: Variant,
        seed: int,
        recipe: Recipe,
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> None:
        self.model = build_model(variant.activation, recipe.hidden_sizes, variant.init, seed).to(x.device)
        self.optimizer = recipe.optimizer(self.model.parameters())
        self.generator = torch.Generator().manual_seed(seed)  # the batch order, on the CPU
        self.batch_size, self.x, self.y = recipe.batch_size, x, y

    def train_epoch(self) -> tuple[list[float], list[float]]:
        fit = train(self.model, self.x, self.y, self.optimizer, self.batch_size, self.generator)
        return [fit.loss], [fit.accuracy]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        ev = test(self.model, x, y)
        return [ev.loss], [ev.accuracy]

    def module(self, m: int) -> NeuralNetwork:
        return self.model
