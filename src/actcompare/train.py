"""One training epoch and one evaluation pass over tensors already on the device.

The hot loop only slices tensors and runs the model: losses and correct counts are summed on
the device and read back once per epoch (``.item()`` per step would sync the host every step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EpochResult:
    loss: float  # mean cross-entropy per sample (nats)
    accuracy: float  # fraction in [0, 1]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
) -> EpochResult:
    """One pass over (x, y) in shuffled mini-batches; returns the epoch's mean loss and accuracy.

    x: (N, 784) float, y: (N,) long, both on the model's device. Batches are slices of a random
    permutation drawn from ``generator`` (a CPU generator), so the order depends on the seed alone.
    """
    model.train()
    n = y.shape[0]
    # The permutation is drawn on the CPU so the batch order is the same on every device.
    order = torch.randperm(n, generator=generator).to(y.device)
    loss_sum = torch.zeros((), device=y.device)
    predicted = torch.empty(n, dtype=torch.long, device=y.device)  # in `order`'s order
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        # index_select gathers the batch's rows ~3x faster than x[idx] on CPU.
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # two cheap ops per step; nothing is read back until the end
            loss_sum.add_(loss.detach(), alpha=yb.shape[0])
            predicted[start : start + batch_size] = logits.argmax(dim=1)
    correct = (predicted == y.index_select(0, order)).sum()
    return EpochResult(loss=loss_sum.item() / n, accuracy=correct.item() / n)


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits (N, 10) for x, in large batches without autograd bookkeeping."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.inference_mode()
def test(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> EpochResult:
    """Mean loss and accuracy on (x, y)."""
    logits = predict(model, x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    correct = (logits.argmax(dim=1) == y).sum()
    n = y.shape[0]
    return EpochResult(loss=loss.item() / n, accuracy=correct.item() / n)


@torch.inference_mode()
def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int = 10):
    """(classes, classes) int64 counts: row = true label, column = predicted label."""
    return confusion_counts(y, predict(model, x).argmax(dim=1), classes)


def confusion_counts(y: torch.Tensor, pred: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """confusion_matrix from predicted labels already at hand."""
    return torch.bincount(y * classes + pred, minlength=classes * classes).reshape(classes, classes)
