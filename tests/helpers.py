"""Test-only activations, usable as ``_target_`` (``tests.helpers.<Name>``) when the repo root is
on PYTHONPATH (conftest's run_py puts it there)."""

from __future__ import annotations

import os
import signal
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


KILL_MARKER = "ACTCOMPARE_TEST_KILL_MARKER"  # env: the file whose absence arms Killer


class Killer(nn.Module):
    """ReLU that SIGKILLs its own process on a training batch of exactly ``rows`` rows, once: the first
    time it does, it creates the file named by $ACTCOMPARE_TEST_KILL_MARKER; while that file exists
    it is a plain ReLU (so a resumed sweep trains through). A task killed from outside, mid-epoch."""

    def __init__(self, rows: int = 32) -> None:
        super().__init__()
        self.rows = int(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = os.environ.get(KILL_MARKER)
        if self.training and x.shape[0] == self.rows and marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.relu(x)
