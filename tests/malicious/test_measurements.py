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


def test_several_random_directions_are_orthonormal_and_zero_mean():
    w = measurements.directions("random", 300, 3, seed=1)
    torch.testing.assert_close(w @ w.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert w.sum(1).abs().max() < 1e-12


def test_pca_gives_the_public_datas_principal_directions():
    public = data.load("mnist", 500, seed=0, split="train")[0]
    w = measurements.directions("pca", 784, 3, public=public)
    flat = public.flatten(1).double()
    centred = flat - flat.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    torch.testing.assert_close((w @ v[:3].T).abs(), torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-6)
    assert ((w @ flat.mean(0)) >= 0).all()
    spread = (centred @ w.T).std(0)
    torch.testing.assert_close(spread, s[:3] / (len(flat) - 1) ** 0.5, rtol=1e-6, atol=0)


def test_measurement_errors():
    with pytest.raises(ValueError, match=r"the 'pca' measurement is fitted on the server's public data"):
        measurements.directions("pca", 10, 2)
    with pytest.raises(ValueError, match=r"the 'mean' measurement is one direction, got count=2"):
        measurements.directions("mean", 10, 2)
    with pytest.raises(ValueError, match=r"'pca' gives at most 4 directions"):
        measurements.directions("pca", 10, 5, public=torch.rand(5, 10))


def test_registry_by_decorator_and_unknown_name():
    assert {"mean", "random", "pca"} <= set(measurements.names())
    with pytest.raises(ValueError, match=r"unknown measurement 'median'; valid names: .*mean.*random"):
        measurements.weights("median", 10)
    with pytest.raises(ValueError, match=r"measurement 'mean' is already registered"):
        measurements.register("mean")(measurements.mean_brightness)
