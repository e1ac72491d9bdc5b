import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, PRIORS, Prior, attack, prior
from fastleak.attacks.presets import resolve
from fastleak.attacks.priors import active, merge_priors
from fastleak.attacks.problem import Problem
from fastleak.errors import InvalidValueError
from fastleak.federated import fedsgd
from fastleak.ops import total_variation

USER = "tests.attacks.user_priors"


@pytest.fixture(scope="module")
def case():
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("convnet", 10, seed=0, width=8).train()
    return model, fedsgd(model, x, y), y


@pytest.fixture(scope="module")
def problem(case):
    model, obs, y = case
    config = PRESETS.get("inverting").replace(iterations=4, priors={
        "bn": {"weight": 1e-3}, "tv": {"weight": 0.02}, "l2": {"weight": 1e-4},
        "group": {"weight": 0.01, "every": 1, "start": 0.0}})
    problem = Problem(model, [obs], config, 3, [y], 0, torch.device("cpu"))
    problem.prior("group").update_consensus(problem.init_images(), problem)
    return problem


def test_the_shipped_priors_are_registered_classes():
    assert {"bn", "tv", "l2", "group"} <= set(PRIORS.names())
    assert all(issubclass(PRIORS.get(name), Prior) and PRIORS.get(name).name == name for name in PRIORS)


def test_a_preset_lists_its_priors_with_every_parameter():
    assert PRESETS.get("inverting").priors == {"tv": {"weight": 0.05}}
    group = PRESETS.get("gradinversion").priors["group"]
    assert group == {"weight": 0.3, "every": 100, "start": 0.25, "registration": "affine"}
    assert list(PRESETS.get("gradinversion").priors) == ["bn", "tv_power", "group"]


def test_only_priors_with_a_nonzero_weight_take_part():
    config = PRESETS.get("inverting").replace(tv=0.5, l2=0.0)
    names, used = active(config.priors)
    assert names == ["tv"] and [(p.name, p.weight) for p in used] == [("tv", 0.5)]
    assert active(config.replace(tv=0.0).priors) == ([], [])


def test_earlier_option_names_set_prior_parameters():
    config = PRESETS.get("inverting").replace(tv=1e-4, group=0.2, group_every=7, group_start=0.5,
                                               registration="translation")
    assert config.priors["tv"] == {"weight": 1e-4}
    assert config.priors["group"] == {"weight": 0.2, "every": 7, "start": 0.5, "registration": "translation"}
    assert config.prior_weight("tv") == 1e-4 and config.prior_weight("bn") == 0.0


def test_priors_merge_parameter_by_parameter():
    merged = merge_priors({"group": {"weight": 0.1, "every": 5}}, {"group": {"every": 9}, "tv": {"weight": 1}})
    assert merged == {"group": {"weight": 0.1, "every": 9}, "tv": {"weight": 1}}
    config = resolve("gradinversion", priors={"group": {"weight": 0.5}, "tv": {"weight": 0.0}})
    assert config.priors["group"]["weight"] == 0.5 and config.priors["group"]["every"] == 100
    assert config.priors["tv"] == {"weight": 0.0}


@pytest.mark.parametrize("priors, message", [
    ({"tv": {"weight": -1.0}}, r"prior tv: weight must be a finite number >= 0 \(0 disables the prior\), got -1.0"),
    ({"tv": {"weight": "big"}}, "prior tv option weight must be float, got 'big'"),
    ({"tv": {"wieght": 1.0}}, r"unknown prior tv option\(s\) \['wieght'\]"),
    ({"group": {"every": 0}}, "prior group: every must be a positive int, got 0"),
    ({"group": {"start": 1.5}}, r"prior group: start must be a fraction of the run in \[0, 1\], got 1.5"),
    ({"group": {"registration": "rigid"}}, "prior group: registration must be 'affine' or 'translation'"),
    ({"sharpness": {"weight": 1.0}}, "unknown prior 'sharpness'; valid names: bn, features, group, l2, norm, task, tv, tv_power"),
    ({"nowhere.to.be.found": {}}, "prior 'nowhere.to.be.found': module 'nowhere.to.be' cannot be imported"),
    ({"tests.attacks.test_priors.sharpness": {}}, "module 'tests.attacks.test_priors' registers no prior"),
    ({"tv": 0.5}, "prior 'tv' takes a mapping of parameters, got 0.5"),
])
def test_bad_prior_parameters_are_named(priors, message):
    with pytest.raises(InvalidValueError, match=message):
        PRESETS.get("inverting").replace(priors=priors)


