"""The CUDA-graph path's logic on the CPU: warm-up and restore (every optimizer the stacked engine may
graph, and the other elementwise ones), capture's stream handling with torch.cuda stubbed, and the
stacked engine's graphed path with a stub graph (replays + the eager partial last batch)."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import time
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actcompare.engines import Recipe, Variant, stacked
from actcompare.engines import capture as cap
from actcompare.engines.plan import ELEMENTWISE_OPTIMIZERS

# Each elementwise optimizer of experiment.py with options that add state (amsgrad, momentum, centered).
OPTIMIZERS = {
    "Adam": {},
    "Adam-amsgrad": {"amsgrad": True, "weight_decay": 0.01},
    "Adam-fused": {"fused": True},
    "AdamW": {"weight_decay": 0.1},
    "NAdam": {},
    "NAdam-decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True},
    "RAdam": {},
    "RMSprop": {},
    "RMSprop-centered": {"momentum": 0.9, "centered": True},
    "Adamax": {},
    "Adagrad": {"initial_accumulator_value": 0.3},
    "SGD": {"lr": 0.1},
    "SGD-momentum": {"lr": 0.1, "momentum": 0.9},
}


def optimizer_class(name: str) -> type:
    return getattr(torch.optim, name.split("-")[0])


def test_every_elementwise_optimizer_is_covered() -> None:
    assert {f"torch.optim.{name.split('-')[0]}" for name in OPTIMIZERS} == ELEMENTWISE_OPTIMIZERS
    graphable = {n for n in ELEMENTWISE_OPTIMIZERS if "capturable" in inspect.signature(eval(n)).parameters}
    assert graphable == {f"torch.optim.{n}" for n in ("Adam", "AdamW", "NAdam", "RAdam", "RMSprop", "Adamax")}
    assert all(cap.can_restore(eval(n)) for n in ELEMENTWISE_OPTIMIZERS)


class RunningMean(nn.Module):
    """An activation with a buffer that training changes (a user's module with running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.mean.mul_(0.9).add_(x.detach().mean(0), alpha=0.1)
        return torch.tanh(x - self.mean)


def tiny_model(device: str | torch.device = "cpu") -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), RunningMean(), nn.PReLU(), nn.Linear(5, 3)).to(device)


def check_restore(name: str, device: str | torch.device = "cpu", stream=None, steps: int = 4) -> None:
    """warm_up then k steps == k steps of a never-warmed copy, bit for bit; the restored state is a
    fresh optimizer's. On CUDA (stream given) the optimizers are capturable, as the engine makes them."""
    cls, kwargs = optimizer_class(name), dict(OPTIMIZERS[name])
    if stream is not None and "capturable" in inspect.signature(cls).parameters:
        kwargs["capturable"] = True
    warmed = tiny_model(device)
    never = copy.deepcopy(warmed)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=g).to(device), torch.randint(0, 3, (8,), generator=g).to(device)

    def stepper(model, opt):
        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    opt_w, opt_n = cls(warmed.parameters(), **kwargs), cls(never.parameters(), **kwargs)
    step_w, step_n = stepper(warmed, opt_w), stepper(never, opt_n)
    seen = []

    def warming():  # the check below could fail: each warm-up step trains (weights, buffers, state)
        step_w()
        seen.append([t.clone() for t in warmed.state_dict().values()])

    cap.warm_up(warming, opt_w, [warmed], steps=3, stream=stream)
    untouched = never.state_dict().values()
    assert len(seen) == 3
    changed = {k for (k, a), b in zip(warmed.state_dict().items(), seen[-1], strict=True) if not torch.equal(a, b)}
    assert {"2.mean", "1.running_mean", "4.weight"} <= changed  # during warm-up, buffers and weights moved
    if stream is not None:
        torch.cuda.current_stream().wait_stream(stream)
    assert all(torch.equal(a, b) for a, b in zip(warmed.state_dict().values(), untouched, strict=True))
    assert all(p.grad is None for p in warmed.parameters())
    fresh_values = {"mu_product": 1.0, "sum": kwargs.get("initial_accumulator_value", 0.0)}
    for state in opt_w.state.values():  # what every class's lazy initialisation writes
        assert "momentum_buffer" not in state or name == "RMSprop-centered", (name, "SGD creates it at step 1")
        for key, value in state.items():
            assert torch.all(value == fresh_values.get(key, 0.0)), (name, key, value)
    with cap.quiet_uncaptured():
        for _ in range(steps):
            step_w()
            step_n()
    for a, b in zip(warmed.state_dict().values(), never.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for p_w, p_n in zip(warmed.parameters(), never.parameters(), strict=True):
        assert opt_w.state[p_w].keys() == opt_n.state[p_n].keys()
        for key in opt_w.state[p_w]:
            assert torch.equal(torch.as_tensor(opt_w.state[p_w][key]), torch.as_tensor(opt_n.state[p_n][key])), key


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_warm_up_restores_a_fresh_optimizer(name: str) -> None:
    check_restore(name)


def test_init_state_takes_no_step() -> None:
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.NAdam(model.parameters())
    cap.init_state(opt)
    assert all(torch.equal(a, b) for a, b in zip(before.values(), model.state_dict().values(), strict=True))
    state = opt.state[model[0].weight]
    assert float(state["step"]) == 0 and float(state["mu_product"]) == 1 and not state["exp_avg"].any()
    assert all(p.grad is None for p in model.parameters())


def test_an_error_in_warm_up_is_raised_after_the_restore() -> None:
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters())
    calls = []

    def step():
        calls.append(1)
        F.cross_entropy(model(torch.randn(8, 6)), torch.zeros(8, dtype=torch.long)).backward()
        opt.step()
        if len(calls) == 2:
            raise MemoryError("out of memory in warm-up")

    with pytest.raises(MemoryError, match="warm-up"):
        cap.warm_up(step, opt, [model])
    assert all(torch.equal(a, b) for a, b in zip(before.values(), model.state_dict().values(), strict=True))
    assert float(opt.state[model[0].weight]["step"]) == 0


