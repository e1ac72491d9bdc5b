"""fastleak.malicious.model: the modified model wraps a copy of any classifier."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastleak import models
from fastleak.malicious import ImprintConfig, MaliciousModel, imprint_model


def test_the_callers_model_is_not_modified(mnist_public, lenet):
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=8))
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(1)
    assert all(torch.equal(before[k], v) for k, v in lenet.state_dict().items())


def test_user_model_needs_in_shape(cifar_public):
    user = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match=r"in_shape is needed for a model not built by fastleak.models.build"):
        imprint_model(user, cifar_public, ImprintConfig(bins=8))
    model = imprint_model(user, cifar_public, ImprintConfig(bins=8), in_shape=(3, 32, 32))
    assert model(cifar_public[:2]).shape == (2, 10)


def test_inputs_of_another_shape_are_refused(mnist_public, cifar_public, lenet):
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=8))
    assert isinstance(model, MaliciousModel) and models.spec_of(model) is None
    with pytest.raises(ValueError, match=r"x has per-sample shape \(3, 32, 32\), but the malicious model was built "
                                         r"for in_shape \(1, 28, 28\)"):
        model(cifar_public[:2])
