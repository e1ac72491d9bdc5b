"""fastleak.malicious.evaluation: matching recovered inputs to the true batch and scoring them."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fastleak import federated
from fastleak.malicious import ImprintConfig, RecoveryConfig, evaluate, imprint_model, recover


def test_scores_follow_the_matching(mnist_batch, mnist_public, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=128))
    rec = recover(federated.fedsgd(model, x, y), model, RecoveryConfig(labels=None))
    score = evaluate(rec, model, x)
    assert score.labels is None and len(score.psnr) == len(x)
    exact_before = sum(score.exact)
    # an extra recovery that is a blend of two digits matches nothing exactly; dropping one
    # recovery leaves its digit unmatched (nan)
    blend = (0.5 * x[0] + 0.5 * x[1])[None]
    worse = dataclasses.replace(rec, images=torch.cat([rec.images[1:], blend]), bins=torch.cat([rec.bins[1:],
                                                                                                rec.bins[:1]]))
    score2 = evaluate(worse, model, x)
    assert sum(score2.exact) == exact_before - 1 and score2.false_singles == 1
    assert sum(math.isnan(p) for p in score2.psnr) == sum(math.isnan(p) for p in score.psnr)
    assert score2.singleton_fraction == score.singleton_fraction
    # the bin diagnostic ignores the status: the own-bin candidate of every lone digit is exact
    assert all(p >= 60 for p, a in zip(score.bin_psnr, score.alone) if a)


def test_shape_error(mnist_batch, mnist_public, cifar_batch, lenet):
    x, y = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=16))
    rec = recover(federated.fedsgd(model, x, y), model, RecoveryConfig(labels=None))
    with pytest.raises(ValueError, match=r"true_images must have shape \[B, \*\(1, 28, 28\)\], got \(16, 3, 32, 32\)"):
        evaluate(rec, model, cifar_batch[0])
