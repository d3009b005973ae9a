"""Activation functions and their derivatives: the one figure that does not depend on the runs.

It is the same for every sweep with the same activation configs, and drawing it costs importing
torch (seconds), so a report takes it from a cache when it can (``activation_shapes``): a file per
set of activation configs under the user's cache folder (``ACTCOMPARE_CACHE_DIR``, else
``$XDG_CACHE_HOME/actcompare``, else ``~/.cache/actcompare``; ``ACTCOMPARE_CACHE_DIR=`` (empty) turns
it off). The key holds the configs, the range, the output format and the versions of this figure,
matplotlib and torch; a config whose code changed under the same ``_target_`` is not noticed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...files import atomic_path
from . import style
from .style import color, grid

CACHE_VERSION = 1  # bump when plot_activation_shapes draws differently


def feature_range(act: Any, pad: float = 2.0, at_least: tuple[float, float] = (-5.0, 5.0)) -> tuple[float, float]:
    """An x range that shows the activation's features: every point where its derivative changes
    noticeably (kinks like relu6's clip at 6, the bends of sigmoid), with ``pad`` on each side."""
    import torch

    from ...diagnostics import derivative

    x = torch.linspace(-30.0, 30.0, 12001)
    d = derivative(act, x).detach()
    change = (d[1:] - d[:-1]).abs()
    big = change > 0.02 * max(change.max().item(), 1e-12)
    if not big.any():
        return at_least
    xs = x[1:][big]
    return (min(at_least[0], xs.min().item() - pad), max(at_least[1], xs.max().item() + pad))


def plot_activation_shapes(
    modules: Mapping[str, Any], path: str | Path, x_range: tuple[float, float] | None = None, pdf: bool = False
) -> Path:
    """One panel per activation: f(x) and f'(x) (autograd), in the activation's colour; returns ``path``.

    ``modules`` maps a name to an activation's module config ({_target_: ..., **kwargs}) or to an
    nn.Module. Each panel covers ``x_range`` when given, else a range that shows its features.
    With ``pdf``, a PDF beside the PNG.
    """
    import torch
    from hydra.utils import instantiate

    from ...diagnostics import derivative

    fig, axes = grid(len(modules), max_cols=4, w=3.3, h=2.6)
    for ax, (name, spec) in zip(axes.flat, modules.items(), strict=False):
        act = spec if isinstance(spec, torch.nn.Module) else instantiate(spec)
        lo, hi = x_range or feature_range(act)
        x = torch.linspace(lo, hi, 501)
        with torch.no_grad():
            y = act(x.clone())
        ax.plot(x.numpy(), y.numpy(), lw=2, color=color(name), label="f(x)")
        ax.plot(x.numpy(), derivative(act, x).detach().numpy(), lw=1.3, ls="--", color="0.3", label="f'(x)")
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_xlim(lo, hi)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    handles, _ = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        ["f(x), in the activation's colour", "f'(x)"],
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Activation functions (solid) and their derivatives (dashed, autograd)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    style.save(fig, path, pdf)
    return path


def cache_dir() -> Path | None:
    """The folder of cached activation figures, or None when caching is off."""
    env = os.environ.get("ACTCOMPARE_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "actcompare"


def _plain(spec: Any) -> Any:
    """A module config as plain JSON-able data (OmegaConf nodes included), or None for an nn.Module."""
    with contextlib.suppress(ImportError):
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(spec, (DictConfig, ListConfig)):
            return OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, Mapping):
        return {str(k): _plain(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_plain(v) for v in spec]
    if spec is None or isinstance(spec, (str, int, float, bool)):
        return spec
    raise TypeError(f"not a config: {type(spec).__name__}")


def cache_key(modules: Mapping[str, Any], x_range: tuple[float, float] | None) -> str | None:
    """A stable key of what the figure shows, or None when it cannot be keyed (an nn.Module given)."""
    from importlib.metadata import PackageNotFoundError, version

    import matplotlib

    try:
        configs = [[str(name), _plain(spec)] for name, spec in modules.items()]
        torch_version = version("torch")
    except (TypeError, PackageNotFoundError):
        return None
    what = [CACHE_VERSION, style.DPI, matplotlib.__version__, torch_version, list(x_range or ()), configs]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def activation_shapes(
    modules: Mapping[str, Any], path: str | Path, pdf: bool = False, x_range: tuple[float, float] | None = None
) -> list[Path]:
    """``plot_activation_shapes`` through the cache: the files written (the PNG, and the PDF with
    ``pdf``), copied from the cache when these activations were drawn before."""
    path = Path(path)
    wanted = [path, path.with_suffix(f".{style.VECTOR}")] if pdf else [path]
    folder, key = cache_dir(), cache_key(modules, x_range)
    cached = [folder / f"activations-{key}{p.suffix}" for p in wanted] if folder and key else []
    if cached and all(c.is_file() for c in cached):
        for src, dst in zip(cached, wanted, strict=True):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        return wanted
    plot_activation_shapes(modules, path, x_range, pdf)
    if not cached:
        return wanted
    with contextlib.suppress(OSError):  # a cache that cannot be written costs the next report a drawing
        cached[0].parent.mkdir(parents=True, exist_ok=True)
        for src, dst in zip(wanted, cached, strict=False):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    return wanted
