"""StackedOptimizer: per-model hyperparameters in one step, against torch.optim run per model (float64)."""

from __future__ import annotations

import copy

import pytest
import torch

from actcompare.engines import capture
from actcompare.engines.optim import StackedOptimizer

S, V, H = 2, 2, 3  # 2 seeds x 2 variants = 4 models; model m = s * V + v
M = S * V
K = 6  # steps compared


def stacked_params(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The stacked engine's three layouts: (M, in, out) with the model first; (S, in, V * H) with a
    seed's V models side by side in the columns (its first layer); one tensor per model (a PReLU slope)."""
    g = torch.Generator().manual_seed(seed)
    lead = torch.randn(M, 4, H, generator=g, dtype=torch.float64)
    cols = torch.randn(S, 4, V * H, generator=g, dtype=torch.float64)
    own = [torch.randn(H, generator=g, dtype=torch.float64) for _ in range(M)]
    col_owner = torch.arange(S).view(S, 1, 1) * V + torch.arange(V).repeat_interleave(H).view(1, 1, V * H)
    params = [t.requires_grad_() for t in (lead, cols, *own)]
    return params, [None, col_owner, *[torch.tensor(m) for m in range(M)]]


def model_slices(params: list[torch.Tensor], m: int) -> list[torch.Tensor]:
    s, v = divmod(m, V)
    return [params[0][m], params[1][s, :, v * H : (v + 1) * H], params[2 + m]]


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)


def loss_of(w_lead: torch.Tensor, w_col: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """A smooth, non-quadratic loss of one model's three tensors."""
    h = torch.tanh(X @ w_lead) * slope + torch.sin(X @ w_col)
    return (h**2).mean() + 0.1 * h.sum()


def stacked_loss(params: list[torch.Tensor]) -> torch.Tensor:
    return sum(loss_of(*model_slices(params, m)) for m in range(M))


# mixed values in one group: model m gets values[m]
CASES = {
    "adam": (
        torch.optim.Adam,
        {
            "lr": [1e-3, 3e-3, 1e-2, 3e-4],
            "beta1": [0.9, 0.8, 0.95, 0.5],
            "beta2": [0.999, 0.99, 0.9, 0.9999],
            "eps": [1e-8, 1e-6, 1e-3, 1e-8],
            "weight_decay": [0.0, 0.01, 0.1, 0.0],
        },
    ),
    "adamw": (
        torch.optim.AdamW,
        {
            "lr": [1e-3, 3e-3, 1e-2, 3e-4],
            "beta1": [0.9, 0.8, 0.95, 0.5],
            "beta2": [0.999, 0.99, 0.9, 0.9999],
            "eps": [1e-8, 1e-6, 1e-3, 1e-8],
            "weight_decay": [0.0, 0.01, 0.1, 0.5],
        },
    ),
    "sgd": (
        torch.optim.SGD,
        {
            "lr": [0.1, 0.03, 0.3, 0.01],
            "momentum": [0.0, 0.5, 0.9, 0.99],
            "dampening": [0.0, 0.1, 0.0, 0.5],
            "weight_decay": [0.0, 0.01, 0.1, 0.0],
        },
    ),
}


def torch_kwargs(algorithm: str, values: dict[str, list[float]], m: int) -> dict[str, float]:
    kw = {k: v[m] for k, v in values.items()}
    if algorithm in ("adam", "adamw"):
        kw["betas"] = (kw.pop("beta1"), kw.pop("beta2"))
    return kw


def run_stacked(algorithm: str, values: dict, steps: int = K, **options) -> list[torch.Tensor]:
    params, owners = stacked_params()
    opt = StackedOptimizer(params, M, algorithm, owners, **values, **options)
    for _ in range(steps):
        opt.zero_grad()
        stacked_loss(params).backward()
        opt.step()
    return params


def run_per_model(algorithm: str, values: dict, steps: int = K, **options) -> list[list[torch.Tensor]]:
    cls = CASES[algorithm][0]
    params, _ = stacked_params()
    out = []
    for m in range(M):
        own = [t.detach().clone().requires_grad_() for t in model_slices(params, m)]
        opt = cls(own, **torch_kwargs(algorithm, values, m), **options)
        for _ in range(steps):
            opt.zero_grad()
            loss_of(*own).backward()
            opt.step()
        out.append(own)
    return out


def max_gap(stacked: list[torch.Tensor], per_model: list[list[torch.Tensor]]) -> float:
    return max(
        (a - b).abs().max().item()
        for m in range(M)
        for a, b in zip(model_slices(stacked, m), per_model[m], strict=True)
    )


@pytest.mark.parametrize("algorithm", CASES)
def test_each_model_steps_as_torch_optim_with_its_own_values(algorithm: str) -> None:
    values = CASES[algorithm][1]
    stacked, per_model = run_stacked(algorithm, values), run_per_model(algorithm, values)
    assert max_gap(stacked, per_model) <= 1e-10
    start, _ = stacked_params()
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(stacked, start, strict=True))  # it did train


