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


def _quantised(obs, bits: int):
    """``obs`` with every shared tensor quantised to 2**bits levels between its minimum and maximum."""
    shared = []
    for t in obs.pairs[0].shared:
        lo, hi = t.min(), t.max()
        step = (hi - lo) / (2 ** bits - 1)
        shared.append(torch.round((t - lo) / step) * step + lo if hi > lo else t)
    return dataclasses.replace(obs, pairs=(federated.Pair(obs.pairs[0].state, tuple(shared)),))


def test_peeling_separates_a_synthetic_mixture_exactly(mnist_batch, mnist_public, lenet):
    """Two directions of two bins each. Digit c is alone in bin 1 and b in bin 3; a shares bin 0
    with b and bin 2 with c. Subtracting c from bin 2 (or b from bin 0) leaves a alone."""
    x, _ = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=4, structure="sparse", measurement="pca",
                                                              measurements=2))
    members = model.block.members(x)
    first = {tuple(torch.nonzero(m).flatten().tolist()): i for i, m in enumerate(members)}
    a, b, c = first[(0, 2)], first[(0, 3)], first[(1, 2)]
    coef = torch.tensor([0.7317, -0.2093, 0.4410], dtype=torch.float64)
    sel = members[[a, b, c]].to(torch.float64)                                # [3, 4]
    flat = x[[a, b, c]].flatten(1).to(torch.float64)
    grad_w = (sel * coef[:, None]).T @ flat                                  # [4, 784]: each bin's sum c_i x_i
    grad_b = (sel * coef[:, None]).sum(0)
    obs = federated.fedsgd(model, x[:3], torch.zeros(3, dtype=torch.long))
    names = obs.param_names
    shared = list(obs.pairs[0].shared)
    shared[names.index("block.bins.weight")] = grad_w.float()
    shared[names.index("block.bins.bias")] = grad_b.float()
    obs = dataclasses.replace(obs, pairs=(federated.Pair(obs.pairs[0].state, tuple(shared)),))
    rec = recover(obs, model, RecoveryConfig(labels=None))
    assert rec.status == ("peeled", "single", "mixed", "single")
    assert rec.bins.tolist() == [1, 3, 0]
    for image, digit in zip(rec.images, (c, b, a)):
        assert torch.equal(image, x[digit])   # on the grid: the digit's own values
    unpeeled = recover(obs, model, RecoveryConfig(labels=None, peel=False))
    assert unpeeled.bins.tolist() == [1, 3] and unpeeled.count("peeled") == 0


@pytest.mark.parametrize("batch", [32, 128])
def test_several_measurements_and_peeling_read_nearly_every_digit(mnist_public, lenet, batch):
    from fastleak import data
    from fastleak.malicious import presets

    x, y = data.load("mnist", batch, seed=3)
    model = presets.build("imprint_pca", lenet, mnist_public, batch)
    obs = federated.fedsgd(model, x, y)
    score = evaluate(recover(obs, model, RecoveryConfig(labels=None)), model, x)
    assert score.false_singles == 0
    assert score.recovered_fraction >= 0.9 and score.recovered_fraction > score.singleton_fraction + 0.3
    assert score.peeling_fraction >= score.recovered_fraction
    alone = evaluate(recover(obs, model, RecoveryConfig(labels=None, peel=False)), model, x)
    assert alone.recovered_fraction == alone.singleton_fraction == score.singleton_fraction


@pytest.mark.parametrize("seed", [1, 2])
def test_a_quantised_update_gives_no_false_image(mnist_public, lenet, seed):
    """8 bits pin a bin's input down to more than a grid step: nothing is certified, where the grid
    alone let inputs re-scaled onto it at wrong values through; 16 bits are fine enough for most
    bins, which come back exactly."""
    from fastleak import data

    x, y = data.load("mnist", 64, seed=seed)
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128, structure="sparse"))
    obs = federated.fedavg(model, x, y, local_steps=4, lr=0.1, batch_size=16)
    coarse = evaluate(recover(_quantised(obs, 8), model, RecoveryConfig(labels=None)), model, x)
    assert coarse.false_singles == 0 and coarse.recovered_fraction == 0
    without = RecoveryConfig(labels=None, checks=("interval", "activation", "range", "grid"))
    assert evaluate(recover(_quantised(obs, 8), model, without), model, x).false_singles > 0
    fine = evaluate(recover(_quantised(obs, 16), model, RecoveryConfig(labels=None)), model, x)
    assert fine.false_singles == 0 and fine.recovered_fraction >= 0.8 * fine.singleton_fraction


def test_a_quantised_gradient_gives_no_false_image(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128, structure="cumulative"))
    obs = federated.fedsgd(model, x, y)
    score = evaluate(recover(_quantised(obs, 8), model, RecoveryConfig(labels=None)), model, x)
    assert score.false_singles == 0 and score.recovered_fraction == 0


def test_separated_clients_are_read_from_their_own_copy_under_secure_aggregation(mnist_public, lenet):
    from fastleak import data
    from fastleak.malicious import copy_of, separate

    clients, batch = 3, 16
    x, y = data.load("mnist", clients * batch, seed=5)
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=32, structure="sparse", measurement="pca",
                                                              measurements=4, clients=clients))
    own = separate(model)
    assert len(own) == clients and model.block.bins.out_features == clients * 32
    observations = [federated.fedsgd(m, x[j * batch:(j + 1) * batch], y[j * batch:(j + 1) * batch])
                    for j, m in enumerate(own)]
    # the aggregation reveals the mean of the clients' shared tensors, nothing per client
    mean = tuple(torch.stack(ts).mean(0) for ts in zip(*(o.pairs[0].shared for o in observations)))
    obs = dataclasses.replace(observations[0], pairs=(federated.Pair(observations[0].pairs[0].state, mean),),
                              num_samples=clients * batch)
    rec = recover(obs, model, RecoveryConfig(labels=None))
    owner = torch.arange(clients).repeat_interleave(batch)
    score = evaluate(rec, model, x, clients=owner)
    assert score.false_singles == 0 and score.recovered_fraction >= 0.9
    # every recovered input came from its own client's copy
    matched = [(i, m) for i, m in enumerate(score.matched) if m >= 0 and score.exact[i]]
    assert all(copy_of(model.block, rec.bins[m]).item() == owner[i].item() for i, m in matched)


def test_a_sample_on_the_edge_of_two_bins_is_reported_once(mnist_batch, mnist_public, lenet):
    """A sample within float rounding of an edge can pass both neighbouring rows' gates (seen with
    breaching's layout of sparse rows): both bins then hold it alone, and it is one recovered image."""
    x, _ = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=8, structure="sparse"))
    grad_w = torch.zeros(8, 784)
    grad_w[3] = grad_w[4] = 0.25 * x[0].flatten()
    grad_b = torch.zeros(8)
    grad_b[3] = grad_b[4] = 0.25
    obs = federated.fedsgd(model, x[:1], torch.zeros(1, dtype=torch.long))
    names = obs.param_names
    shared = list(obs.pairs[0].shared)
    shared[names.index("block.bins.weight")], shared[names.index("block.bins.bias")] = grad_w, grad_b
    obs = dataclasses.replace(obs, pairs=(federated.Pair(obs.pairs[0].state, tuple(shared)),))
    rec = recover(obs, model, RecoveryConfig(labels=None, checks=("range", "grid")))
    assert rec.status.count("single") == 2 and rec.bins.tolist() == [3] and torch.equal(rec.images[0], x[0])
