import pytest
import torch

from fastleak.attacks import PRESETS
from fastleak.experiments import ExperimentSpec, attack_iterations, run, simulate


@pytest.mark.parametrize("mode, kind, pairs", [("fedsgd", "gradient", 1), ("fedavg", "update", 1),
                                               ("multi-pair", "gradient", 3)])
def test_simulate_builds_the_requested_observation(mode, kind, pairs):
    spec = ExperimentSpec(model="lenet", batch=2, mode=mode, pairs=3, local_steps=2)
    scenario = simulate(spec)
    assert scenario.observation.kind == kind and scenario.observation.num_pairs == pairs
    assert scenario.images.shape == (2, 3, 32, 32) and scenario.labels.shape == (2,)


def test_defense_is_applied_to_the_observation():
    plain = simulate(ExperimentSpec(model="lenet", batch=2))
    pruned = simulate(ExperimentSpec(model="lenet", batch=2, defense="prune", defense_params={"ratio": 0.9}))
    zeros = sum(int((t == 0).sum()) for t in pruned.observation.pairs[0].shared)
    total = sum(t.numel() for t in pruned.observation.pairs[0].shared)
    assert zeros >= 0.89 * total
    assert not torch.equal(plain.observation.pairs[0].shared[0], pruned.observation.pairs[0].shared[0])


def test_run_recovers_labels_and_scores_the_reconstruction():
    spec = ExperimentSpec(model="lenet", batch=2, labels="unique", restarts=2, iterations=5)
    outcome = run(spec)
    assert outcome.evaluation.labels.exact
    assert sorted(outcome.result.labels.tolist()) == sorted(outcome.scenario.labels.tolist())
    assert len(outcome.evaluation.psnr_per_image) == 2
    metrics = outcome.metrics()
    assert metrics["psnr"] == outcome.evaluation.psnr and metrics["iterations"] == 5 and metrics["exact"] is True
    assert attack_iterations(spec) == 5
    assert attack_iterations(spec.replace(iterations=None)) == PRESETS.get("inverting").iterations
    assert attack_iterations(ExperimentSpec(threat="malicious", preset="imprint")) is None


def test_spec_rejects_unknown_and_invalid_options():
    with pytest.raises(ValueError, match="unknown experiment option"):
        ExperimentSpec.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="mode must be one of"):
        ExperimentSpec(mode="fedprox")
    with pytest.raises(ValueError, match="batch must be a positive int, got 0"):
        ExperimentSpec(batch=0)


@pytest.mark.parametrize("client_bn, bn_train", [("train", True), ("eval", False)])
def test_client_bn_sets_how_the_client_runs_batchnorm(client_bn, bn_train):
    spec = ExperimentSpec(model="plainconv", model_options={"width": 4, "depth": 1}, batch=2, client_bn=client_bn)
    scenario = simulate(spec)
    assert scenario.observation.bn_train is bn_train
    assert scenario.model.training is bn_train
    other = simulate(spec.replace(client_bn="eval" if bn_train else "train"))
    assert not torch.allclose(scenario.observation.pairs[0].shared[0], other.observation.pairs[0].shared[0])


def test_spec_rejects_an_unknown_client_bn():
    with pytest.raises(ValueError, match="client_bn must be 'train' or 'eval', got 'frozen'"):
        ExperimentSpec(client_bn="frozen")


def test_secure_aggregation_draws_a_batch_per_client_and_shows_the_server_their_mean():
    spec = ExperimentSpec(model="lenet", batch=2, clients=3, labels="random")
    scenario = simulate(spec)
    assert scenario.images.shape[0] == 6 and scenario.observation.num_samples == 6
    assert scenario.observation.meta["defenses"][-1] == {"name": "secure_aggregation", "clients": 3}
    single = simulate(spec.replace(clients=1))
    assert not torch.equal(single.observation.pairs[0].shared[0], scenario.observation.pairs[0].shared[0])


def test_dp_sgd_is_a_defense_of_the_spec():
    plain = simulate(ExperimentSpec(model="lenet", batch=2, client_bn="eval"))
    clipped = simulate(ExperimentSpec(model="lenet", batch=2, client_bn="eval", defense="dp_sgd",
                                      defense_params={"clip": 1e-3, "sigma": 0.0}))
    assert clipped.observation.meta["defenses"] == ({"name": "dp_sgd", "clip": 1e-3, "sigma": 0.0, "seed": 0},)
    norm = torch.sqrt(sum(t.double().pow(2).sum() for t in clipped.observation.pairs[0].shared))
    assert norm <= 1e-3 * (1 + 1e-6)
    assert torch.sqrt(sum(t.double().pow(2).sum() for t in plain.observation.pairs[0].shared)) > 1e-2


@pytest.mark.parametrize("changes, message", [
    ({"threat": "curious"}, "threat must be one of honest, malicious"),
    ({"clients": 0}, "clients must be a positive int"),
    ({"clients": 2, "mode": "fedavg"}, "needs mode 'fedsgd' under the honest threat"),
    ({"defense": "dp_sgd", "mode": "fedavg", "defense_params": {"clip": 1.0, "sigma": 0.0}},
     r"defense 'dp_sgd' applies to fedsgd only \(it clips the per-example gradients of one FedSGD step\)"),
    ({"defense": "secure_aggregation"}, "got 'secure_aggregation'; secure_aggregation is set by clients=K"),
    ({"defense": "blur"}, "defense must be one of clip, dp_sgd, gaussian"),
    ({"defense": "gaussian", "defense_params": {"sigmaa": 1}}, "defense 'gaussian' does not accept sigmaa"),
    ({"local_lr": 0}, "local_lr must be a positive finite number, got 0"),
    ({"iterations": 0}, "iterations must be a positive int or None, got 0"),
    ({"threat": "malicious"}, "preset must be one of imprint, imprint_pca, trap under the malicious threat, got 'inverting'"),
    ({"threat": "malicious", "preset": "imprint", "mode": "multi-pair"}, "mode must be fedsgd or fedavg"),
])
def test_spec_checks_the_threat_and_its_defenses(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ExperimentSpec(**changes)