def test_an_optimizer_without_init_group_cannot_be_restored() -> None:
    class Plain(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        def step(self, closure=None):
            for p in self.param_groups[0]["params"]:
                p.data.add_(1.0)

    p = nn.Parameter(torch.zeros(3))
    with pytest.raises(cap.CaptureUnsupported):
        cap.warm_up(lambda: None, Plain([p]))
    assert not cap.can_restore(Plain) and not p.any()


# ---------------------------------------------------------------- capture, with torch.cuda stubbed


class FakeCuda:
    """torch.cuda's stream bookkeeping, with a graph context that fails like torch's can: its
    capture_end raises and the capture stream stays current."""

    def __init__(self, fail: bool) -> None:
        self.stream, self.fail, self.synced = "default", fail, 0
        self.CUDAGraph = lambda: SimpleNamespace(name="graph")

    def current_stream(self):
        return self.stream

    def set_stream(self, stream) -> None:
        self.stream = stream

    def synchronize(self) -> None:
        self.synced += 1

    def graph(self, graph, stream):
        cuda = self

        class Ctx:
            def __enter__(self):
                cuda.stream = stream

            def __exit__(self, *exc):
                if cuda.fail:
                    raise RuntimeError("capture_end: operation failed due to a previous error during capture")
                cuda.stream = "default"

        return Ctx()


def test_a_failed_capture_restores_the_stream_and_synchronises() -> None:
    cuda = FakeCuda(fail=True)

    def step():
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="capture_end") as info:
        cap.capture(step, "side", cuda=cuda)
    assert cuda.stream == "default" and cuda.synced == 1
    assert "not permitted" in cap.describe(cap.first_error(info.value))


def test_a_capture_records_on_the_given_stream() -> None:
    cuda, seen = FakeCuda(fail=False), []
    graph = cap.capture(lambda: seen.append(cuda.current_stream()), "side", cuda=cuda)
    assert graph.name == "graph" and seen == ["side"] and cuda.stream == "default" and cuda.synced == 0


def test_only_the_uncaptured_warning_is_silenced() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cap.quiet_uncaptured():
            warnings.warn(
                "This instance was constructed with capturable=True or some of ... but step() is running "
                "without CUDA graph capture",
                UserWarning,
                stacklevel=1,
            )
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


# ---------------------------------------------------------------- the engine's graphed path, stub graph


class StubGraph:
    """Replays the captured step eagerly, as a CUDA graph would: gradients written, not accumulated."""

    def __init__(self, step) -> None:
        self.step, self.params, self.replays = step, [], 0

    def replay(self) -> None:
        self.replays += 1
        for p in self.params:
            p.grad = None
        self.step()


