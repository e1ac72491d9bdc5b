"""Cases shared by the attack tests."""
import pytest

import fastleak.data as data
import fastleak.models as models
from fastleak.federated import fedsgd


@pytest.fixture(scope="module")
def lenet_case():
    """One CIFAR-10 image, a sigmoid LeNet in eval mode and its FedSGD gradient: (model, x, y, obs)."""
    x, y = data.load("cifar10", 1, seed=0)
    model = models.build("lenet", 10, seed=0).eval()
    return model, x, y, fedsgd(model, x, y)
