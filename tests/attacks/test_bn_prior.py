import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS
from fastleak.attacks.execution import Execution
from fastleak.attacks.problem import Problem
from fastleak.federated import fedsgd


def bn_term(model, x, y, images):
    config = PRESETS.get("inverting").replace(search={}, priors={"bn": {"weight": 1.0}})
    problem = Problem(model, [fedsgd(model, x, y)], config, images.shape[0], [y], 0, torch.device("cpu"), Execution())
    problem.objective(images, None)
    return problem.prior("bn").term(images, problem).detach()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bn_prior_skips_running_statistics_no_batch_has_updated(mode):
    x, y = data.load("cifar10", 4, seed=0, labels="random")
    model = models.build("convnet", 10, seed=0, width=8).train(mode == "train")
    noise = torch.rand(2, *x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bn_term(model, x, y, noise), torch.zeros(2))  # an untrained model's 0 and 1
    more, _ = data.load("cifar10", 64, seed=1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: one pass sets the statistics of the batch
    with torch.no_grad():  # the running statistics of real images
        model.train()(more)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    model.train(mode == "train")
    truth, away = bn_term(model, x, y, x.expand(2, *x.shape)), bn_term(model, x, y, noise)
    assert bool((away > 0).all()) and bool((truth < away).all())