@pytest.fixture
def stub_graphs(monkeypatch: pytest.MonkeyPatch) -> list[StubGraph]:
    """The stacked engine 'captures' on the CPU: its real warm-up, a stub graph."""
    graphs: list[StubGraph] = []

    def fake_capture(step, stream):
        assert stream is None  # no stream on the CPU
        graphs.append(StubGraph(step))
        return graphs[-1]

    monkeypatch.setattr(stacked, "GRAPH_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(stacked, "capture", fake_capture)
    return graphs


def data(n: int = 500):
    """n = 500 = 7 x 64 + 52: the graphed path replays 7 full batches and steps the last one eagerly."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 784, generator=g) * 0.3
    x[torch.arange(n), y * 70] += 2.0  # learnable: one bright pixel per class
    return x, y


class RunningMean32(RunningMean):
    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.register_buffer("mean", torch.zeros(32))


def engine(optimizer, graph: bool, n: int = 500, acts=(nn.ReLU, nn.PReLU, RunningMean32)):
    x, y = data(n)
    variants = [Variant(a, "default") for a in acts]
    return stacked.StackedEngine(variants, [0, 1], Recipe((32, 32), optimizer, 64), x, y, graph=graph)


@pytest.mark.parametrize("name", ["Adam-fused", "NAdam", "RMSprop-centered"])
def test_graphed_path_equals_eager_path(stub_graphs, name: str) -> None:
    optimizer = functools.partial(optimizer_class(name), **OPTIMIZERS[name])
    graphed, eager = engine(optimizer, graph=True), engine(optimizer, graph=False)
    (graph,) = stub_graphs
    graph.params = graphed.params
    assert graphed._graph is graph and eager._graph is None and graphed.warmup_seconds > 0

    def tensors(e):
        return [*e.params, *(b for m in e._act_modules for b in m.buffers())]

    assert len(tensors(graphed)) > len(graphed.params)
    for a, b in zip(tensors(graphed), tensors(eager), strict=True):
        assert torch.equal(a, b)  # the warm-up's three steps are undone, buffers too
    for _ in range(2):
        assert graphed.train_epoch() == eager.train_epoch()
    assert graph.replays == 2 * 7 and len(stub_graphs) == 1  # captured once, when the engine was built
    assert all(torch.equal(a, b) for a, b in zip(tensors(graphed), tensors(eager), strict=True))
    assert graphed.evaluate(*data(100)) == eager.evaluate(*data(100))


def test_a_failed_capture_trains_eagerly_and_logs_the_first_error(monkeypatch, caplog) -> None:
    def failing_capture(step, stream):
        try:
            raise RuntimeError("operation not permitted when stream is capturing")
        finally:
            raise RuntimeError("capture_end failed")  # as torch.cuda.graph.__exit__ does

    monkeypatch.setattr(stacked, "GRAPH_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(stacked, "capture", failing_capture)
    optimizer = functools.partial(torch.optim.NAdam)
    with caplog.at_level(logging.WARNING, logger=stacked.__name__):
        fallen = engine(optimizer, graph=True)
    assert not fallen.graphed and fallen._graph is None
    (message,) = [r.getMessage() for r in caplog.records]
    assert "capture failed (RuntimeError: operation not permitted" in message
    assert "then RuntimeError: capture_end" in message
    eager = engine(optimizer, graph=False)
    assert fallen.train_epoch() == eager.train_epoch()


class BrokenInTraining(nn.ReLU):
    def forward(self, x):
        if self.training:
            raise RuntimeError("the model's own error")
        return super().forward(x)


def test_a_warm_up_error_is_the_models_error_not_a_capture_failure(stub_graphs, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=stacked.__name__), pytest.raises(RuntimeError, match="own error"):
        engine(torch.optim.Adam, graph=True, acts=(nn.ReLU, BrokenInTraining))
    assert not stub_graphs and "capture" not in caplog.text


def test_too_few_images_for_one_batch_trains_eagerly(stub_graphs) -> None:
    small = engine(torch.optim.Adam, graph=True, n=40)
    assert not small.graphed and not stub_graphs
    loss, acc = small.train_epoch()
    assert len(loss) == 6 and all(0 <= a <= 1 for a in acc)


def test_epoch_seconds_exclude_warm_up_and_capture(stub_graphs, tiny_cfg, tmp_path, monkeypatch) -> None:
    """Capture costs 1000 s on a fake clock: none of it may land in epoch 1's epoch_seconds."""
    import pandas as pd

    from actcompare.experiment import RunSpec, run_group

    offset = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    graphs: list[StubGraph] = []

    def slow_capture(step, stream):
        offset[0] += 1000.0
        graphs.append(StubGraph(step))
        return graphs[-1]

    monkeypatch.setattr(stacked, "capture", slow_capture)
    (record,) = run_group(
        [
            RunSpec(
                tiny_cfg("epochs=2", "data.train_samples=500", "diagnostics=false", "save_model=false"),
                tmp_path / "run",
            )
        ]
    )
    assert record["status"] == "completed" and len(graphs) == 1 and graphs[0].replays == 2 * 7
    assert (pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch_seconds"] < 1000).all()


def test_tests_run_on_the_cpu() -> None:
    """conftest pins every test not marked gpu to the CPU (device=auto, and run.py children)."""
    import os

    from actcompare.engines import resolve_device

    assert not torch.cuda.is_available() and resolve_device("auto").type == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
