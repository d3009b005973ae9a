"""NeuralNetwork, train() and test() on the tiny data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from actcompare.data import load_mnist
from actcompare.model import NeuralNetwork, init_weights
from actcompare.train import EpochResult, confusion_matrix, train
from actcompare.train import test as evaluate


def test_layers_follow_hidden_sizes() -> None:
    model = NeuralNetwork(nn.ReLU, hidden_sizes=[64, 32, 16])
    linears = model.linears()
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 64), (64, 32), (32, 16), (16, 10)]
    assert [type(act) for _, act in model.hidden_layers()] == [nn.ReLU] * 3


def test_default_is_the_tutorial_network() -> None:
    model = NeuralNetwork(nn.ReLU)
    assert [(m.in_features, m.out_features) for m in model.linears()] == [(784, 128), (128, 128), (128, 10)]
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


@pytest.mark.parametrize("shape", [(5, 784), (5, 28, 28), (5, 1, 28, 28)])
def test_output_shape(shape: tuple[int, ...]) -> None:
    model = NeuralNetwork(nn.Tanh, hidden_sizes=[16])
    assert model(torch.rand(shape)).shape == (5, 10)


def test_fresh_activation_module_per_layer() -> None:
    torch.manual_seed(0)
    model = NeuralNetwork(nn.PReLU, hidden_sizes=[16, 16])
    acts = [act for _, act in model.hidden_layers()]
    assert acts[0] is not acts[1]
    assert acts[0].weight is not acts[1].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.rand(32, 784) - 0.5, torch.randint(0, 10, (32,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    w0, w1 = acts[0].weight.item(), acts[1].weight.item()
    assert w0 != pytest.approx(0.25) and w1 != pytest.approx(0.25)
    assert w0 != pytest.approx(w1), "PReLU slopes must be learnt per layer"


@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_init_schemes_zero_biases_and_change_weights(scheme: str) -> None:
    torch.manual_seed(0)
    default = NeuralNetwork(nn.ReLU, hidden_sizes=[32])
    torch.manual_seed(0)
    other = NeuralNetwork(nn.ReLU, hidden_sizes=[32], init=scheme)
    for a, b in zip(default.linears(), other.linears(), strict=True):
        assert torch.count_nonzero(b.bias) == 0
        assert not torch.equal(a.weight, b.weight)


def test_unknown_init_scheme() -> None:
    with pytest.raises(ValueError, match="unknown init"):
        init_weights(NeuralNetwork(nn.ReLU, hidden_sizes=[4]), "orthogonal")


def test_train_and_test_learn_the_tiny_data(tiny_mnist: str) -> None:
    data = load_mnist(tiny_mnist)
    torch.manual_seed(0)
    model = NeuralNetwork(nn.ReLU, hidden_sizes=[64])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    before = evaluate(model, data.test.x, data.test.y)
    fits = [train(model, data.train.x, data.train.y, opt, 64, gen) for _ in range(4)]
    after = evaluate(model, data.test.x, data.test.y)
    for r in [before, after, *fits]:
        assert isinstance(r, EpochResult) and isinstance(r.loss, float) and isinstance(r.accuracy, float)
        assert math.isfinite(r.loss) and 0.0 <= r.accuracy <= 1.0
    assert before.loss == pytest.approx(math.log(10), rel=0.15)  # untrained: about uniform
    assert fits[-1].loss < fits[0].loss
    assert after.loss < before.loss
    assert after.accuracy > 0.6, after


def test_test_matches_a_manual_computation() -> None:
    torch.manual_seed(0)
    model = NeuralNetwork(nn.ReLU, hidden_sizes=[8])
    x, y = torch.rand(50, 784), torch.randint(0, 10, (50,))
    res = evaluate(model, x, y)
    with torch.no_grad():
        logits = model(x)
    assert res.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert res.accuracy == pytest.approx((logits.argmax(1) == y).float().mean().item())
    cm = confusion_matrix(model, x, y)
    assert cm.shape == (10, 10) and int(cm.sum()) == 50
    assert int(cm.diagonal().sum()) == round(res.accuracy * 50)


def test_train_is_deterministic_given_seeds(tiny_mnist: str) -> None:
    data = load_mnist(tiny_mnist)

    def one_epoch() -> EpochResult:
        torch.manual_seed(1)
        model = NeuralNetwork(nn.Tanh, hidden_sizes=[16])
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return train(model, data.train.x, data.train.y, opt, 32, torch.Generator().manual_seed(1))

    assert one_epoch() == one_epoch()


def test_train_leaves_last_partial_batch_in(tiny_mnist: str) -> None:
    """Accuracy is over every sample: with batch 100 on 512 samples the last batch has 12."""
    data = load_mnist(tiny_mnist)
    model = NeuralNetwork(nn.ReLU, hidden_sizes=[8])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no learning: every batch sees the same model
    res = train(model, data.train.x, data.train.y, opt, 100, torch.Generator().manual_seed(0))
    ref = evaluate(model, data.train.x, data.train.y)
    assert res.accuracy == pytest.approx(ref.accuracy)
    assert res.loss == pytest.approx(ref.loss, rel=1e-5)
