import copy

import pytest
import torch
import torch.nn.functional as F

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, attack
from fastleak.attacks.execution import Execution
from fastleak.attacks.forward_priors import forward
from fastleak.attacks.problem import Problem
from fastleak.federated import fedsgd


def problem_for(model, x, y, priors, restarts=2, labels=True):
    obs = fedsgd(model, x, y)
    config = PRESETS.get("inverting").replace(search={}, priors=priors)
    return Problem(model, [obs], config, restarts, [y] if labels else None, 0, torch.device("cpu"), Execution())


@pytest.fixture(scope="module")
def convnet():
    x, y = data.load("cifar10", 3, seed=2, labels="unique")
    return models.build("convnet", 10, seed=0, width=8), x, y


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("threads", [1, 2])
def test_forward_gives_the_models_classifier_inputs_and_logits(convnet, mode, threads):
    model, x, y = convnet
    model = copy.deepcopy(model).train(mode == "train")  # a train-mode forward updates the running statistics
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # one thread: the dummy batches one after another; two: vmapped
    try:
        problem = problem_for(model, x, y, {"features": {"weight": 1.0}})
        images = torch.stack([x, x.flip(0)])
        features, logits = forward(problem, images)
    finally:
        torch.set_num_threads(before)
    for q in range(2):
        expected = model.body(images[q])
        torch.testing.assert_close(features[q], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits[q], model.fc(expected), rtol=1e-5, atol=1e-5)


def test_features_prior_is_zero_at_the_true_image_of_a_single_sample():
    x, y = data.load("cifar10", 1, seed=0)
    model = models.build("lenet", 10, seed=0).eval()
    problem = problem_for(model, x, y, {"features": {"weight": 1.0}})
    term = problem.prior("features").term
    truth = term(x.expand(2, *x.shape), problem)
    noise = term(problem.init_images(), problem)
    # one sample: dW[y] / db[y] is exactly its classifier input
    assert float(truth.max()) < 1e-8 * float(noise.min()) and bool((noise > 0).all())


def test_features_prior_reads_each_label_its_own_row(convnet):
    model, x, y = convnet
    model = copy.deepcopy(model).eval()
    problem = problem_for(model, x, y, {"features": {"weight": 1.0}})
    target = problem.prior("features").target(problem)
    weight, bias = problem.targets[0][-2], problem.targets[0][-1]
    for b in range(3):
        torch.testing.assert_close(target[0, b], weight[0, y[b]] / bias[0, y[b]])


def test_task_prior_is_the_clients_cross_entropy(convnet):
    model, x, y = convnet
    model = copy.deepcopy(model).train()
    problem = problem_for(model, x, y, {"task": {"weight": 1.0}})
    images = problem.init_images()
    term = problem.prior("task").term(images, problem).detach()
    with torch.no_grad():
        expected = [float(F.cross_entropy(model(images[q]), y)) for q in range(2)]
    assert term.tolist() == pytest.approx(expected, rel=1e-5)


def test_forward_priors_need_fixed_labels(convnet):
    model, x, y = convnet
    with pytest.raises(ValueError, match="prior features needs fixed labels"):
        problem_for(model, x, y, {"features": {"weight": 1.0}}, labels=False)
    obs = fedsgd(model, x, y)
    with pytest.raises(ValueError, match="prior task needs fixed labels"):
        attack(obs, model, "wei", labels="optimize", iterations=1, lbfgs_inner=1)
