"""Per-epoch training diagnostics on a fixed probe batch: why an activation wins or fails.

For every Linear layer: the gradient norm of its weight (vanishing/exploding gradients by depth).
For every hidden layer, two different ways a unit can stop passing gradient, kept apart:

- *inactive*: the unit is **off**, i.e. outputs exactly 0 with a zero derivative (a ReLU-like
  unit below its kink: relu, relu6 and hardswish on their left), for most probe images;
  *dead*: off for every probe image (the dying ReLU);
- *saturated*: the pre-activation lies in a **flat tail** of a bounded or saturating activation
  (the derivative is below 1 % of the activation's maximum derivative there and stays below it
  further out): both tails of sigmoid and tanh, relu6's clip at 6, the negative tails of elu,
  selu, softplus, gelu, silu and mish; for most probe images. An off unit is never counted as
  saturated, and a turning point (gelu's minimum) is not a tail, so an activation without a flat
  tail (relu, leaky_relu, prelu, identity) never has saturated units.

Plus the fraction of exactly-zero activations (sparsity) and the mean and std of the activations.
One forward and backward pass over the probe images, i.e. the cost of a few training steps per
epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .model import NeuralNetwork
from .runs import LAYER_COLUMNS

SATURATION_LEVEL = 0.01  # derivative below 1 % of the activation's maximum derivative ...
MOST = 0.5  # ... or off, for more than half of the probe images
SATURATION_SHARE = MOST  # former name
_GRID = torch.linspace(-20.0, 20.0, 8001)  # where an activation's shape is examined


def derivative(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Elementwise d act(z) / dz via autograd (activations here act elementwise)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():  # the clone: an in-place activation (ReLU(inplace=True)) must not touch z
        (grad,) = torch.autograd.grad(act(z.clone()).sum(), z)
    return grad


def max_derivative(act: nn.Module, device: torch.device | str = "cpu") -> float:
    return derivative(act, _GRID.to(device)).abs().max().item()


@dataclass(frozen=True)
class Shape:
    """Where an activation stops passing gradient, from its derivative on a grid.

    ``low``/``high``: pre-activations at or below ``low`` (at or above ``high``) lie in a flat
    tail (-inf / +inf when that side has none); ``has_off``: somewhere it outputs exactly 0 with a
    zero derivative; ``has_tail``: a tail holds points that are flat but not off (so saturation
    is possible); ``d_max``: its maximum absolute derivative.
    """

    low: float
    high: float
    has_off: bool
    has_tail: bool
    d_max: float


def shape(act: nn.Module, device: torch.device | str = "cpu") -> Shape:
    grid = _GRID.to(device)
    with torch.no_grad():
        y = act(grid.clone())
    d = derivative(act, grid).abs()
    d_max = max(d.max().item(), 1e-12)
    off = (y == 0) & (d == 0)
    flat = d < SATURATION_LEVEL * d_max
    # A tail: flat (or off: gelu underflows to an exact 0 far left) from a point to the grid's end.
    left = torch.cumprod(flat.int(), dim=0).bool()
    right = torch.flip(torch.cumprod(torch.flip(flat.int(), [0]), dim=0), [0]).bool()
    low = grid[left].max().item() if left.any() else -math.inf
    high = grid[right].min().item() if right.any() else math.inf
    has_tail = bool(((left | right) & ~off).any())
    return Shape(low=low, high=high, has_off=bool(off.any()), has_tail=has_tail, d_max=d_max)


def unit_states(act: nn.Module, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(off, saturated): boolean (P, units) masks for pre-activations ``z`` and outputs ``a``."""
    s = shape(act, z.device)
    off = (a == 0) & (derivative(act, z) == 0)
    saturated = ((z <= s.low) | (z >= s.high)) & ~off
    return off, saturated


def probe(model: NeuralNetwork, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """One row per layer (1 = first hidden layer; the last is the output layer).

    x: (P, 784) probe images, y: (P,) labels. Hidden layers get ``layer`` and every key of
    ``runs.LAYER_COLUMNS``; the output layer ``layer`` and ``grad_norm`` only. Leaves no gradients
    behind.
    """
    was_training = model.training
    model.eval()
    rows: list[dict] = []
    h = model.flatten(x)
    with torch.enable_grad():
        model.zero_grad(set_to_none=True)
        for layer, (linear, act) in enumerate(model.hidden_layers(), start=1):
            z = linear(h)
            z_seen = z.detach().clone()  # before an in-place activation overwrites z
            h = act(z)
            with torch.no_grad():
                a = h.detach()
                off, saturated = unit_states(act, z_seen, a)
                rows.append(
                    {
                        "layer": layer,
                        "inactive_frac": (off.float().mean(dim=0) > MOST).float().mean().item(),
                        "dead_frac": off.all(dim=0).float().mean().item(),
                        "saturated_frac": (saturated.float().mean(dim=0) > MOST).float().mean().item(),
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
    return [{"layer": r["layer"], **{k: r[k] for k in LAYER_COLUMNS if k in r}} for r in rows]
