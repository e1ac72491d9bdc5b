"""fastleak.malicious.recovery: what the server recovers from a client's FedSGD gradient and
FedAvg update of the modified model, on real MNIST digits and CIFAR-10 images."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fastleak import federated, models
from fastleak.malicious import (EXACT_PSNR, ImprintConfig, RecoveryConfig, evaluate, imprint_model, recover,
                                recover_many)
from fastleak.metrics import psnr


def occupancy(model, x):
    bins = model.block.bin_of(x)
    return bins, torch.bincount(bins.clamp_min(0), minlength=model.block.bins.out_features)


@pytest.mark.parametrize("structure", ["cumulative", "sparse"])
def test_fedsgd_mnist_recovers_every_singleton_exactly(mnist_batch, mnist_public, lenet, structure):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128, structure=structure))
    rec = recover(federated.fedsgd(model, x, y), model)
    bins, counts = occupancy(model, x)
    alone = counts[bins] == 1
    assert 0.4 < alone.double().mean() < 0.8
    # every digit alone in its bin comes back exactly, from its own bin
    own = rec.bin_images[bins[alone]]
    assert (psnr(own, x[alone]) >= EXACT_PSNR).all()
    assert set(rec.bins.tolist()) == set(bins[alone].tolist())
    # bins without a digit are flagged empty, and only those
    assert [s == "empty" for s in rec.status] == (counts == 0).tolist()
    # bins with several digits are flagged mixed
    assert all(rec.status[k] == "mixed" for k in torch.nonzero(counts >= 2).flatten().tolist())
    score = evaluate(rec, model, x, y)
    assert score.recovered_fraction == score.singleton_fraction == alone.double().mean().item()
    assert score.false_singles == 0 and score.occupied_bins_flagged_empty == 0
    assert score.empty_bins_flagged == score.empty_bins == int((counts == 0).sum())
    assert score.labels is not None and score.labels.exact


def test_fedsgd_cifar_with_random_projection(cifar_batch, cifar_public):
    x, y = cifar_batch
    base = models.build("convnet", 10, width=8)
    model = imprint_model(base, cifar_public, ImprintConfig(bins=32, measurement="random", seed=1))
    rec = recover(federated.fedsgd(model, x, y), model, RecoveryConfig(labels=None))
    score = evaluate(rec, model, x)
    assert 0 < score.singleton_fraction < 1
    assert score.recovered_fraction == score.singleton_fraction
    assert all(e for e, a in zip(score.exact, score.alone) if a)
    assert score.false_singles == 0


def test_fedavg_checks_keep_inexact_candidates_out(mnist_batch, mnist_public, lenet):
    """Several local steps: the float32 update rounds away most of a bin's bias change, so the
    candidates are not exact; the checks must then not report them as recovered."""
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128))
    obs = federated.fedavg(model, x, y, local_steps=4, lr=0.1)
    rec = recover(obs, model, RecoveryConfig(labels=None))
    score = evaluate(rec, model, x)
    assert score.false_singles == 0
    assert score.recovered_fraction < score.singleton_fraction


@pytest.mark.parametrize("local_batch", [None, 16])
def test_fedavg_sparse_block_keeps_most_singletons_exact(mnist_batch, mnist_public, lenet, local_batch):
    """In the sparse block only a bin's own samples reach its row through every local step, and
    the rounded bias change is replaced by the grid scale: most lone digits survive exactly."""
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128, structure="sparse"))
    obs = federated.fedavg(model, x, y, local_steps=4, lr=0.01, batch_size=local_batch)
    score = evaluate(recover(obs, model, RecoveryConfig(labels=None)), model, x)
    assert score.recovered_fraction >= 0.8 * score.singleton_fraction and score.false_singles == 0
    without_snap = evaluate(recover(obs, model, RecoveryConfig(labels=None, snap_to_grid=False)), model, x)
    assert without_snap.recovered_fraction < score.recovered_fraction


def test_recover_many_batches_observations(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128))
    observations = [federated.fedsgd(model, x[:32], y[:32]), federated.fedsgd(model, x[32:], y[32:])]
    config = RecoveryConfig(labels=None)
    together = recover_many(observations, model, config)
    for obs, rec in zip(observations, together):
        alone = recover(obs, model, config)
        assert torch.equal(rec.images, alone.images) and rec.status == alone.status


def test_errors_name_the_argument(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=16))
    obs = federated.fedsgd(model, x, y)
    nan = dataclasses.replace(obs, pairs=(federated.Pair(obs.pairs[0].state, tuple(
        torch.full_like(t, float("nan")) if i == 0 else t for i, t in enumerate(obs.pairs[0].shared))),))
    with pytest.raises(ValueError, match=r"observation.pairs\[0\].shared\['block.bins.weight'\] contains NaN"):
        recover(nan, model)
    other = imprint_model(lenet, mnist_public, ImprintConfig(bins=32))
    with pytest.raises(ValueError, match=r"observation.pairs\[0\].shared\['block.bins.weight'\] has shape \(16, 784\)"):
        recover(obs, other)
    with pytest.raises(ValueError, match=r"observation does not share 'block.bins.weight'"):
        recover(federated.fedsgd(lenet, x, y), model)
    with pytest.raises(TypeError, match=r"model must be a MaliciousModel"):
        recover(obs, lenet)
    with pytest.raises(TypeError, match=r"observation must be an Observation"):
        recover({"grad": 1}, model)
    with pytest.raises(TypeError, match=r"config must be a RecoveryConfig"):
        recover(obs, model, {"labels": None})
    with pytest.raises(ValueError, match=r"empty_tolerance must be a non-negative number"):
        RecoveryConfig(empty_tolerance=-1)
    with pytest.raises(ValueError, match=r"pixel_range must be \(low, high\) with high > low"):
        RecoveryConfig(pixel_range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"pixel_levels must be a positive int or None"):
        RecoveryConfig(pixel_levels=0)
    with pytest.raises(ValueError, match=r"snap_search must be a non-negative int"):
        RecoveryConfig(snap_search=-1)
    with pytest.raises(ValueError, match=r"status must be one of"):
        recover(obs, model, RecoveryConfig(labels=None)).count("full")


def test_frozen_bin_layer_is_refused(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=16))
    model.block.bins.requires_grad_(False)
    obs = federated.fedsgd(model, x, y)
    model.block.bins.requires_grad_(True)
    with pytest.raises(ValueError, match=r"observation does not share 'block.bins.weight'"):
        recover(obs, model)
    assert isinstance(model.block.bins, nn.Linear)
