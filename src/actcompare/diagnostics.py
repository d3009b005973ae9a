"""Per-epoch training diagnostics on a fixed probe batch: why an activation wins or fails.

For every Linear layer: the gradient norm of its weight (vanishing/exploding gradients by
depth). For every hidden layer: dead units (zero output for every probe image: dying ReLU),
saturated units (activation derivative below 1 % of its maximum for most probe images:
sigmoid/tanh saturation), the fraction of exactly-zero activations (sparsity), and the mean and
std of the activations. One forward and backward pass over ``probe`` images, i.e. the cost of a
few training steps per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import NeuralNetwork

SATURATION_LEVEL = 0.01  # derivative below 1 % of the activation's maximum derivative
SATURATION_SHARE = 0.5  # ... for more than half of the probe images
_GRID = torch.linspace(-10.0, 10.0, 4001)  # where the maximum derivative is looked for


def derivative(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Elementwise d act(z) / dz via autograd (activations here act elementwise)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(act(z).sum(), z)
    return grad


def max_derivative(act: nn.Module, device: torch.device) -> float:
    return derivative(act, _GRID.to(device)).abs().max().item()


def probe(model: NeuralNetwork, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """One row per layer (1 = first hidden layer; the last is the output layer).

    x: (P, 784) probe images, y: (P,) labels. Leaves no gradients behind.
    """
    was_training = model.training
    model.eval()
    rows: list[dict] = []
    h = model.flatten(x)
    with torch.enable_grad():
        model.zero_grad(set_to_none=True)
        for layer, (linear, act) in enumerate(model.hidden_layers(), start=1):
            z = linear(h)
            h = act(z)
            with torch.no_grad():
                a = h.detach()
                d = derivative(act, z).abs()
                d_max = max(max_derivative(act, z.device), 1e-12)
                saturated = (d < SATURATION_LEVEL * d_max).float().mean(dim=0) > SATURATION_SHARE
                rows.append(
                    {
                        "layer": layer,
                        "dead_frac": (a == 0).all(dim=0).float().mean().item(),
                        "saturated_frac": saturated.float().mean().item(),
                        "zero_frac": (a == 0).float().mean().item(),
                        "act_mean": a.mean().item(),
                        "act_std": a.std().item(),
                    }
                )
        logits = model.layers[-1](h)
        F.cross_entropy(logits, y).backward()
    rows.append({"layer": len(rows) + 1})  # the output layer: gradient norm only
    for row, linear in zip(rows, model.linears(), strict=True):
        row["grad_norm"] = linear.weight.grad.norm().item()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return rows
