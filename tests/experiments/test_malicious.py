"""Experiments under the malicious threat: one round, scored, and the table of protections."""
import pytest

from fastleak.errors import InvalidValueError
from fastleak.experiments import ExperimentSpec, run
from fastleak.experiments.malicious import (MaliciousOutcome, Protection, outcome_metrics, protection_table,
                                            protections_from)

SPEC = ExperimentSpec(threat="malicious", preset="imprint", model="lenet", dataset="mnist", batch=16, seed=2)


def test_fedsgd_recovers_exactly_the_samples_alone_in_their_bins():
    outcome = run(SPEC)
    assert isinstance(outcome, MaliciousOutcome)
    assert outcome.scenario.model.block.bins.out_features == 32
    metrics = outcome_metrics(outcome)
    assert metrics["samples"] == 16 and metrics["false_images"] == 0
    assert metrics["recovered_fraction"] == metrics["singleton_fraction"] > 0.3
    assert metrics["recognisable_fraction"] >= metrics["recovered_fraction"]
    assert metrics["ln_acc"] == 1.0


def test_secure_aggregation_reveals_the_sum_and_the_server_sizes_its_block_for_all_clients():
    outcome = run(SPEC.replace(clients=3))
    assert outcome.scenario.model.block.bins.out_features == 2 * 16 * 3
    metrics = outcome_metrics(outcome)
    assert metrics["samples"] == 48 and metrics["recovered_fraction"] == metrics["singleton_fraction"] > 0.3


def test_the_table_shows_clipping_harmless_and_noise_destroying_exact_recovery():
    rows = protection_table(SPEC, (Protection("none"), Protection("clip", {"max_norm": 1e-3}),
                                   Protection("gaussian", {"sigma": 1e-3})))
    none, clip, noise = (row.metrics for row in rows)
    assert clip["recovered_fraction"] == none["recovered_fraction"] > 0
    assert noise["recovered_fraction"] == 0 and noise["false_images"] == 0
    assert [row.protection.label for row in rows] == ["none", "clip max_norm=0.001", "gaussian sigma=0.001"]


def test_protections_parse_from_text_and_check_their_names():
    assert protections_from(["none", "dp_sgd:clip=1,sigma=0.5", "secure_aggregation:clients=4"]) == (
        Protection("none"), Protection("dp_sgd", {"clip": 1, "sigma": 0.5}),
        Protection("secure_aggregation", {"clients": 4}))
    with pytest.raises(InvalidValueError, match="protection must be one of none, dp_sgd, secure_aggregation"):
        Protection("noise")
    with pytest.raises(InvalidValueError, match="clients=K"):
        Protection("secure_aggregation", {"k": 4})
    with pytest.raises(InvalidValueError, match="NAME:KEY=VALUE"):
        protections_from(["gaussian:sigma"])
    with pytest.raises(InvalidValueError, match="the dp_sgd row needs mode 'fedsgd'"):
        protection_table(SPEC.replace(mode="fedavg"), (Protection("dp_sgd", {"clip": 1.0, "sigma": 0.0}),))
    with pytest.raises(InvalidValueError, match="threat must be 'malicious'"):
        protection_table(ExperimentSpec(), (Protection("none"),))


def test_the_server_needs_public_data_from_the_other_split():
    with pytest.raises(ValueError, match="public data, the 'train' split of 'cifar10'"):
        run(SPEC.replace(dataset="cifar10"))
