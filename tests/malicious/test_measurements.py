"""fastleak.malicious.measurements: the linear functions an imprint layer bins on."""
from __future__ import annotations

import pytest
import torch

from fastleak import data
from fastleak.malicious import measurements


def test_mean_is_the_mean_brightness():
    x = data.load("cifar10", 4)[0]
    w = measurements.weights("mean", x[0].numel())
    torch.testing.assert_close(x.flatten(1).double() @ w, x.flatten(1).double().mean(1), rtol=1e-12, atol=0)


def test_random_projection_is_seeded_zero_mean_unit_norm():
    w = measurements.weights("random", 784, seed=3)
    assert torch.equal(w, measurements.weights("random", 784, seed=3))
    assert not torch.equal(w, measurements.weights("random", 784, seed=4))
    assert abs(w.sum().item()) < 1e-12 and abs(w.norm().item() - 1) < 1e-12
    assert torch.equal(measurements.weights("random", 1), torch.ones(1, dtype=torch.float64))


def test_registry_by_decorator_and_unknown_name():
    assert {"mean", "random"} <= set(measurements.names())
    with pytest.raises(ValueError, match=r"unknown measurement 'median'; valid names: .*mean.*random"):
        measurements.weights("median", 10)
    with pytest.raises(ValueError, match=r"measurement 'mean' is already registered"):
        measurements.register("mean")(measurements.mean_brightness)
