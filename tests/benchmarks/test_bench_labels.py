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


def test_dirichlet_batches_are_seeded_and_concentrated():
    from benchmarks.bench_labels import draw_labels

    x, y = draw_labels("mnist", 32, "dirichlet:0.5", 3)
    again = draw_labels("mnist", 32, "dirichlet:0.5", 3)[1]
    assert x.shape == (32, 1, 28, 28) and torch.equal(y, again)
    assert int((torch.bincount(y, minlength=10) > 0).sum()) < 10


def test_guess_and_set_oracle_columns():
    from benchmarks.bench_labels import score
    import fastleak.labels as L

    truth = torch.tensor([4, 4, 0, 0])
    even = L.largest_remainder(torch.full((1, 4), 2.0, dtype=torch.float64), torch.tensor([8]))[0]
    assert score([even], [truth])["LnAcc"] == 0.0
    split = L.largest_remainder((8 * (truth > 0).double() / 2)[None], torch.tensor([8]))[0]
    assert score([split], [truth])["LnAcc"] == 1.0


def test_label_summary_with_public_data_columns():
    from benchmarks import trained_grid

    main = {"trained": {}, "cells": [{"model": "lenet", "state": "round20", "protocol": "fedsgd", "batch": 8,
                                      "pattern": "random", "result": {"auto": {"LnAcc": 0.1},
                                                                      "auto+public": {"LnAcc": 0.5},
                                                                      "uniform": {"LnAcc": 0.3},
                                                                      "frequency": {"LnAcc": 0.4}}}]}
    rerun = {"trained": {}, "cells": [{**main["cells"][0], "result": {"auto": {"LnAcc": 0.45},
                                                                       "set_oracle": {"LnAcc": 0.6}}}]}
    lines = trained_grid.label_summary([main, rerun]).splitlines()
    assert lines[2] == "| lenet | 20 | fedsgd | 0.50 / 0.45 / 0.40 / 0.60 |"
