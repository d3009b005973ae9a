"""Plot activation functions and their derivatives (computed with autograd) on one figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from .diagnostics import derivative


def plot_activation_shapes(
    modules: Mapping[str, Any], path: str | Path, x_range: tuple[float, float] = (-5.0, 5.0)
) -> Path:
    """One panel per activation: f(x) and f'(x) on ``x_range``.

    ``modules`` maps a name to an activation's module config ({_target_: ..., **kwargs}) or to
    an nn.Module instance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _save

    x = torch.linspace(*x_range, 1001)
    cols = min(4, len(modules))
    rows = math.ceil(len(modules) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), layout="constrained",
                             squeeze=False, sharex=True)  # fmt: skip
    for ax in axes.flat[len(modules):]:
        ax.axis("off")
    for ax, (name, spec) in zip(axes.flat, modules.items(), strict=False):
        act = spec if isinstance(spec, torch.nn.Module) else instantiate(spec)
        with torch.no_grad():
            y = act(x)
        ax.plot(x, y, lw=2, label="f(x)")
        ax.plot(x, derivative(act, x).detach(), lw=1.5, ls="--", label="f'(x)")
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Activation functions (solid) and their derivatives (dashed, autograd)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path
