import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS
from fastleak.attacks.priors import PRIORS, prior, weighted_priors
from fastleak.attacks.problem import Problem
from fastleak.errors import InvalidValueError
from fastleak.federated import fedsgd
from fastleak.ops import total_variation


@pytest.fixture(scope="module")
def case():
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("convnet", 10, seed=0, width=8).train()
    return model, fedsgd(model, x, y), y


@pytest.fixture(scope="module")
def problem(case):
    model, obs, y = case
    config = PRESETS.get("gradinversion").replace(iterations=4, group_every=1, group_start=0.0)
    problem = Problem(model, [obs], config, 3, [y], 0, torch.device("cpu"))
    problem.update_consensus(problem.init_images())
    return problem


def test_priors_are_registered_in_the_order_the_objective_adds_them():
    assert list(PRIORS) == ["bn", "tv", "l2", "group"]


def test_only_priors_with_a_nonzero_weight_take_part():
    config = PRESETS.get("inverting").replace(tv=0.5, l2=0.0, bn=0.0, group=0.0)
    assert weighted_priors(config) == ((0.5, PRIORS["tv"]),)
    assert weighted_priors(config.replace(tv=0.0)) == ()


def test_a_name_is_registered_once():
    with pytest.raises(InvalidValueError, match="prior 'tv' is already registered"):
        prior("tv")(lambda x, problem: x)


def test_the_objective_is_the_distance_plus_each_weighted_term(problem):
    x = problem.init_images()
    y = problem.hard_labels
    sim, target = problem.sims[0], problem.targets[0]
    cfg = problem.config
    want = x.new_zeros(problem.Q) + problem.distance(sim.shared(x, y), target)
    want = want + cfg.bn * sim.bn_loss
    want = want + cfg.tv * total_variation(x.flatten(0, 1), p=1).view(problem.Q, problem.B).mean(1)
    want = want + cfg.l2 * x.pow(2).flatten(1).mean(1)
    want = want + cfg.group * PRIORS["group"](x, problem)
    assert torch.equal(problem.objective(x, None), want)


def test_a_registered_term_is_what_the_objective_adds(case, monkeypatch):
    model, obs, y = case
    seen = []

    def constant(images, owner):
        seen.append(owner)
        return images.new_full((images.shape[0],), 2.0)

    monkeypatch.setitem(PRIORS, "tv", constant)
    config = PRESETS.get("inverting").replace(tv=0.25)
    fresh = Problem(model, [obs], config, 3, [y], 0, torch.device("cpu"))
    x = fresh.init_images()
    distance = x.new_zeros(fresh.Q) + fresh.distance(fresh.sims[0].shared(x, fresh.hard_labels), fresh.targets[0])
    assert torch.equal(fresh.objective(x, None), distance + 0.25 * x.new_full((3,), 2.0))
    assert seen == [fresh]


def test_the_group_term_waits_for_a_consensus(problem):
    fresh = Problem.__new__(Problem)
    fresh.__dict__.update(problem.__dict__, center=None, theta=None)
    assert PRIORS["group"](problem.init_images(), fresh) is None
