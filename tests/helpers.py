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


class Amplify(nn.Module):
    """x * gain: with a large gain the logits explode, so the run diverges (finite or not)."""

    def __init__(self, gain: float = 1e4) -> None:
        super().__init__()
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class FailsLater(nn.ReLU):
    """ReLU that raises on its ``after``-th call while training: a failure the pre-flight check
    (one call) cannot see, so the stacked engine must fall back to one model at a time."""

    calls = 0

    def __init__(self, after: int = 30) -> None:
        super().__init__()
        self.after = int(after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            FailsLater.calls += 1
            if FailsLater.calls >= self.after:
                raise RuntimeError("fails later")
        return super().forward(x)
