"""bench_labels' dummy inputs: noise, or real images that never come from the victim's dataset."""
import torch

import fastleak.data as data
from benchmarks.bench_labels import AUXILIARY, label_config


def test_noise_dummies_keep_the_library_default():
    config = label_config("uniform", "cifar10", 48)
    assert config.dummies is None and config.num_dummies == 48 and config.dummy_distribution == "uniform"


def test_auxiliary_dummies_are_real_images_of_other_datasets():
    for victim, shape in (("cifar10", (3, 32, 32)), ("cifar100", (3, 32, 32)), ("mnist", (1, 28, 28))):
        assert victim not in AUXILIARY[victim]
        dummies = label_config("auxiliary", victim, 9).dummies
        assert dummies.shape == (9, *shape) and 0 <= float(dummies.min()) and float(dummies.max()) <= 1
        victim_pool, _ = data.load(victim, 20, seed=0)
        assert not any(torch.equal(d, v) for d in dummies for v in victim_pool)
