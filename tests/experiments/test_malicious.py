"""Experiments under the malicious threat: one round, scored, and the table of protections."""
import pytest

from fastleak.errors import InvalidValueError
from fastleak.experiments import ExperimentSpec, run
from fastleak.experiments import RunOutcome
from fastleak.experiments.malicious import DEFAULT_PROTECTIONS, MaliciousOutcome, Protection, protection_table

SPEC = ExperimentSpec(threat="malicious", preset="imprint", model="lenet", dataset="mnist", batch=16, seed=2)


def test_fedsgd_recovers_exactly_the_samples_alone_in_their_bins():
    outcome = run(SPEC)
    assert isinstance(outcome, MaliciousOutcome) and isinstance(outcome, RunOutcome)
    assert outcome.scenario.model.block.bins.out_features == 32
    metrics = outcome.metrics()
    assert metrics["samples"] == 16 and metrics["false_images"] == 0
    assert metrics["recovered_fraction"] == metrics["singleton_fraction"] > 0.3
    assert metrics["recognisable_fraction"] >= metrics["recovered_fraction"]
    assert metrics["ln_acc"] == 1.0


def test_secure_aggregation_reveals_the_sum_and_the_server_sizes_its_block_for_all_clients():
    outcome = run(SPEC.replace(clients=3))
    assert outcome.scenario.model.block.bins.out_features == 2 * 16 * 3
    metrics = outcome.metrics()
    assert metrics["samples"] == 48 and metrics["recovered_fraction"] == metrics["singleton_fraction"] > 0.3


def test_the_table_shows_clipping_harmless_and_noise_destroying_exact_recovery():
    rows = protection_table(SPEC, (Protection("none"), Protection("clip", {"max_norm": 1e-3}),
                                   Protection("gaussian", {"sigma": 1e-3})))
    none, clip, noise = (row.metrics for row in rows)
    assert clip["recovered_fraction"] == none["recovered_fraction"] > 0
    assert noise["recovered_fraction"] == 0 and noise["false_images"] == 0
    assert [row.protection.label for row in rows] == ["none", "clip max_norm=0.001", "gaussian sigma=0.001"]


def test_protections_are_the_registered_defenses_with_their_parameters():
    with pytest.raises(InvalidValueError, match="protection must be one of none, clip, dp_sgd, gaussian, laplace, "
                                                "prune, quantize, secure_aggregation, topk"):
        Protection("noise")
    with pytest.raises(TypeError, match="defense 'secure_aggregation' does not accept k; accepted: clients"):
        Protection("secure_aggregation", {"k": 4})
    with pytest.raises(TypeError, match="defense 'dp_sgd': missing a required argument: 'sigma'"):
        Protection("dp_sgd", {"clip": 1.0})
    assert Protection("secure_aggregation", {"clients": 4}).applied_to(SPEC).clients == 4
    assert Protection("gaussian", {"sigma": 0.1}).applied_to(SPEC).defenses() == (("gaussian", {"sigma": 0.1}),)
    with pytest.raises(InvalidValueError, match="threat must be 'malicious'"):
        protection_table(ExperimentSpec(), (Protection("none"),))


def test_the_registry_decides_which_rows_apply_to_a_mode():
    fedavg = SPEC.replace(mode="fedavg")
    dp = Protection("dp_sgd", {"clip": 1.0, "sigma": 0.0})
    assert dp.applies_to(SPEC) and not dp.applies_to(fedavg)
    with pytest.raises(InvalidValueError, match=r"defense 'dp_sgd' applies to fedsgd only \(it clips the per-example "
                                                r"gradients of one FedSGD step\), not to mode 'fedavg'"):
        dp.applied_to(fedavg)
    left = [p for p in DEFAULT_PROTECTIONS if not p.applies_to(fedavg)]
    assert left and {p.defense for p in left} == {"dp_sgd"}


def test_a_fedavg_table_of_the_default_protections_leaves_out_the_rows_that_do_not_apply(monkeypatch):
    ran = []

    class Ran:
        def metrics(self):
            return {}

    monkeypatch.setattr("fastleak.experiments.malicious.run_malicious", lambda spec: ran.append(spec) or Ran())
    rows = protection_table(SPEC.replace(mode="fedavg"))
    assert [row.protection for row in rows] == [p for p in DEFAULT_PROTECTIONS if p.defense != "dp_sgd"]
    assert all(spec.mode == "fedavg" and spec.defense != "dp_sgd" for spec in ran)
    assert [spec.clients for spec in ran][-2:] == [4, 8]


def test_the_server_needs_public_data_from_the_other_split():
    with pytest.raises(ValueError, match="public data, the 'train' split of 'cifar10'"):
        run(SPEC.replace(dataset="cifar10"))
