"""One optimizer step for a stacked group whose models each have their own hyperparameters.

``torch.optim`` takes one learning rate (betas, weight decay, ...) per parameter group, and a stacked
tensor holds many models. Here each hyperparameter is a vector of M values, one per model, and each
parameter tensor has an *owner* map: a long tensor, broadcastable to the parameter, that names the
model of every element. The values a parameter's update uses are ``values[owner]``: for a (M, in, out)
weight, owner ``arange(M).view(M, 1, 1)`` gives (M, 1, 1) tensors; for the stacked engine's first
layer, (S, in, V * H) with the V models of a seed side by side, an (S, 1, V * H) map; for a tensor
that belongs to one model (a PReLU slope), a 0-dim owner.

The update is torch.optim's (Adam with L2 or decoupled weight decay as in AdamW, SGD with momentum,
dampening and Nesterov), written with tensor hyperparameters and a tensor step count: no value is
read back to the host, so a CUDA graph can capture it (``capturable`` is accepted and always true).
The expanded hyperparameters are updated in place by :meth:`StackedOptimizer.set_hyperparameters`,
so a captured graph sees new values (a schedule) without a new capture. Each model's update equals
``torch.optim``'s on that model alone (tested in float64 to 1e-10).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

Values = float | Sequence[float] | torch.Tensor

# algorithm -> its per-model hyperparameters and their defaults (torch.optim's)
HYPERPARAMETERS: dict[str, dict[str, float]] = {
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
}


# Optimizer configs (Hydra's _target_) whose models may differ in these keys inside one stacked group.
PER_MODEL_KEYS = {
    "torch.optim.Adam": ("lr", "betas", "eps", "weight_decay"),
    "torch.optim.AdamW": ("lr", "betas", "eps", "weight_decay"),
    "torch.optim.SGD": ("lr", "momentum", "dampening", "weight_decay"),
}
# Options of those classes that this step does not implement: set (true), nothing may differ.
UNSUPPORTED = ("amsgrad", "maximize", "differentiable")


# Optimizers whose update is linear in lr (p <- p - lr * D, D independent of lr; decoupled weight decay
# p * (1 - lr * wd) too): a per-model lr alone runs torch's own step at lr 1 (per_model_lr).
LINEAR_IN_LR = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam")


def per_model_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of an optimizer config (``_target_`` plus keywords) that may differ between the models
    of one stacked group: lr for every optimizer in LINEAR_IN_LR (:func:`per_model_lr`); for Adam,
    AdamW and SGD also betas, eps, weight_decay, momentum, dampening (:class:`StackedOptimizer`)."""
    target = str(config.get("_target_"))
    if not any(config.get(option) for option in UNSUPPORTED) and target in PER_MODEL_KEYS:
        return PER_MODEL_KEYS[target]
    return ("lr",) if target in {f"torch.optim.{name}" for name in LINEAR_IN_LR} else ()


@functools.cache
def per_model_lr(cls: type) -> type:
    """``cls`` (a torch.optim optimizer in LINEAR_IN_LR) with a learning rate per element: its own step
    runs at lr 1, then each element moves by its model's share, p <- p_old + lr * (p - p_old).

    Every other option is torch's (fused, foreach, capturable, amsgrad, ...), so are the state and its
    lazy initialisation (capture.warm_up works unchanged). Constructed as
    ``per_model_lr(cls)(params, lr_maps, **options)``, lr_maps: one tensor per parameter, broadcastable to it.
    """
    if cls.__name__ not in LINEAR_IN_LR or getattr(torch.optim, cls.__name__, None) is not cls:
        raise ValueError(f"{cls.__name__}: its update is not known to be linear in lr")

    class PerModelLR(cls):  # type: ignore[valid-type, misc]
        def __init__(self, params: Iterable[torch.Tensor], lr_maps: Sequence[torch.Tensor], **options: Any) -> None:
            params = list(params)
            super().__init__(params, lr=1.0, **options)
            if len(lr_maps) != len(params):
                raise ValueError(f"{len(lr_maps)} lr maps for {len(params)} parameters")
            self.lr_maps = {p: m.to(p) for p, m in zip(params, lr_maps, strict=True)}

        def step(self, closure=None):
            with torch.no_grad():
                before = {p: p.detach().clone() for p in self.lr_maps}
            loss = super().step(closure)
            with torch.no_grad():
                for p, old in before.items():
                    torch.lerp(old, p, self.lr_maps[p], out=p)
            return loss

    PerModelLR.__name__ = PerModelLR.__qualname__ = f"PerModelLR{cls.__name__}"
    return PerModelLR