def test_nesterov() -> None:
    values = {"lr": [0.1, 0.03, 0.3, 0.01], "momentum": [0.5, 0.9, 0.8, 0.99], "weight_decay": [0.0, 0.01, 0.1, 0.0]}
    stacked = run_stacked("sgd", values, nesterov=True)
    assert max_gap(stacked, run_per_model("sgd", values, nesterov=True)) <= 1e-10
    with pytest.raises(ValueError, match="Nesterov"):
        run_stacked("sgd", {"momentum": [0.0, 0.9, 0.9, 0.9]}, nesterov=True)


def test_the_comparison_can_fail() -> None:
    """Swapping two models' learning rates moves them: 1e-10 is a real bound."""
    algorithm, values = "adam", copy.deepcopy(CASES["adam"][1])
    per_model = run_per_model(algorithm, values)
    values["lr"][0], values["lr"][1] = values["lr"][1], values["lr"][0]
    assert max_gap(run_stacked(algorithm, values), per_model) > 1e-6


def test_one_value_for_all_models_and_betas() -> None:
    a = run_stacked("adam", {"lr": 0.01, "betas": (0.8, 0.99)})
    b = run_stacked("adam", {"lr": [0.01] * M, "beta1": [0.8] * M, "beta2": [0.99] * M})
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_hyperparameters_change_in_place() -> None:
    """set_hyperparameters writes into the same tensors: a captured CUDA graph would see new values."""
    params, owners = stacked_params()
    opt = StackedOptimizer(params, M, "sgd", owners, lr=0.1)
    expanded = opt._expanded[1]["lr"]
    opt.set_hyperparameters(lr=[0.1, 0.2, 0.3, 0.4])
    assert opt._expanded[1]["lr"] is expanded
    assert expanded.shape == (S, 1, V * H) and expanded[1, 0, -1].item() == 0.4  # model 3 = seed 1, variant 1
    assert opt.per_model()["lr"] == [0.1, 0.2, 0.3, 0.4]


