"""Real batches and public data for the malicious-server tests: MNIST digits (the client's batch
from the held-out test split, the server's public data from the train split) and CIFAR-size
images (the client's from CIFAR-10, the server's from CIFAR-100 and ImageNet photos at 32 px)."""
from __future__ import annotations

import pytest
import torch

from fastleak import data, models


@pytest.fixture(scope="session")
def mnist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return data.load("mnist", 64, seed=1)


@pytest.fixture(scope="session")
def mnist_public() -> torch.Tensor:
    return data.load("mnist", 4000, seed=0, split="train")[0]


@pytest.fixture(scope="session")
def cifar_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return data.load("cifar10", 16, seed=0)


@pytest.fixture(scope="session")
def cifar_public() -> torch.Tensor:
    return torch.cat([data.load("cifar100", 20)[0], data.load("imagenet", 20, size=32)[0]])


@pytest.fixture
def lenet() -> torch.nn.Module:
    return models.build("lenet", 10, in_shape=(1, 28, 28))
