"""Test-only activations, usable as ``_target_`` (``tests.helpers.<Name>``) when the repo root is
on PYTHONPATH (conftest's run_py puts it there)."""

from __future__ import annotations

import time

import torch
from torch import nn


class Exploding(nn.Module):
    """An activation whose forward always fails: stands in for a user's broken module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


class SlowReLU(nn.ReLU):
    """ReLU that sleeps ``delay`` seconds per forward call, so a run lasts long enough to interrupt."""

    def __init__(self, delay: float = 0.01) -> None:
        super().__init__()
        self.delay = float(delay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(x)
