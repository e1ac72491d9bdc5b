import pytest
import torch
from torch import nn

import fastleak
from fastleak import data, federated, models
from fastleak.errors import InvalidValueError
from fastleak.metrics import evaluate

EXACT_DB = 60.0


def psnrs(result, x):
    return evaluate(result.images, x).psnr_per_image


def test_one_sample_is_read_exactly_off_an_mlps_first_layer():
    x, y = data.load("cifar10", 1, seed=0)
    model = models.build("mlp", 10, hidden=(64, 32))
    res = fastleak.attack(federated.fedsgd(model, x, y), model, "analytic")
    assert min(psnrs(res, x)) >= EXACT_DB and torch.equal(res.labels, y)
    assert res.restart_losses[0] < 1e-5 and res.iterations == 0 and res.config.name == "analytic"


def test_a_normalisation_in_front_of_the_first_layer_is_undone():
    x, y = data.load("cifar10", 1, seed=1)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = models.build("mlp", 10, hidden=(32,))

        def forward(self, images):
            return self.net((images - mean) / std)

    model = Normalised()
    res = fastleak.attack(federated.fedsgd(model, x, y), model, "analytic")
    assert min(psnrs(res, x)) >= EXACT_DB


def test_softmax_regression_reads_every_unique_label_sample():
    x, y = data.load("cifar100", 8, seed=0, labels="unique")
    model = models.build("mlp", 100, hidden=())
    obs = federated.fedsgd(model, x, y)
    res = fastleak.attack(obs, model, "analytic", labels=y)
    assert min(psnrs(res, x)) >= EXACT_DB
    torch.testing.assert_close(res.images, x, atol=1e-4, rtol=0)  # in label order, not only after matching
    unrefined = fastleak.attack(obs, model, "analytic", labels=y, refine_steps=0)
    assert max(psnrs(unrefined, x)) < EXACT_DB  # the rows' ratios alone mix the other samples in


def test_a_batch_through_hidden_layers_gives_the_samples_rows_certify():
    x, y = data.load("cifar10", 4, seed=0, labels="unique")
    model = models.build("mlp", 10, hidden=(256,))
    res = fastleak.attack(federated.fedsgd(model, x, y), model, "analytic", labels=y)
    assert min(psnrs(res, x)) >= EXACT_DB
    assert res.restart_losses[0] < 1e-5  # the labels follow the images: the gradient is reproduced


def test_many_observations_at_once_agree_with_one_at_a_time():
    model = models.build("mlp", 10, hidden=(32,))
    batches = [data.load("cifar10", 1, seed=s) for s in range(3)]
    observations = [federated.fedsgd(model, x, y) for x, y in batches]
    many = fastleak.attack_many(observations, model, "analytic")
    for (x, _), res, obs in zip(batches, many, observations):
        assert min(psnrs(res, x)) >= EXACT_DB
        torch.testing.assert_close(res.images, fastleak.attack(obs, model, "analytic").images)


def test_models_it_does_not_apply_to_are_refused_by_name():
    x, y = data.load("cifar10", 1, seed=0)
    lenet = models.build("lenet", 10)
    with pytest.raises(InvalidValueError, match=r"first layer is 'body.0' \(Conv2d\)"):
        fastleak.attack(federated.fedsgd(lenet, x, y), lenet, "analytic")
    no_bias = nn.Sequential(nn.Flatten(), nn.Linear(3072, 16, bias=False), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(InvalidValueError, match="needs the bias gradient of the layer that reads the input, '1'"):
        fastleak.attack(federated.fedsgd(no_bias, x, y), no_bias, "analytic")
