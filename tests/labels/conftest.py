import pytest
import torch
from torch import nn

from fastleak.federated import Observation, Pair


class LinearHead(nn.Module):
    """Features = the flattened input, then one nn.Linear: every quantity is hand-computable."""

    def __init__(self, dim: int, classes: int, bias: bool = True) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(dim, classes, bias=bias)

    def forward(self, x):
        return self.fc(self.flat(x))


def _head(dim=3, classes=4, bias=True, weight=None, bias_value=None):
    model = LinearHead(dim, classes, bias).double()
    with torch.no_grad():
        model.fc.weight.copy_(torch.zeros(classes, dim) if weight is None else weight)
        if bias:
            model.fc.bias.copy_(torch.zeros(classes) if bias_value is None else bias_value)
    return model


def _observation(model, shared_w, shared_b=None, *, num_samples, kind="gradient", reduction="mean",
                 input_shape=None, **fields):
    names = tuple(n for n, _ in model.named_parameters())
    shared = {"fc.weight": shared_w, "fc.bias": shared_b}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Observation(kind=kind, pairs=(Pair(state, tuple(shared[n] for n in names)),), param_names=names,
                       num_samples=num_samples, reduction=reduction, input_shape=input_shape, **fields)


@pytest.fixture
def make_head():
    """``make_head(dim, classes, bias, weight, bias_value)``: a float64 Flatten + nn.Linear model."""
    return _head


@pytest.fixture
def make_observation():
    """``make_observation(model, shared_w, shared_b, num_samples=..., ...)``: an Observation whose
    final-layer shared tensors are given by hand."""
    return _observation
