"""fastleak.malicious.theory: singleton fractions, against their closed forms and against batches
drawn from a real pool."""
from __future__ import annotations

import math

import pytest
import torch

from fastleak import data, malicious
from fastleak.malicious import theory


def test_equal_masses():
    for k, b in ((512, 256), (64, 64), (2, 1)):
        expected = (1 - 1 / k) ** (b - 1)
        assert math.isclose(theory.equal_bins_singleton_fraction(k, b), expected, rel_tol=1e-12)
        assert math.isclose(theory.singleton_fraction(torch.full((k,), 1 / k), b), expected, rel_tol=1e-12)


def test_pool_extremes_and_large_pool_limit():
    assert theory.pool_singleton_fraction(torch.ones(100), 40) == pytest.approx(1.0)
    assert theory.pool_singleton_fraction(torch.tensor([100]), 2) == 0.0
    # one sample per pool bin, batch of 2 from 2 bins of 2: the other sample shares the bin with prob 1/3
    assert theory.pool_singleton_fraction(torch.tensor([2, 2]), 2) == pytest.approx(2 / 3)
    counts = torch.full((50,), 10_000)
    assert theory.pool_singleton_fraction(counts, 30) == pytest.approx(
        theory.singleton_fraction(counts.double() / counts.sum(), 30), rel=1e-3)


def test_pool_prediction_matches_batches_drawn_from_mnist(mnist_public, lenet):
    """Bins fitted on the train digits; batches of 64 drawn without replacement from the 1,000
    test digits: the mean observed singleton fraction matches the pool formula within sampling noise."""
    model = malicious.imprint_model(lenet, mnist_public, malicious.ImprintConfig(bins=128))
    pool = data.load("mnist", 1000, seed=0)[0]
    bins = model.block.bin_of(pool)
    predicted = theory.pool_singleton_fraction(theory.bin_counts(bins, 128), 64)
    gen = torch.Generator().manual_seed(0)
    observed = []
    for _ in range(400):
        batch = bins[torch.randperm(1000, generator=gen)[:64]]
        counts = torch.bincount(batch.clamp_min(0), minlength=128)
        observed.append(((counts[batch] == 1) & (batch >= 0)).double().mean().item())
    observed = torch.tensor(observed)
    assert abs(observed.mean().item() - predicted) < 3 * observed.std().item() / math.sqrt(len(observed))
    # the test digits are not spread over the bins exactly as the train digits: fewer singletons
    # than equal masses would give
    assert predicted < theory.equal_bins_singleton_fraction(128, 64)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="bin_masses must be a 1-D tensor of non-negative masses summing to 1"):
        theory.singleton_fraction(torch.tensor([0.5, 0.6]), 3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        theory.equal_bins_singleton_fraction(4, 0)
    with pytest.raises(ValueError, match="bin_counts must be .* summing to at least batch_size=5"):
        theory.pool_singleton_fraction(torch.tensor([1, 2]), 5)


def test_peeling_reads_what_subtraction_leaves_alone():
    # bins: 0 = {a}, 1 = {a, b}, 2 = {b, c}, 3 = {d, e}: a, then b, then c; d and e stay mixed
    members = torch.zeros(5, 4, dtype=torch.bool)
    for sample, bins in enumerate(([0, 1], [1, 2], [2], [3], [3])):
        members[sample, bins] = True
    assert theory.peeling_fraction(members) == pytest.approx(3 / 5)
    # one bin per sample (one measurement): peeling reads the singletons only
    one = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2, 2, 3]), 5).bool()
    assert theory.peeling_fraction(one) == pytest.approx(2 / 6)
    pool = torch.nn.functional.one_hot(torch.arange(400) % 50, 50).bool()
    assert theory.sampled_peeling_fraction(pool, 20, draws=500) == pytest.approx(
        theory.pool_singleton_fraction(torch.full((50,), 8), 20), abs=0.02)
    with pytest.raises(ValueError, match="members must be a non-empty bool matrix"):
        theory.peeling_fraction(torch.zeros(0, 3, dtype=torch.bool))
