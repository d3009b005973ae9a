"""diagnostics.probe on hand-made activations and weights: one "no gradient" category (|f'| far below the
activation's own maximum slope), every unit in exactly one category; inactive (off) is not saturated."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from actcompare.diagnostics import NO_GRAD_LEVEL, probe, shape
from actcompare.model import NeuralNetwork
from actcompare.runs import LAYER_COLUMNS

# Four hidden units whose pre-activation is the same for every image: bias only.
BIASES = [-12.0, 12.0, 0.5, -0.5]


class Clip01(nn.Module):
    """A hand-made bounded ReLU: 0 below 0, x in [0, 1], 1 above (off on the left, saturated on the right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


class SoftStep(nn.Module):
    """A hand-made smooth saturating activation: (tanh(x) + 1) / 2, never exactly 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x) + 1) / 2


def net(act: type[nn.Module], biases: list[float] = BIASES) -> NeuralNetwork:
    model = NeuralNetwork(act, hidden_sizes=(len(biases),))
    with torch.no_grad():
        first = model.linears()[0]
        first.weight.zero_()
        first.bias.copy_(torch.tensor(biases))
    return model


def layer1(act: type[nn.Module], biases: list[float] = BIASES, x: torch.Tensor | None = None) -> dict:
    torch.manual_seed(0)
    x = torch.rand(64, 784) if x is None else x
    rows = probe(net(act, biases), x, torch.randint(0, 10, (len(x),)))
    assert list(rows[0]) == ["layer", *LAYER_COLUMNS]
    assert list(rows[-1]) == ["layer", "grad_norm"] and rows[-1]["layer"] == 2
    return rows[0]


@pytest.mark.parametrize(
    ("act", "inactive", "saturated"),
    [
        (nn.ReLU, 0.5, 0.0),  # -12 and -0.5 are off: inactive (and dead), never "saturated"
        (nn.LeakyReLU, 0.0, 0.0),  # still passes gradient on the left: neither
        (nn.Sigmoid, 0.0, 0.5),  # +-12 sit in sigmoid's flat tails
        (SoftStep, 0.0, 0.5),  # +-6: tails of tanh (beyond +-4)
        (Clip01, 0.5, 0.5),  # biases -12, -0.5: off; 12, 3: clipped at 1 (flat but not 0)
        (nn.Identity, 0.0, 0.0),
    ],
)
def test_inactive_and_saturated_on_hand_made_units(act, inactive: float, saturated: float) -> None:
    # Clip01: 12 and 3 clipped at 1. SoftStep: at -12 float32's tanh is exactly -1 (off, not saturated).
    biases = {Clip01: [-12.0, 12.0, 3.0, -0.5], SoftStep: [-6.0, 6.0, 0.5, -0.5]}.get(act, BIASES)
    row = layer1(act, biases)
    assert row["inactive_frac"] == pytest.approx(inactive)
    assert row["saturated_frac"] == pytest.approx(saturated)
    assert row["dead_frac"] == pytest.approx(inactive)  # every image sees the same pre-activation here
    # The one category: off and saturated are both "no gradient"; here for every image alike.
    assert row["no_grad_frac"] == pytest.approx(inactive + saturated)
    assert row["no_grad_all_frac"] == pytest.approx(inactive + saturated)


def test_relu6_clip_is_saturation() -> None:
    row = layer1(nn.ReLU6, [-8.0, 8.0, 0.5, 7.0])
    assert row["inactive_frac"] == pytest.approx(0.25)  # -8: off
    assert row["saturated_frac"] == pytest.approx(0.5)  # 8 and 7: above the clip at 6
    assert row["no_grad_frac"] == pytest.approx(0.75)


def test_most_images_not_every_image() -> None:
    """Unit 0's pre-activation is pixel 0 minus a threshold: off for 75 % of the images -> inactive, not dead;
    off for 25 % -> neither."""
    x = torch.zeros(100, 784)
    x[:, 0] = torch.linspace(0, 1, 100)
    model = NeuralNetwork(nn.ReLU, hidden_sizes=(2,))
    with torch.no_grad():
        first = model.linears()[0]
        first.weight.zero_()
        first.weight[:, 0] = 1.0
        first.bias.copy_(torch.tensor([-0.75, -0.25]))
    row = probe(model, x, torch.zeros(100, dtype=torch.long))[0]
    assert row["inactive_frac"] == pytest.approx(0.5) and row["dead_frac"] == 0.0
    assert row["no_grad_frac"] == pytest.approx(0.5) and row["no_grad_all_frac"] == 0.0
    assert row["zero_frac"] == pytest.approx((75 + 25) / 200, abs=0.02)


def test_shapes_of_shipped_activations() -> None:
    assert not shape(nn.ReLU()).has_tail and shape(nn.ReLU()).has_off
    assert shape(nn.ReLU6()).high == pytest.approx(6.0, abs=0.01)
    s = shape(nn.Sigmoid())
    # sigmoid' / max = 4 s(z)(1 - s(z)) < 1e-3 beyond |z| = 8.29
    assert s.low == pytest.approx(-8.29, abs=0.05) and s.high == pytest.approx(8.29, abs=0.05) and not s.has_off
    assert not shape(nn.GELU()).has_off or shape(nn.GELU()).has_tail  # gelu's minimum is no tail, its left end is
    assert not shape(nn.LeakyReLU()).has_tail and not shape(nn.Hardswish()).has_tail


def test_inplace_activation_and_no_gradients_left() -> None:
    model = net(lambda: nn.ReLU(inplace=True))
    rows = probe(model, torch.rand(8, 784), torch.zeros(8, dtype=torch.long))
    assert rows[0]["inactive_frac"] == pytest.approx(0.5)
    assert all(p.grad is None for p in model.parameters())


def test_leaky_relu_slope_is_not_on_the_threshold() -> None:
    """leaky_relu's left side passes gradient, and keeps doing so for slopes around 0.01 (no knife edge)."""
    assert NO_GRAD_LEVEL <= 0.01 / 5
    for slope in (0.005, 0.008, 0.01, 0.012, 0.02):
        row = layer1(lambda s=slope: nn.LeakyReLU(s), [-12.0, -3.0, -0.5, 2.0])
        assert row["no_grad_frac"] == 0.0 and row["no_grad_all_frac"] == 0.0, slope


def test_gelu_underflow_counts_like_any_other_unit_without_gradient() -> None:
    """gelu at -12 (float32 underflow: output and f' exactly 0) and at -5 (f' ~ -7e-6, not 0) are both
    "no gradient" (max f' ~ 1.13); at 0.5 and 2 it passes gradient."""
    gelu = nn.GELU()
    z = torch.tensor([-12.0, -5.0])
    assert gelu(z)[0] == 0 and gelu(z)[1] != 0  # the premise: only the first underflows
    row = layer1(nn.GELU, [-12.0, -5.0, 0.5, 2.0])
    assert row["no_grad_frac"] == pytest.approx(0.5) and row["no_grad_all_frac"] == pytest.approx(0.5)


def test_every_unit_in_exactly_one_category() -> None:
    """Units without gradient for some images only: the three categories partition the layer."""
    torch.manual_seed(1)
    x = torch.rand(200, 784)
    for act in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ReLU6, nn.ELU):
        model = NeuralNetwork(act, hidden_sizes=(64,))
        with torch.no_grad():
            first = model.linears()[0]
            first.weight.normal_(0, 1.0)  # wide pre-activations: every category occurs
        row = probe(model, x, torch.zeros(200, dtype=torch.long))[0]
        parts = [row["no_grad_all_frac"], row["no_grad_frac"] - row["no_grad_all_frac"], 1 - row["no_grad_frac"]]
        assert all(0 <= p <= 1 for p in parts) and sum(parts) == pytest.approx(1.0), act
        # off and saturated units are units without gradient: never more of them than of no_grad
        assert max(row["inactive_frac"], row["saturated_frac"]) <= row["no_grad_frac"] + 1e-9
