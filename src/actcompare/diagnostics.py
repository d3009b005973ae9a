"""Per-epoch training diagnostics on a fixed probe batch: why an activation wins or fails.

For every Linear layer: the gradient norm of its weight (vanishing/exploding gradients by depth).
For every hidden layer, one question per unit: **does it pass gradient?** A unit has *no gradient*
on a probe image when ``|f'(z)|`` is below ``NO_GRAD_LEVEL`` (0.1 %) of the activation's own
maximum slope ``max |f'|``, whatever the reason: a ReLU-like unit below its kink (exactly 0), a
sigmoid or tanh deep in a flat tail, gelu's far-left tail whether or not float32 has underflowed
it to an exact 0 there. The level sits a factor 10 away from the smallest slope a shipped
activation keeps on purpose (leaky_relu's 0.01, i.e. 1 % of its maximum 1), so leaky_relu's left
side (and prelu's 0.25) passes gradient, and a float rounding of 0.01 can never flip it. Each unit
falls in exactly one of three categories (they sum to 1):

- ``no_grad_all_frac``: no gradient for every probe image (the dying ReLU, and its analogues);
- ``no_grad_frac - no_grad_all_frac``: no gradient for most (more than half), not all, images;
- ``1 - no_grad_frac``: passes gradient for at least half of the images.

Kept beside it, as a breakdown of *where* a unit without gradient sits (and for diagnostics.csv
files written before ``no_grad_frac`` existed): ``inactive_frac`` (off: output exactly 0 with a
zero derivative, for most images), ``dead_frac`` (off for every image) and ``saturated_frac`` (in a
flat tail, where |f'| stays below the same level out to the grid's end, not off, for most images).
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

# |f'| below 0.1 % of the activation's maximum |f'| is "no gradient": a factor 10 below leaky_relu's
# deliberate 1 % slope (which must not sit on the threshold), a factor 10 above float32 noise around 0.
NO_GRAD_LEVEL = 1e-3
SATURATION_LEVEL = NO_GRAD_LEVEL  # a flat tail: no gradient from a point out to the grid's end
MOST = 0.5  # ... for more than half of the probe images
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


def unit_states(act: nn.Module, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(no_grad, off, saturated): boolean (P, units) masks for pre-activations ``z`` and outputs ``a``.

    no_grad: |f'(z)| < NO_GRAD_LEVEL x max |f'|; off and saturated are two places where that holds.
    """
    s = shape(act, z.device)
    d = derivative(act, z)
    no_grad = d.abs() < NO_GRAD_LEVEL * s.d_max
    off = (a == 0) & (d == 0)
    saturated = ((z <= s.low) | (z >= s.high)) & ~off
    return no_grad, off, saturated


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
                no_grad, off, saturated = unit_states(act, z_seen, a)
                rows.append(
                    {
                        "layer": layer,
                        "no_grad_frac": (no_grad.float().mean(dim=0) > MOST).float().mean().item(),
                        "no_grad_all_frac": no_grad.all(dim=0).float().mean().item(),
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