def test_bad_arguments_are_refused() -> None:
    params, owners = stacked_params()
    with pytest.raises(ValueError, match="3 values for 4 models"):
        StackedOptimizer(params, M, "adam", owners, lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no per-model hyperparameter"):
        StackedOptimizer(params, M, "sgd", owners, beta1=0.9)
    with pytest.raises(ValueError, match="outside"):
        StackedOptimizer(params, 2, "adam", owners)
    with pytest.raises(ValueError, match="unknown algorithm"):
        StackedOptimizer(params, M, "lion", owners)


@pytest.mark.parametrize("algorithm", CASES)
def test_warm_up_restores_a_fresh_stacked_optimizer(algorithm: str) -> None:
    """The engine's warm-up and restore (capture.warm_up) works on it: its state comes from _init_group."""
    values = CASES[algorithm][1]
    params, owners = stacked_params()
    opt = StackedOptimizer(params, M, algorithm, owners, **values)

    def step():
        opt.zero_grad()
        stacked_loss(params).backward()
        opt.step()

    capture.warm_up(step, opt)
    assert all(float(s["step"]) == 0 for s in opt.state.values())
    for _ in range(K):
        step()
    assert max_gap(params, run_per_model(algorithm, values)) <= 1e-10


# ---------------------------------------------------------------- in the stacked engine


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


ENGINE_CASES = {
    "adam": (
        torch.optim.Adam,
        {"fused": False},
        [{"lr": 1e-3}, {"lr": 1e-2, "betas": (0.8, 0.99)}, {"lr": 3e-3, "weight_decay": 0.01}],
    ),
    "adamw": (
        torch.optim.AdamW,
        {"weight_decay": 0.05},
        [{"lr": 1e-3}, {"lr": 1e-2, "weight_decay": 0.2}, {"lr": 3e-3, "eps": 1e-4}],
    ),
    "sgd": (
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.9},
        [{}, {"lr": 0.2, "momentum": 0.5}, {"momentum": 0.0, "weight_decay": 0.01}],
    ),
}


@pytest.mark.parametrize("name", ENGINE_CASES)
def test_stacked_engine_trains_each_model_with_its_own_hyperparameters(float64, name: str) -> None:
    """3 variants (relu, relu, prelu: parameters in the activation) x 2 seeds, each variant with its own
    values, against the per-run engine with those values; 200 images: 3 full batches and a partial one."""
    import functools

    from torch import nn

    from actcompare.engines import Recipe, Variant
    from actcompare.engines.single import SingleEngine
    from actcompare.engines.stacked import StackedEngine

    cls, shared, own = ENGINE_CASES[name]
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200,), generator=g)
    x = torch.rand(200, 784, generator=g, dtype=torch.float64) * 0.3
    x[torch.arange(200), y * 70] += 2.0
    acts = [nn.ReLU, nn.ReLU, nn.PReLU]
    variants = [Variant(a, "default", tuple(o.items())) for a, o in zip(acts, own, strict=True)]
    engine = StackedEngine(variants, [0, 1], Recipe((16, 16), functools.partial(cls, **shared), 64), x, y)
    assert engine.per_model_optimizer and isinstance(engine.optimizer, StackedOptimizer)
    singles = [
        SingleEngine(
            Variant(acts[v], "default"),
            seed,
            Recipe((16, 16), functools.partial(cls, **{**shared, **own[v]}), 64),
            x,
            y,
        )
        for seed in (0, 1)
        for v in range(3)
    ]
    for _ in range(2):
        loss, acc = engine.train_epoch()
        for m, single in enumerate(singles):
            (sl,), (sa,) = single.train_epoch()
            assert abs(loss[m] - sl) <= 1e-9 * sl and acc[m] == sa, (m, loss[m], sl)
    for m, single in enumerate(singles):
        for a, b in zip(engine.module(m).state_dict().values(), single.model.state_dict().values(), strict=True):
            assert (a - b).abs().max() <= 1e-9, m


def test_one_set_of_values_keeps_torch_optim(float64) -> None:
    from torch import nn

    from actcompare.engines import Recipe, Variant
    from actcompare.engines.stacked import StackedEngine

    x, y = torch.rand(100, 784), torch.randint(0, 10, (100,))
    same = [Variant(nn.ReLU, "default", (("lr", 0.01),)), Variant(nn.Tanh, "default", (("lr", 0.01),))]
    engine = StackedEngine(same, [0], Recipe((8, 8), lambda p, **kw: torch.optim.Adam(p, lr=0.01, **kw), 64), x, y)
    assert not engine.per_model_optimizer and type(engine.optimizer) is torch.optim.Adam


