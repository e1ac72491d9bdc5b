"""Real digits for the inspection tests: the client's from the held-out split, the server's public data
from the train split; models planted with malicious weights without changing their class."""
from __future__ import annotations

import pytest
import torch

from fastleak import data, models
from fastleak.malicious.trap import TrapConfig, trap_weights


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    return data.load("mnist", 400, seed=0)[0]


@pytest.fixture(scope="session")
def public_digits() -> torch.Tensor:
    return data.load("mnist", 2000, seed=0, split="train")[0]


def planted_trap_mlp(public: torch.Tensor, batch_size: int, seed: int = 0) -> torch.nn.Module:
    """An MLP of the registry whose first layer holds trap weights for ``batch_size`` (Boenisch et al.'s
    weights-only setting: the client's class is unchanged)."""
    net = models.build("mlp", 10, in_shape=(1, 28, 28), seed=seed)
    with torch.no_grad():
        net.linear0.weight.copy_(trap_weights(public, TrapConfig(rows=512, activation_rate=1 / batch_size, seed=seed)))
        net.linear0.bias.zero_()
    return net


def shrunk_rows(rows: int, scale: float, seed: int = 0) -> torch.Tensor:
    """Random rows of CIFAR-size inputs whose positive entries are scaled by ``scale``, their signs kept (how
    trap weights are made), in float64."""
    w = torch.randn(rows, 3072, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / 3072 ** 0.5
    return torch.where(w > 0, scale * w, w)
