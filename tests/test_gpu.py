"""The stacked engine's CUDA-graph path on a real GPU (marked ``gpu``; skipped without CUDA).

Run by ``benchmarks/gpu_acceptance.py`` (item g) or ``pytest -m gpu``. The training data always
leaves a partial last batch (500 = 7 x 64 + 52), so every epoch mixes replays and an eager step.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from actcompare.data import load_mnist
from actcompare.engines import Recipe, Variant, capture, stacked

from .test_capture import OPTIMIZERS, RunningMean32, check_restore, optimizer_class

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)"),
]
N_TRAIN, BATCH = 500, 64
GRAPHABLE = ["Adam", "Adam-fused", "AdamW", "NAdam", "NAdam-decoupled", "RAdam", "RMSprop-centered", "Adamax"]


@pytest.fixture(scope="module")
def cuda_data(tiny_mnist: str):
    data = load_mnist(tiny_mnist, "cuda", False, N_TRAIN, None, False)
    assert len(data.train) % BATCH, "the tests need a partial last batch"
    return data


def build(data, optimizer, graph: bool = True, acts=(nn.ReLU, nn.PReLU, RunningMean32), seeds=(0, 1)):
    variants = [Variant(a, "default") for a in acts]
    return stacked.StackedEngine(
        variants, list(seeds), Recipe((32, 32), optimizer, BATCH), data.train.x, data.train.y, graph=graph
    )


def close(a: list[float], b: list[float], rel: float) -> bool:
    return all(abs(x - y) <= rel * max(abs(y), 1e-12) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", GRAPHABLE)
def test_restore_is_exact_on_cuda(name: str) -> None:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    check_restore(name, "cuda", stream=stream)


@pytest.mark.parametrize("name", GRAPHABLE)
def test_graph_equals_eager_on_the_same_data_with_a_partial_last_batch(cuda_data, name: str) -> None:
    """Same kernels (both capturable), same batches: 7 replays + the eager partial batch (52 images,
    on the graph's own gradient tensors) = 8 eager steps, for 2 epochs."""
    optimizer = functools.partial(optimizer_class(name), **OPTIMIZERS[name])
    graphed, eager = build(cuda_data, optimizer), build(cuda_data, optimizer, graph=False)
    assert graphed._graph is not None and eager._graph is None
    for _ in range(2):
        (gl, ga), (el, ea) = graphed.train_epoch(), eager.train_epoch()
        assert close(gl, el, 1e-5) and close(ga, ea, 1e-9), (gl, el)
    for a, b in zip(graphed.params, eager.params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    test_g, test_e = (
        graphed.evaluate(cuda_data.test.x, cuda_data.test.y),
        eager.evaluate(cuda_data.test.x, cuda_data.test.y),
    )
    assert close(test_g[0], test_e[0], 1e-5)


class SyncsWhileCapturing(nn.ReLU):
    """Reads a value back to the host: fine eagerly, forbidden while a CUDA graph is captured."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.cuda.is_current_stream_capturing():
            float(x.sum())
        return super().forward(x)


def test_capture_failure_falls_back_on_the_right_stream(cuda_data, caplog) -> None:
    default = torch.cuda.current_stream()
    with caplog.at_level(logging.WARNING, logger=stacked.__name__):
        fallen = build(cuda_data, torch.optim.NAdam, acts=(SyncsWhileCapturing,))
    assert fallen._graph is None and not fallen.graphed
    assert torch.cuda.current_stream() == default
    assert "CUDA graph capture failed" in caplog.text
    eager = build(cuda_data, torch.optim.NAdam, graph=False, acts=(SyncsWhileCapturing,))
    for _ in range(2):
        (fl, _), (el, _) = fallen.train_epoch(), eager.train_epoch()
        assert close(fl, el, 1e-5)


def test_nadam_graphed_matches_single_models(cuda_data) -> None:
    """The bug this guards: warm-up undone to zeros set NAdam's mu_product to 0 (fresh: 1)."""
    graphed = build(cuda_data, torch.optim.NAdam, acts=(nn.ReLU,), seeds=(0, 1))
    assert graphed._graph is not None
    for p in graphed.optimizer.state.values():
        assert float(p["mu_product"]) == 1.0 and float(p["step"]) == 0.0
    single = [build(cuda_data, torch.optim.NAdam, graph=False, acts=(nn.ReLU,), seeds=(s,)) for s in (0, 1)]
    for _ in range(2):
        loss, _ = graphed.train_epoch()
        assert close(loss, [e.train_epoch()[0][0] for e in single], 1e-4)


def test_no_capturable_warning_for_the_known_uncaptured_steps(cuda_data) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = build(cuda_data, torch.optim.Adam)
        engine.train_epoch()
        build(cuda_data, torch.optim.Adam, graph=False).train_epoch()
    assert not [w for w in caught if "capturable=True" in str(w.message)]
    with pytest.warns(UserWarning, match=capture.UNCAPTURED_WARNING):  # still there outside the engine
        p = torch.zeros(3, device="cuda", requires_grad=True)
        p.grad = torch.ones_like(p)
        torch.optim.Adam([p], capturable=True).step()


def test_stacked_equals_single_on_cuda_and_model_pt_loads_on_a_cpu(tiny_cfg, tmp_path: Path) -> None:
    from actcompare.experiment import RunSpec, run_group

    def specs(engine: str) -> list[RunSpec]:
        return [
            RunSpec(
                tiny_cfg(*act, f"seed={s}", "epochs=2", "device=cuda", f"data.train_samples={N_TRAIN}"),
                tmp_path / engine / f"{name}-{s}",
            )
            for s in (0, 1)
            for name, act in (("relu", []), ("prelu", ["activation=prelu"]))
        ]

    for engine in ("stacked", "single"):
        records = run_group(specs(engine), engine=engine)
        assert {r["status"] for r in records} == {"completed"}, [r.get("error") for r in records]
        assert {r["device"] for r in records} == {"cuda"}
    for folder in sorted((tmp_path / "single").iterdir()):
        single = pd.read_csv(folder / "metrics.csv").drop(columns="epoch_seconds")
        stacked_ = pd.read_csv(tmp_path / "stacked" / folder.name / "metrics.csv").drop(columns="epoch_seconds")
        for col in ("train_loss", "test_loss"):
            assert ((stacked_[col] - single[col]).abs() <= 1e-4 * single[col].abs()).all(), (folder.name, col)
        for col in ("train_acc", "test_acc"):
            assert ((stacked_[col] - single[col]).abs() <= 0.003).all(), (folder.name, col)
        weights = torch.load(tmp_path / "stacked" / folder.name / "model.pt", weights_only=True)
        assert {t.device.type for t in weights.values()} == {"cpu"}


@pytest.mark.parametrize("kind", ["PerModelLRAdam", "StackedOptimizer"])
def test_per_model_hyperparameters_graphed_equal_eager(cuda_data, kind: str) -> None:
    """An lr sweep in one graph: each model its own lr (torch's fused Adam at lr 1, then per-model lr),
    or its own lr and betas (StackedOptimizer), captured and replayed."""
    betas = (("betas", (0.8, 0.99)),) if kind == "StackedOptimizer" else ()
    own = [(("lr", 1e-3),), (("lr", 3e-3), *betas), (("lr", 1e-2),)]
    variants = [Variant(nn.ReLU, "default", o) for o in own]

    def make(graph: bool) -> stacked.StackedEngine:
        return stacked.StackedEngine(
            variants,
            [0, 1],
            Recipe((32, 32), functools.partial(torch.optim.Adam, fused=True), BATCH),
            cuda_data.train.x,
            cuda_data.train.y,
            graph=graph,
        )

    graphed, eager = make(True), make(False)
    assert graphed._graph is not None and type(graphed.optimizer).__name__ == kind
    for _ in range(2):
        (gl, _), (el, _) = graphed.train_epoch(), eager.train_epoch()
        assert close(gl, el, 1e-5), (gl, el)
    assert len(set(gl)) == len(gl)  # the models differ
