"""Warm-up, restore and capture of a training step as a CUDA graph, as plain functions.

A CUDA graph replays the kernels of one recorded step on the same memory, so before capture the
step must have run a few times on a side stream (``torch.cuda.graph``'s recipe: lazy CUDA and
autograd initialisation) and the optimizer's state must already exist (capture records kernels;
it runs nothing, and state created during capture would be re-created by every replay). Those
warm-up steps train: :func:`warm_up` puts everything back afterwards, so the first real step starts
from the weights, module buffers and optimizer state of a model that was never warmed up.

"Back" is a *fresh* optimizer's state, whatever its class (NAdam starts ``mu_product`` at 1, Adagrad
its sums at ``initial_accumulator_value``, SGD with momentum has no buffer yet): :func:`init_state`
lets the optimizer's own lazy initialisation (``_init_group``, which every ``torch.optim``
optimizer has) create it and stops the step before any update. The tensors keep their identity:
the graph captures their addresses.

Everything here but :func:`capture` runs on the CPU too (then without a stream), which is how the
tests check it for every optimizer class that the stacked engine may capture.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

# PyTorch warns once per optimizer when a capturable=True optimizer steps outside a capture. The
# engine knows which of its steps run uncaptured (warm-up, the partial last batch, an eager
# fallback); only that message is silenced, only around them.
UNCAPTURED_WARNING = r"This instance was constructed with capturable=True"


class CaptureUnsupported(RuntimeError):
    """The optimizer's fresh state cannot be determined: train eagerly instead."""


class _StateReady(Exception):
    """Raised inside optimizer.step() once the state exists, to skip the update."""


@contextlib.contextmanager
def quiet_uncaptured() -> Iterator[None]:
    """Silence PyTorch's 'capturable=True but running without graph capture' warning (only that one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNCAPTURED_WARNING, category=UserWarning)
        yield


def can_restore(optimizer_class: type) -> bool:
    """Whether :func:`init_state` can create this class's fresh state (torch.optim's optimizers can)."""
    return callable(getattr(optimizer_class, "_init_group", None))


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def init_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the state of every parameter that has none, exactly as the optimizer's first step would,
    without taking that step: parameters and any existing state stay as they are."""
    if not can_restore(type(optimizer)):
        raise CaptureUnsupported(f"{type(optimizer).__name__} has no _init_group: its fresh state is unknown")
    params = _params(optimizer)
    if all(optimizer.state.get(p) for p in params):
        return
    gradless = [p for p in params if p.grad is None]
    for p in gradless:  # _init_group only looks at parameters with a gradient
        p.grad = torch.zeros_like(p)
    own = optimizer._init_group  # bound method of the class

    def init_every_group(group: dict, *lists: Any, **kwargs: Any) -> Any:
        for g in optimizer.param_groups:  # step() would reach the next group only after an update
            own(g, *([] if isinstance(a, list) else a for a in lists), **kwargs)
        raise _StateReady

    optimizer._init_group = init_every_group  # type: ignore[method-assign]
    try:
        with quiet_uncaptured():
            optimizer.step()
    except _StateReady:
        pass
    else:
        raise CaptureUnsupported(
            f"{type(optimizer).__name__}.step() does not create its state through "
            "_init_group: its fresh state is unknown"
        )
    finally:
        del optimizer._init_group
        for p in gradless:
            p.grad = None


def _clone(value: Any) -> Any:
    return value.detach().clone() if torch.is_tensor(value) else copy.deepcopy(value)


def snapshot_state(optimizer: torch.optim.Optimizer) -> dict[torch.Tensor, dict[str, Any]]:
    """A copy of the optimizer's per-parameter state (keyed by parameter)."""
    return {p: {k: _clone(v) for k, v in state.items()} for p, state in optimizer.state.items()}


@torch.no_grad()
def restore_state(optimizer: torch.optim.Optimizer, saved: dict[torch.Tensor, dict[str, Any]]) -> None:
    """Put the optimizer's state back to ``saved``, in place: a tensor of the same shape, dtype and
    device is overwritten (a captured graph keeps pointing at it), keys that appeared since are
    removed (SGD's momentum buffer), parameters that had no state lose theirs."""
    for p in list(optimizer.state):
        if p not in saved:
            del optimizer.state[p]
    for p, values in saved.items():
        state = optimizer.state[p]
        for key in [k for k in state if k not in values]:
            del state[key]
        for key, value in values.items():
            now = state.get(key)
            if (
                torch.is_tensor(value)
                and torch.is_tensor(now)
                and (now.shape, now.dtype, now.device) == (value.shape, value.dtype, value.device)
            ):
                now.copy_(value)
            else:
                state[key] = _clone(value)


def warm_up(
    step: Callable[[], object],
    optimizer: torch.optim.Optimizer,
    modules: Iterable[nn.Module] = (),
    steps: int = 3,
    stream: torch.cuda.Stream | None = None,
) -> None:
    """Run ``step()`` ``steps`` times, then put back what it changed.

    Before the steps, every parameter without optimizer state gets a fresh one (:func:`init_state`),
    which is what the steps and a later capture use. Afterwards the optimizer's parameters (and their
    gradients), the buffers of ``modules`` and the optimizer's state are what they were before, with
    a fresh optimizer's state where there was none: k steps from here equal k steps of a copy that
    was never warmed up. Everything runs on ``stream`` when one is given (the capture must then use
    the same stream). An error in ``step`` is raised as it is, after the restore.
    """
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        params = _params(optimizer)
        with torch.no_grad():
            weights = [p.detach().clone() for p in params]
            grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
            buffers = [(m, {n: b.detach().clone() for n, b in m.named_buffers()}) for m in modules]
        saved = snapshot_state(optimizer)
        try:
            init_state(optimizer)
            saved = snapshot_state(optimizer)
            with quiet_uncaptured():
                for _ in range(steps):
                    step()
        finally:
            _put_back(params, weights, grads, buffers)
            restore_state(optimizer, saved)


@torch.no_grad()
def _put_back(
    params: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    buffers: Sequence[tuple[nn.Module, dict[str, torch.Tensor]]],
) -> None:
    for p, w, g in zip(params, weights, grads, strict=True):
        p.copy_(w)
        if g is None:
            p.grad = None
        elif p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)
    for module, saved in buffers:
        for name, buf in module.named_buffers():
            if name in saved:
                buf.copy_(saved[name])


def capture(step: Callable[[], object], stream: torch.cuda.Stream, cuda: Any = None) -> torch.cuda.CUDAGraph:
    """Record ``step()`` as a CUDA graph on ``stream`` (the stream its warm-up ran on).

    When capture fails, ``torch.cuda.graph.__exit__`` can leave the capture stream current (its
    ``capture_end`` raises before the stream context exits): the stream that was current before is
    made current again and the device synchronised, then the error is raised. ``cuda`` replaces the
    ``torch.cuda`` module (for tests).
    """
    cuda = torch.cuda if cuda is None else cuda
    before = cuda.current_stream()
    graph = cuda.CUDAGraph()
    try:
        with cuda.graph(graph, stream=stream):
            step()
    except BaseException:
        cuda.set_stream(before)
        with contextlib.suppress(Exception):  # a broken capture can leave an error for the next sync
            cuda.synchronize()
        raise
    return graph


def first_error(err: BaseException) -> BaseException:
    """The error that started a chain (a failed capture raises again in its __exit__): the one to report."""
    seen = {id(err)}
    while True:
        earlier = err.__cause__ or err.__context__
        if earlier is None or id(earlier) in seen:
            return err
        seen.add(id(earlier))
        err = earlier


def describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
