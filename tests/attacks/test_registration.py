import torch

import fastleak.data as data
from fastleak.attacks import registration


def test_registration_recovers_a_known_shift():
    x, _ = data.load("cifar10", 2, seed=0, labels="unique")
    shift = torch.tensor([[1.0, 0.0, 0.12], [0.0, 1.0, -0.08]])
    moved = registration._warp(x, shift.expand(2, 2, 3))
    group = torch.stack([x, moved])  # [R=2, B=2, C, H, W]
    theta = registration.register_to_mean(group, steps=60, lr=0.01, translation_only=True)
    aligned = registration._warp(group.flatten(0, 1), theta.flatten(0, 1)).view_as(group)
    before = (group[0] - group[1]).pow(2).mean()
    after = (aligned[0] - aligned[1]).pow(2).mean()
    assert after < 0.5 * before
    # the two restarts move toward each other: opposite translations
    assert theta[0, 0, 0, 2] * theta[1, 0, 0, 2] < 0


def test_identical_restarts_keep_the_identity_and_have_no_spread():
    x, _ = data.load("cifar10", 2, seed=1, labels="unique")
    group = x.expand(3, *x.shape).clone()
    theta = registration.register_to_mean(group)
    assert torch.equal(theta, torch.eye(2, 3).expand(3, 2, 2, 3))
    center = registration.consensus(group, theta)
    assert registration.consistency_loss(group, center, theta).max() < 1e-6