def test_per_model_keys() -> None:
    from actcompare.engines.optim import per_model_keys

    assert per_model_keys({"_target_": "torch.optim.Adam", "lr": 1e-3, "fused": True}) == (
        "lr",
        "betas",
        "eps",
        "weight_decay",
    )
    assert "momentum" in per_model_keys({"_target_": "torch.optim.SGD", "nesterov": True})
    # an option StackedOptimizer lacks, or another class: only the lr (torch's own step at lr 1)
    assert per_model_keys({"_target_": "torch.optim.Adam", "amsgrad": True}) == ("lr",)
    assert per_model_keys({"_target_": "torch.optim.RMSprop"}) == ("lr",)
    assert per_model_keys({"_target_": "torch.optim.LBFGS"}) == ()


# ---------------------------------------------------------------- an lr per model, any linear-in-lr optimizer

LR_ONLY = {
    "Adam": {"amsgrad": True, "weight_decay": 0.01},
    "AdamW": {"weight_decay": 0.1},
    "SGD": {"momentum": 0.9},
    "RMSprop": {"momentum": 0.5, "centered": True},
    "Adagrad": {"lr_decay": 0.01},
    "Adamax": {},
    "NAdam": {"weight_decay": 0.1, "decoupled_weight_decay": True},
    "RAdam": {"weight_decay": 0.1},
}
LRS = [1e-3, 3e-3, 1e-2, 3e-4]


@pytest.mark.parametrize("name", LR_ONLY)
def test_per_model_lr_is_torch_optim_per_model(name: str) -> None:
    from actcompare.engines.optim import LINEAR_IN_LR, leading_owner, per_model_lr

    assert set(LR_ONLY) == set(LINEAR_IN_LR)
    cls, options = getattr(torch.optim, name), LR_ONLY[name]
    params, owners = stacked_params()
    lrs = torch.tensor(LRS, dtype=torch.float64)
    maps = [lrs[leading_owner(p) if o is None else o] for p, o in zip(params, owners, strict=True)]
    opt = per_model_lr(cls)(params, maps, **options)
    assert isinstance(opt, cls)
    for _ in range(K):
        opt.zero_grad()
        stacked_loss(params).backward()
        opt.step()
    start, _ = stacked_params()
    reference = []
    for m in range(M):
        own = [t.detach().clone().requires_grad_() for t in model_slices(start, m)]
        ref = cls(own, lr=LRS[m], **options)
        for _ in range(K):
            ref.zero_grad()
            loss_of(*own).backward()
            ref.step()
        reference.append(own)
    assert max_gap(params, reference) <= 1e-10
    assert max_gap(start, reference) > 1e-4


@pytest.mark.parametrize("name", ["Adam", "NAdam", "RMSprop", "SGD"])
def test_stacked_engine_with_an_lr_per_model(float64, name: str) -> None:
    import functools

    from torch import nn

    from actcompare.engines import Recipe, Variant
    from actcompare.engines.single import SingleEngine
    from actcompare.engines.stacked import StackedEngine

    cls, options = getattr(torch.optim, name), {"Adam": {"fused": True}, "SGD": {"momentum": 0.9}}.get(name, {})
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200,), generator=g)
    x = torch.rand(200, 784, generator=g, dtype=torch.float64) * 0.3
    x[torch.arange(200), y * 70] += 2.0
    acts, lrs = [nn.ReLU, nn.PReLU, nn.ReLU], [1e-3, 1e-2, 3e-2]
    variants = [Variant(a, "default", (("lr", lr),)) for a, lr in zip(acts, lrs, strict=True)]
    engine = StackedEngine(variants, [0, 1], Recipe((16, 16), functools.partial(cls, lr=0.5, **options), 64), x, y)
    assert type(engine.optimizer).__name__ == f"PerModelLR{name}"
    singles = [
        SingleEngine(
            Variant(acts[v], "default"), seed, Recipe((16, 16), functools.partial(cls, lr=lrs[v], **options), 64), x, y
        )
        for seed in (0, 1)
        for v in range(3)
    ]
    for _ in range(2):
        loss, acc = engine.train_epoch()
        for m, single in enumerate(singles):
            (sl,), (sa,) = single.train_epoch()
            assert abs(loss[m] - sl) <= 1e-9 * sl and acc[m] == sa, (m, loss[m], sl)