def algorithm_of(cls: type, options: Mapping[str, Any]) -> str | None:
    """ "adam", "adamw" or "sgd" for a torch.optim class and its options; None if this step cannot run it."""
    if any(options.get(option) for option in UNSUPPORTED):
        return None
    if cls is torch.optim.AdamW or (cls is torch.optim.Adam and options.get("decoupled_weight_decay")):
        return "adamw"
    return {torch.optim.Adam: "adam", torch.optim.SGD: "sgd"}.get(cls)


def per_model_values(
    algorithm: str, shared: Mapping[str, Any], models: Sequence[Mapping[str, Any]]
) -> dict[str, list[float]]:
    """M values of each hyperparameter: a model's own value, else the shared one, else torch's default."""
    out: dict[str, list[float]] = {name: [] for name in HYPERPARAMETERS[algorithm]}
    for own in models:
        merged = {**shared, **own}
        if "betas" in merged:
            merged["beta1"], merged["beta2"] = merged.pop("betas")
        for name, default in HYPERPARAMETERS[algorithm].items():
            out[name].append(float(merged.get(name, default)))
    return out


def leading_owner(p: torch.Tensor) -> torch.Tensor:
    """Owner map of a tensor whose leading dimension is the model: (M, 1, ..., 1)."""
    return torch.arange(p.shape[0], device=p.device).view(-1, *[1] * (p.dim() - 1))


