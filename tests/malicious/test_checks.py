"""fastleak.malicious.checks: one real digit passes every check; combinations of two fail the
checks that can see them."""
from __future__ import annotations

import pytest
import torch

from fastleak.malicious import ImprintConfig, RecoveryConfig, checks, imprint_model
from fastleak.ops import imprint_certify


@pytest.fixture
def block(mnist_public, lenet):
    return imprint_model(lenet, mnist_public, ImprintConfig(bins=16)).block


def run(name, images, block, config=RecoveryConfig(), error_bound=0.0):
    """The check on candidate inputs ``images`` [16, ...], one per bin, with the statistics the fused
    op computes for them (each input as a bin's weight row over a bias difference of 1)."""
    flat = images.flatten(1).float()
    low, high, levels = config.grid
    _, bias_diff, stats = imprint_certify(flat, torch.ones(len(flat)), False, block.directions.float(), low, high,
                                          levels)
    candidates = checks.Candidates(torch.arange(len(flat)), flat, stats.double(),
                                   torch.full((len(flat),), error_bound, dtype=torch.float64), bias_diff)
    return checks.CHECKS.get(name)(candidates, block, config)


def two_digits_in_one_bin(block, x):
    bins = block.bin_of(x)
    for k in bins.unique():
        members = torch.nonzero(bins == k).flatten()
        if len(members) >= 2:
            return k, x[members[0]], x[members[1]]
    raise AssertionError("no bin holds two digits")


def test_real_digits_pass_every_check(block, mnist_batch):
    x, _ = mnist_batch
    k = block.bin_of(x)
    occupied = k.unique()
    candidates = torch.zeros(16, *x.shape[1:])
    # one digit of each occupied bin, the first (x[k] = ... with repeated k races between threads and
    # can write a row pixel by pixel from several digits: no real digit)
    candidates[occupied] = x[torch.stack([torch.nonzero(k == b)[0, 0] for b in occupied])]
    for name in checks.names():
        assert run(name, candidates, block)[occupied].all(), name


def test_convex_combination_fails_only_the_grid(block, mnist_batch):
    x, _ = mnist_batch
    k, a, b = two_digits_in_one_bin(block, x)
    candidates = torch.zeros(16, *x.shape[1:])
    candidates[k] = 0.37 * a + 0.63 * b
    assert run("interval", candidates, block)[k] and run("range", candidates, block)[k]
    assert not run("grid", candidates, block)[k]
    assert run("grid", candidates, block, RecoveryConfig(pixel_levels=None))[k]


def test_extrapolation_fails_range_and_interval(block, mnist_batch):
    x, _ = mnist_batch
    k, a, b = two_digits_in_one_bin(block, x)
    candidates = torch.zeros(16, *x.shape[1:])
    candidates[k] = 3.0 * a - 2.0 * b
    assert not run("range", candidates, block)[k]
    lower, upper = block.bin_intervals()
    candidates[k] = a * (lower[k] + 4 * (upper[k] - lower[k])).float() / a.mean()   # measures 4 bin widths above
    assert not run("interval", candidates, block)[k]


def test_a_coarse_error_bound_fails_only_the_resolution_check(block, mnist_batch):
    x, _ = mnist_batch
    candidates = torch.zeros(16, *x.shape[1:])
    candidates[3] = x[0]
    assert run("resolution", candidates, block, error_bound=0.49)[3]
    assert not run("resolution", candidates, block, error_bound=0.5)[3]   # rounding could pick either level
    assert run("grid", candidates, block, error_bound=0.5)[3]
    assert run("resolution", candidates, block, RecoveryConfig(pixel_levels=None), error_bound=0.5)[3]


def test_registry():
    assert checks.names() == ("activation", "grid", "interval", "range", "resolution")
    with pytest.raises(ValueError, match=r"unknown single-sample check 'sharpness'"):
        RecoveryConfig(checks=("grid", "sharpness"))