def test_a_name_is_registered_once():
    with pytest.raises(InvalidValueError, match="prior 'tv' is already registered"):
        prior("tv")(type("Again", (Prior,), {}))
    with pytest.raises(InvalidValueError, match="must be a subclass of fastleak.attacks.priors.Prior"):
        prior("plain")(type("Plain", (), {}))


def test_the_objective_is_the_distance_plus_each_weighted_term_in_order(problem):
    x = problem.init_images()
    y = problem.hard_labels
    sim, target = problem.sims[0], problem.targets[0]
    weights = {name: params["weight"] for name, params in problem.config.priors.items()}
    want = x.new_zeros(problem.Q) + problem.distance(sim.shared(x, y), target)
    want = want + weights["bn"] * sim.tapped[0]
    want = want + weights["tv"] * total_variation(x.flatten(0, 1), p=1).view(problem.Q, problem.B).mean(1)
    want = want + weights["l2"] * x.pow(2).flatten(1).mean(1)
    want = want + weights["group"] * problem.prior("group").term(x, problem)
    assert torch.equal(problem.objective(x, None), want)


def test_a_prior_from_a_users_module_is_what_the_objective_adds(case):
    model, obs, y = case
    config = PRESETS.get("inverting").replace(priors={f"{USER}.brightness": {"weight": 0.25, "target": 0.2}})
    fresh = Problem(model, [obs], config, 3, [y], 0, torch.device("cpu"))
    x = fresh.init_images()
    distance = x.new_zeros(fresh.Q) + fresh.distance(fresh.sims[0].shared(x, fresh.hard_labels), fresh.targets[0])
    term = (x.flatten(1).mean(1) - 0.2).pow(2)
    assert torch.equal(fresh.objective(x, None), distance + 0.25 * term)


def test_a_tap_measures_the_simulated_forward_pass(case):
    model, obs, y = case
    config = PRESETS.get("inverting").replace(priors={f"{USER}.activation": {"weight": 1.0}})
    fresh = Problem(model, [obs], config, 2, [y], 0, torch.device("cpu"))
    x = fresh.init_images()
    fresh.objective(x, None)
    inputs = []
    handles = [m.register_forward_pre_hook(lambda m, i: inputs.append(i[0].pow(2).mean()))
               for m in model.modules() if type(m).__name__ == "ReLU"]
    try:
        model.train(obs.bn_train)
        model(x[1])
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(fresh.tapped("activation")[1], torch.stack(inputs).sum(), rtol=1e-5, atol=0)


def test_an_attack_runs_with_a_users_prior(case):
    model, obs, y = case
    result = attack(obs, model, "inverting", labels=y, restarts=1, iterations=3,
                    priors={f"{USER}.brightness": {"weight": 1.0}})
    assert result.config.priors[f"{USER}.brightness"] == {"weight": 1.0, "target": 0.5}
    assert torch.isfinite(result.restart_losses).all()


def test_the_group_term_waits_for_a_consensus_and_keeps_its_state(problem):
    group = problem.prior("group")
    fresh = type(group)(**group.params())
    assert fresh.term(problem.init_images(), problem) is None
    fresh.load_state_dict(group.state_dict())
    assert torch.equal(fresh.center, group.center) and torch.equal(fresh.theta, group.theta)
    assert not fresh.capturable(problem)