class StackedOptimizer(torch.optim.Optimizer):
    """Adam / AdamW / SGD over stacked parameters, with per-model hyperparameters.

    params: the stacked tensors; owners: one long tensor per parameter (None: leading dimension =
    model); models: M; algorithm: "adam", "adamw" or "sgd"; hyperparameters: a float (all models) or
    M values each, named as in HYPERPARAMETERS ("betas" also accepted as a pair of either).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        models: int,
        algorithm: str = "adam",
        owners: Sequence[torch.Tensor | None] | None = None,
        nesterov: bool = False,
        capturable: bool = True,
        foreach: bool | None = None,  # accepted for signature compatibility: the update is per tensor
        fused: bool | None = None,
        **hyperparameters: Values | Sequence[Values],
    ) -> None:
        if algorithm not in HYPERPARAMETERS:
            raise ValueError(f"unknown algorithm {algorithm!r}: use one of {sorted(HYPERPARAMETERS)}")
        params = list(params)
        if not params:
            raise ValueError("StackedOptimizer got no parameters")
        if "betas" in hyperparameters:
            hyperparameters["beta1"], hyperparameters["beta2"] = hyperparameters.pop("betas")
        unknown = set(hyperparameters) - set(HYPERPARAMETERS[algorithm])
        if unknown:
            raise ValueError(
                f"{algorithm} has no per-model hyperparameter {sorted(unknown)}: "
                f"use {sorted(HYPERPARAMETERS[algorithm])}"
            )
        super().__init__(
            params, {"algorithm": algorithm, "nesterov": nesterov, "capturable": True, "differentiable": False}
        )
        self.models, self.algorithm = int(models), algorithm
        owners = list(owners) if owners is not None else [None] * len(params)
        if len(owners) != len(params):
            raise ValueError(f"{len(owners)} owner maps for {len(params)} parameters")
        self._owners = [leading_owner(p) if o is None else o.to(p.device) for p, o in zip(params, owners, strict=True)]
        for p, owner in zip(params, self._owners, strict=True):
            torch.broadcast_shapes(owner.shape, p.shape)  # raises when the map does not fit
            if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= self.models):
                raise ValueError(f"an owner map names a model outside 0..{self.models - 1}")
        self.hyperparameters: dict[str, torch.Tensor] = {}
        self._expanded: list[dict[str, torch.Tensor]] = [{} for _ in params]
        self.set_hyperparameters(**{**HYPERPARAMETERS[algorithm], **hyperparameters})
        if (
            nesterov
            and algorithm == "sgd"
            and (bool((self.hyperparameters["momentum"] <= 0).any()) or bool(self.hyperparameters["dampening"].any()))
        ):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening for every model")

    # ------------------------------------------------------------ hyperparameters
    def set_hyperparameters(self, **values: Values) -> None:
        """Set per-model values (a float for all models, or M values); in place, so a captured graph sees them."""
        params = [p for g in self.param_groups for p in g["params"]]
        for name, value in values.items():
            if name not in HYPERPARAMETERS[self.algorithm]:
                raise ValueError(f"{self.algorithm} has no per-model hyperparameter {name!r}")
            ref = params[0]
            vec = torch.as_tensor(value, dtype=ref.dtype).to(ref.device).flatten()
            if vec.numel() == 1:
                vec = vec.expand(self.models)
            if vec.numel() != self.models:
                raise ValueError(f"{name}: {vec.numel()} values for {self.models} models")
            if name in self.hyperparameters:
                self.hyperparameters[name].copy_(vec)
            else:
                self.hyperparameters[name] = vec.clone()
            for i, (p, owner) in enumerate(zip(params, self._owners, strict=True)):
                expanded = self.hyperparameters[name].to(p.dtype)[owner]
                if name in self._expanded[i]:
                    self._expanded[i][name].copy_(expanded)
                else:
                    self._expanded[i][name] = expanded

    def per_model(self) -> dict[str, list[float]]:
        """The hyperparameters as plain lists (reads them back to the host)."""
        return {k: v.tolist() for k, v in self.hyperparameters.items()}

    # ------------------------------------------------------------ the step
    def _init_group(self, group: Mapping, params: list, grads: list, states: list) -> None:
        """Lazy state initialisation (also what capture.init_state calls to allocate a fresh state)."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("StackedOptimizer does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=p.dtype, device=p.device)
                if self.algorithm == "sgd":
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            states.append(state)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            states: list[dict] = []
            self._init_group(group, params, grads, states)
            for p, grad, state in zip(params, grads, states, strict=True):
                hp = self._expanded[index[p]]
                state["step"].add_(1)
                if self.algorithm == "sgd":
                    _sgd(p, grad, state, hp, group["nesterov"])
                else:
                    _adam(p, grad, state, hp, decoupled=self.algorithm == "adamw")
        return loss


def _adam(p: torch.Tensor, grad: torch.Tensor, state: dict, hp: dict[str, torch.Tensor], decoupled: bool) -> None:
    # In place where it can be: two temporaries of the parameter's size (a stacked first layer is large).
    lr, beta1, beta2, eps, wd = hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"]
    step = state["step"]
    if decoupled:  # AdamW: p <- p * (1 - lr * wd)
        p.mul_(1 - lr * wd)
    else:  # Adam's L2 penalty: the gradient gets wd * p
        grad = torch.addcmul(grad, p, wd)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad * (1 - beta2), grad)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step).sqrt()
    update = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(eps)  # the denominator, then the update
    torch.div(exp_avg, update, out=update)
    p.addcmul_(update, -lr / bias_correction1)


def _sgd(p: torch.Tensor, grad: torch.Tensor, state: dict, hp: dict[str, torch.Tensor], nesterov: bool) -> None:
    lr, momentum, dampening, wd = hp["lr"], hp["momentum"], hp["dampening"], hp["weight_decay"]
    grad = torch.addcmul(grad, p, wd)
    buf = state["momentum_buffer"]
    # torch.optim.SGD: the first step sets buf = grad; later ones buf = momentum * buf + (1 - dampening) * grad;
    # a model with momentum 0 uses its gradient as it is (then buf = grad every step).
    first = state["step"] == 1
    buf.mul_(torch.where(first, torch.zeros_like(momentum), momentum))
    buf.addcmul_(grad, torch.where(first | (momentum == 0), torch.ones_like(dampening), 1 - dampening))
    p.addcmul_(torch.addcmul(grad, buf, momentum) if nesterov else buf, -lr)
