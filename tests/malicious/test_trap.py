"""fastleak.malicious.trap: trap weights calibrated on public digits, and what they recover."""
from __future__ import annotations

import pytest
import torch

from fastleak import federated
from fastleak.malicious import EXACT_PSNR, RecoveryConfig, TrapConfig, evaluate, recover, theory, trap_model
from fastleak.malicious.trap import rows_fired, trap_weights
from fastleak.metrics import psnr


def test_calibrated_activation_rate_and_trap_signs(mnist_public):
    w = trap_weights(mnist_public, TrapConfig(rows=64, activation_rate=0.02))
    rate = (mnist_public.flatten(1) @ w.T > 0).double().mean().item()
    assert abs(rate - 0.02) < 1e-3
    positive = w.clamp_min(0).sum(1)
    negative = -w.clamp_max(0).sum(1)
    assert (positive < negative).all()  # the positive entries are scaled down


def test_fedsgd_mnist_rows_with_one_digit_give_it_exactly(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = trap_model(lenet, mnist_public, TrapConfig(rows=128, activation_rate=1 / 64))
    rec = recover(federated.fedsgd(model, x, y), model, RecoveryConfig(labels=None, peel=False))
    fired = rows_fired(model.block, x)
    per_row = fired.sum(0)
    lone_rows = torch.nonzero(per_row == 1).flatten()
    assert len(lone_rows) >= 5
    owners = fired[:, lone_rows].float().argmax(0)
    assert (psnr(rec.bin_images[lone_rows], x[owners]) >= EXACT_PSNR).all()
    assert [s == "empty" for s in rec.status] == (per_row == 0).tolist()
    score = evaluate(rec, model, x)
    assert score.recovered_fraction == score.singleton_fraction > 0
    assert score.false_singles == 0
    # a digit caught alone by several rows is reported once
    assert len(rec.images) == len(owners.unique())


def test_peeling_reads_the_digits_left_alone_once_the_lone_ones_are_subtracted(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = trap_model(lenet, mnist_public, TrapConfig(rows=128, activation_rate=1 / 64))
    obs = federated.fedsgd(model, x, y)
    rec = recover(obs, model, RecoveryConfig(labels=None))
    score = evaluate(rec, model, x)
    assert score.recovered_fraction == score.peeling_fraction > score.singleton_fraction + 0.05
    assert score.false_singles == 0 and len(rec.images) == sum(score.exact)
    assert rec.count("peeled") > 0
    assert set(rec.bins[len(rec.images) - rec.count("peeled"):].tolist()) == \
        {k for k, s in enumerate(rec.status) if s == "peeled"}


def test_sampled_theory_agrees_with_the_closed_form_for_bins():
    bins = torch.arange(400) % 50
    members = torch.nn.functional.one_hot(bins, 50).bool()
    exact = theory.pool_singleton_fraction(theory.bin_counts(bins, 50), 20)
    assert theory.sampled_singleton_fraction(members, 20, draws=2000) == pytest.approx(exact, abs=0.01)


def test_config_errors(mnist_public, lenet):
    for rows in (0, True, 1.5):
        with pytest.raises(ValueError, match=r"rows must be a positive int"):
            TrapConfig(rows=rows, activation_rate=0.1)
    for rate in (0, 0.5, -0.1, "0.1"):
        with pytest.raises(ValueError, match=r"activation_rate must be a number in \(0, 0.5\)"):
            TrapConfig(rows=4, activation_rate=rate)
    with pytest.raises(ValueError, match=r"activation_rate=0.4 cannot be reached on public"):
        trap_model(lenet, torch.zeros_like(mnist_public[:10]), TrapConfig(rows=4, activation_rate=0.4))
    with pytest.raises(TypeError, match=r"config must be a TrapConfig"):
        trap_model(lenet, mnist_public, {"rows": 4})
