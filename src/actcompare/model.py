"""The network whose activation is compared: Linear layers with a swappable activation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ActivationFactory = Callable[[], nn.Module]


class NeuralNetwork(nn.Module):
    """784 -> hidden_sizes -> 10 MLP; ``activation()`` is called once per hidden layer.

    With the default ``hidden_sizes=(128, 128)`` this is the tutorial's network: three
    ``nn.Linear`` layers with the activation after the first two. Calling the factory per layer
    gives every layer its own module, so a parametric activation (PReLU) learns per layer.
    """

    def __init__(
        self,
        activation: ActivationFactory,
        hidden_sizes: Sequence[int] = (128, 128),
        in_features: int = 28 * 28,
        num_classes: int = 10,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), activation()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 784) or (B, 28, 28) -> logits (B, 10); flat input skips a no-op module call.
        return self.layers(x if x.dim() == 2 else self.flatten(x))

    def hidden_layers(self) -> list[tuple[nn.Linear, nn.Module]]:
        """(linear, activation) pairs of the hidden layers, input side first."""
        mods = list(self.layers)
        return [(mods[i], mods[i + 1]) for i in range(0, len(mods) - 1, 2)]

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def build_model(activation: ActivationFactory, hidden_sizes: Sequence[int], init: str, seed: int) -> NeuralNetwork:
    """The network a run with ``seed`` starts from, on the CPU: both engines build every model
    through here, so a model trained stacked starts from exactly the weights of a single run."""
    torch.manual_seed(seed)  # weight init; the batch order has its own generator
    return NeuralNetwork(activation=activation, hidden_sizes=hidden_sizes, init=init)


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear: 'default' keeps PyTorch's, 'kaiming' or 'xavier' replace it."""
    if scheme == "default":
        return
    for m in model.modules():
        if not isinstance(m, nn.Linear):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_uniform_(m.weight)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}: use default, kaiming or xavier")
        nn.init.zeros_(m.bias)
