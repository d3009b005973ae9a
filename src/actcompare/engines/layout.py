"""The stacked engine's layout: M = S seeds x V variants of one network as a few stacked tensors.

m = s * V + v (seed-major). First layer, per seed: (S, in, V * H0), the V models' weights side by
side (one wide matmul per seed); later layers (M, in, out); biases (S|M, 1, out). Activations:
one shared module per layer and variant when it has no state, else S modules (one per seed),
whose parameters are trained too. ``owners`` says which model each element of a stacked tensor
belongs to, for optimizers that give each model its own hyperparameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..model import NeuralNetwork


@dataclass
class ActivationSlot:
    """The activation of one layer and variant: ``shared`` (no state: one module for all seeds) or
    ``per_seed`` (S modules with their own parameters or buffers)."""

    shared: nn.Module | None = None
    per_seed: list[nn.Module] = field(default_factory=list)

    def modules(self) -> list[nn.Module]:
        return [self.shared] if self.shared is not None else list(self.per_seed)


def stateful(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def stack_linears(nets: list[NeuralNetwork], S: int, V: int, device: torch.device):
    """The models' linear layers as trainable stacked tensors: (weights, biases), see the module doc."""
    lins = [net.linears() for net in nets]
    layers = len(lins[0])
    with torch.no_grad():
        w0 = torch.stack([torch.cat([lins[s * V + v][0].weight.T for v in range(V)], 1) for s in range(S)])
        b0 = torch.stack([torch.cat([lins[s * V + v][0].bias for v in range(V)]) for s in range(S)])
        ws = [w0] + [torch.stack([lin[i].weight.T for lin in lins]) for i in range(1, layers)]
        bs = [b0] + [torch.stack([lin[i].bias for lin in lins]) for i in range(1, layers)]
    weights = [w.contiguous().to(device).requires_grad_() for w in ws]
    biases = [b.unsqueeze(1).contiguous().to(device).requires_grad_() for b in bs]
    return weights, biases


def stack_activations(nets: list[NeuralNetwork], S: int, V: int):
    """slots[layer][v] (ActivationSlot), the per-seed modules' parameters, and the model owning each."""
    slots: list[list[ActivationSlot]] = []
    params: list[torch.Tensor] = []
    owners: list[torch.Tensor] = []
    for layer in range(len(nets[0].linears()) - 1):
        row = []
        for v in range(V):
            mods = [copy.deepcopy(nets[s * V + v].hidden_layers()[layer][1]) for s in range(S)]
            if not stateful(mods[0]):
                row.append(ActivationSlot(shared=mods[0]))
                continue
            row.append(ActivationSlot(per_seed=mods))
            for s, mod in enumerate(mods):
                own = list(mod.parameters())
                params += own
                owners += [torch.tensor(s * V + v)] * len(own)
        slots.append(row)
    return slots, params, owners


def first_layer_owners(S: int, V: int, width: int) -> torch.Tensor:
    """(S, 1, V * width): the model of each column of the first layer's weight and bias."""
    return torch.arange(S).view(S, 1, 1) * V + torch.arange(V).repeat_interleave(width).view(1, 1, -1)
