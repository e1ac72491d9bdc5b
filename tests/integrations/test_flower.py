"""The Flower auditing strategy: one real simulation (Ray backend) for the module, plus rounds driven
in-process through real Flower clients for the wrapper's own behaviour."""
import json
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr")

from flwr.common import Code, DisconnectRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.simulation import run_simulation

from fastleak import labels
from fastleak.data import load
from fastleak.federated import fedavg, trainable_names
from fastleak.federated import load as load_observation
from fastleak.integrations.flower import (AuditConfig, AuditStrategy, RecipeClient, TrainingRecipe, client_app,
                                          get_weights, set_weights, state_from_arrays)
from fastleak.models import build

# Untrained LeNet, 4 images per client, two local steps of 2 images with a small learning rate:
# a setting where label recovery from the update is exact.
RECIPE = TrainingRecipe(local_steps=2, lr=0.001, batch_size=2)


def client_batches():
    return [load("cifar10", 4, seed=1, labels="unique"), load("cifar10", 4, seed=2, labels="repeat:2")]


def fedavg_strategy(model, **kw):
    return FedAvg(initial_parameters=ndarrays_to_parameters(get_weights(model)), min_fit_clients=2,
                  min_available_clients=2, **kw)


def expected_update(model, x, y, recipe=RECIPE):
    return fedavg(model, x, y, local_steps=recipe.local_steps, lr=recipe.lr, batch_size=recipe.batch_size)


def assert_same_update(obs, expected, start):
    """The client's optimizer and fastleak's fedavg round W - lr * g differently, and the client's
    process may sum the gradients in another order (its own thread count), so W_after may differ by
    rounding at the scale of the weights themselves: several float32 ulps of max |W|. (A BatchNorm
    bias starts at 0, so there that scale is the update's own.)"""
    for name, got, want in zip(obs.param_names, obs.pairs[0].shared, expected.pairs[0].shared):
        atol = 16 * torch.finfo(torch.float32).eps * (start[name].abs() + want.abs()).max().item()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=atol)


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    model = build("lenet", 10, seed=0)
    batches = client_batches()
    out = tmp_path_factory.mktemp("flower_audit")
    audit = AuditConfig(labels="auto", attack="inverting", iterations=4, attack_options={"fedavg_mode": "pseudo"})
    with AuditStrategy(fedavg_strategy(model, fraction_evaluate=0.0), model=model, recipe=RECIPE, out_dir=out,
                       audit=audit) as strategy:
        server = ServerApp(server_fn=lambda context: ServerAppComponents(strategy=strategy,
                                                                         config=ServerConfig(num_rounds=1)))
        run_simulation(server_app=server, client_app=client_app(model, batches, RECIPE), num_supernodes=2,
                       backend_config={"client_resources": {"num_cpus": 1}})
    round_dir = out / "round_001"
    index = json.loads((round_dir / "index.json").read_text())
    partition = {c["cid"]: c["metrics"]["partition_id"] for c in index["clients"]}
    return SimpleNamespace(model=model, batches=batches, round_dir=round_dir, index=index, partition=partition,
                           leakage=json.loads((round_dir / "leakage.json").read_text()))


def recorded_observations(sim):
    """(partition id, observation) of every recorded client, loaded and checked against the model."""
    out = []
    for client in sim.index["clients"]:
        assert client["status"] == "recorded", client
        out.append((sim.partition[client["cid"]], load_observation(sim.round_dir / client["file"], sim.model)))
    return sorted(out, key=lambda item: item[0])


@pytest.mark.slow
def test_simulation_records_every_client_as_a_loadable_observation(simulation):
    assert sorted(simulation.partition.values()) == [0, 1]
    assert simulation.index["failures"] == []
    observations = recorded_observations(simulation)
    assert len(observations) == 2
    for k, obs in observations:
        assert obs.kind == "update" and obs.num_pairs == 1
        assert obs.num_samples == 4
        assert (obs.local_steps, obs.local_lr, obs.local_batch_size) == (2, 0.001, 2)
        assert obs.input_shape == (3, 32, 32) and obs.num_classes == 10
        assert obs.param_names == trainable_names(simulation.model)
        assert obs.meta["flower"]["round"] == 1 and obs.meta["flower"]["metrics"] == {"partition_id": k}


@pytest.mark.slow
def test_recorded_update_is_what_the_client_computed(simulation):
    start = simulation.model.state_dict()
    for k, obs in recorded_observations(simulation):
        x, y = simulation.batches[k]
        expected = expected_update(simulation.model, x, y)
        state = obs.pairs[0].state
        assert set(state) == set(start)
        for name, value in start.items():
            assert torch.equal(state[name], value), name
        assert all(u.abs().max() > 1e-4 for u in expected.pairs[0].shared[-2:])
        assert_same_update(obs, expected, start)


@pytest.mark.slow
def test_server_recovers_each_clients_labels(simulation):
    by_cid = {c["cid"]: c for c in simulation.leakage["clients"]}
    for k, obs in recorded_observations(simulation):
        truth = sorted(simulation.batches[k][1].tolist())
        assert labels.recover(obs, simulation.model).tolist() == truth
        cid = obs.meta["flower"]["cid"]
        assert by_cid[cid]["labels"]["recovered"] == truth


@pytest.mark.slow
def test_background_attack_writes_reconstructions_and_grid(simulation):
    recs = torch.load(simulation.round_dir / "reconstructions.pt", weights_only=True)
    assert recs["round"] == 1 and set(recs["clients"]) == set(simulation.partition)
    for client in simulation.leakage["clients"]:
        assert np.isfinite(client["attack"]["loss"]) and client["attack"]["iterations"] == 4
        assert client["attack"]["labels"] == client["labels"]["recovered"]
        assert client["attack"]["label_method"] == client["labels"]["method"] == "geng_shift"
        images = recs["clients"][client["cid"]]["images"]
        assert images.shape == (4, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert simulation.leakage["attack"]["fedavg_mode"] == "pseudo"
    assert (simulation.round_dir / "reconstructions.png").stat().st_size > 0


# Rounds driven in this process through real Flower clients.

class LocalProxy(ClientProxy):
    """Hands the server's instructions to a Flower client living in this process."""

    def __init__(self, cid, client):
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins, timeout, group_id):
        return self.client.get_properties(ins)

    def get_parameters(self, ins, timeout, group_id):
        return self.client.get_parameters(ins)

    def fit(self, ins, timeout, group_id):
        return self.client.fit(ins)

    def evaluate(self, ins, timeout, group_id):
        return self.client.evaluate(ins)

    def reconnect(self, ins, timeout, group_id):
        return DisconnectRes(reason="")


def clients(model, batches=None, recipe=RECIPE):
    manager = SimpleClientManager()
    for k, (x, y) in enumerate(batches or client_batches()):
        client = RecipeClient(build(model.fastleak_spec.name, 10, seed=99, **dict(model.fastleak_spec.options)), x, y,
                              recipe, metrics={"partition_id": k})
        manager.register(LocalProxy(f"node-{k}", client.to_client()))
    return manager


def fit_round(strategy, manager, server_round=1, parameters=None):
    parameters = parameters if parameters is not None else strategy.initialize_parameters(manager)
    instructions = strategy.configure_fit(server_round, parameters, manager)
    return instructions, [(proxy, proxy.fit(ins, None, server_round)) for proxy, ins in instructions]


def test_import_fastleak_works_without_flower():
    code = ("import sys; sys.modules['flwr'] = None\n"
            "import fastleak, fastleak.federated, fastleak.integrations\n"
            "try:\n    import fastleak.integrations.flower\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'fastleak[flower]'" in out.stdout


def test_weights_round_trip_keeps_buffers_and_dtypes():
    model = build("convnet", 10, seed=0, width=8)
    model.train()
    with torch.no_grad():
        model(load("cifar10", 4, seed=1)[0])
    arrays = get_weights(model)
    assert len(arrays) == len(model.state_dict())
    other = build("convnet", 10, seed=5, width=8)
    set_weights(other, arrays)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert int(other.state_dict()["body.bn0.num_batches_tracked"]) == 1


def test_weights_that_do_not_fit_the_model_are_refused_with_the_source_named():
    model = build("lenet", 10)
    arrays = get_weights(model)
    with pytest.raises(ValueError, match=r"client 7: 7 arrays, but the model's state_dict has 8 entries"):
        state_from_arrays(model, arrays[:-1], source="client 7")
    arrays[-2] = np.zeros((5, 768), dtype=np.float32)
    with pytest.raises(ValueError, match=r"array 6 \('fc.weight'\) has shape \(5, 768\).*\(10, 768\)"):
        set_weights(model, arrays)


def test_every_strategy_method_is_delegated(tmp_path):
    model = build("lenet", 10, seed=0)

    def evaluate_fn(server_round, arrays, config):
        return float(sum(a.sum() for a in arrays)), {"round": server_round}

    inner, twin = (fedavg_strategy(model, evaluate_fn=evaluate_fn) for _ in range(2))
    strategy = AuditStrategy(inner, model=model, recipe=RECIPE, out_dir=tmp_path, audit=AuditConfig(labels=None))
    assert strategy.strategy is inner
    manager = clients(model)
    params = strategy.initialize_parameters(manager)
    assert parameters_to_ndarrays(params)[0].tobytes() == parameters_to_ndarrays(
        twin.initialize_parameters(manager))[0].tobytes()
    assert strategy.evaluate(1, params) == twin.evaluate(1, params)

    instructions, results = fit_round(strategy, manager, parameters=params)
    assert sorted(p.cid for p, _ in instructions) == ["node-0", "node-1"]
    got, _ = strategy.aggregate_fit(1, results, [])
    want, _ = twin.aggregate_fit(1, results, [])
    for a, b in zip(parameters_to_ndarrays(got), parameters_to_ndarrays(want)):
        np.testing.assert_array_equal(a, b)

    eval_instructions = strategy.configure_evaluate(1, got, manager)
    assert sorted(p.cid for p, _ in eval_instructions) == ["node-0", "node-1"]
    eval_results = [(p, p.evaluate(ins, None, 1)) for p, ins in eval_instructions]
    assert strategy.aggregate_evaluate(1, eval_results, []) == twin.aggregate_evaluate(1, eval_results, [])
    strategy.close()


def test_batchnorm_buffers_are_state_only_and_the_update_covers_parameters(tmp_path):
    model = build("convnet", 10, seed=0, width=8)
    batches = client_batches()
    with AuditStrategy(fedavg_strategy(model), model=model, recipe=RECIPE, out_dir=tmp_path,
                       audit=AuditConfig(labels=None)) as strategy:
        _, results = fit_round(strategy, clients(model, batches))
        strategy.aggregate_fit(1, results, [])
    index = json.loads((tmp_path / "round_001" / "index.json").read_text())
    start = model.state_dict()
    for entry, (proxy, res) in zip(index["clients"], results):
        obs = load_observation(tmp_path / "round_001" / entry["file"], model)
        sent_back = dict(zip(start, parameters_to_ndarrays(res.parameters)))
        assert not np.array_equal(sent_back["body.bn0.running_mean"], start["body.bn0.running_mean"].numpy())
        assert torch.equal(obs.pairs[0].state["body.bn0.running_mean"], start["body.bn0.running_mean"])
        assert "body.bn0.running_mean" not in obs.param_names and obs.param_names == trainable_names(model)
        assert obs.bn_train
        x, y = batches[entry["metrics"]["partition_id"]]
        assert_same_update(obs, expected_update(model, x, y), start)


def test_a_client_whose_parameters_do_not_fit_is_named(tmp_path):
    model = build("lenet", 10, seed=0)
    strategy = AuditStrategy(fedavg_strategy(model), model=model, recipe=RECIPE, out_dir=tmp_path)
    _, results = fit_round(strategy, clients(model))
    proxy, res = results[1]
    wrong = ndarrays_to_parameters(get_weights(build("lenet", 5, seed=0)))
    results[1] = (proxy, FitRes(status=res.status, parameters=wrong, num_examples=4, metrics={}))
    with pytest.raises(ValueError, match=rf"client {proxy.cid} \(round 1\): array 6 \('fc.weight'\)"):
        strategy.aggregate_fit(1, results, [])
    assert not (tmp_path / "round_001" / "index.json").exists()
    strategy.close()


def test_a_non_finite_update_is_skipped_with_a_warning_and_a_note(tmp_path, caplog):
    model = build("lenet", 10, seed=0)
    twin = fedavg_strategy(model)
    with AuditStrategy(fedavg_strategy(model), model=model, recipe=RECIPE, out_dir=tmp_path) as strategy:
        _, results = fit_round(strategy, clients(model))
        proxy, res = results[0]
        arrays = parameters_to_ndarrays(res.parameters)
        arrays[0][0, 0, 0, 0] = np.nan
        results[0] = (proxy, FitRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(arrays),
                                    num_examples=res.num_examples, metrics=res.metrics))
        with caplog.at_level(logging.WARNING, logger="fastleak"):
            got, _ = strategy.aggregate_fit(1, results, [])
    assert f"client {proxy.cid} (round 1) not recorded" in caplog.text
    index = json.loads((tmp_path / "round_001" / "index.json").read_text())
    skipped, recorded = index["clients"]
    assert skipped["status"] == "skipped" and skipped["file"] is None and "NaN" in skipped["note"]
    assert "body.0.weight" in skipped["note"]
    assert recorded["status"] == "recorded" and (tmp_path / "round_001" / recorded["file"]).exists()
    leakage = json.loads((tmp_path / "round_001" / "leakage.json").read_text())
    assert [c["cid"] for c in leakage["clients"]] == [recorded["cid"]]
    want, _ = twin.aggregate_fit(1, results, [])
    for a, b in zip(parameters_to_ndarrays(got), parameters_to_ndarrays(want)):
        np.testing.assert_array_equal(a, b)


def test_audits_run_in_the_background_and_close_waits_for_them(tmp_path):
    model = build("lenet", 10, seed=0)
    executor = ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    busy = executor.submit(gate.wait, 120)
    strategy = AuditStrategy(fedavg_strategy(model), model=model, recipe=RECIPE, out_dir=tmp_path,
                             executor=executor)
    _, results = fit_round(strategy, clients(model))
    strategy.aggregate_fit(1, results, [])
    round_dir = tmp_path / "round_001"
    assert (round_dir / "index.json").exists()
    assert not (round_dir / "leakage.json").exists()
    gate.set()
    strategy.close()
    assert busy.result() is True
    leakage = json.loads((round_dir / "leakage.json").read_text())
    assert all(c["labels"]["method"] == "geng_shift" for c in leakage["clients"])
    assert executor.submit(int, "3").result() == 3
    executor.shutdown()
    with pytest.raises(RuntimeError, match="closed"):
        strategy.aggregate_fit(1, results, [])


def test_aggregate_fit_needs_the_configure_fit_of_its_round(tmp_path):
    model = build("lenet", 10, seed=0)
    strategy = AuditStrategy(fedavg_strategy(model), model=model, recipe=RECIPE, out_dir=tmp_path)
    _, results = fit_round(strategy, clients(model))
    with pytest.raises(RuntimeError, match="round 2 came without configure_fit"):
        strategy.aggregate_fit(2, results, [])
    strategy.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "TrainingRecipe.lr must be a positive finite number"),
    ({"local_steps": 0}, "TrainingRecipe.local_steps must be a positive int"),
    ({"batch_size": 0}, "TrainingRecipe.batch_size must be a positive int"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"reduction": "max"}, "reduction must be one of"),
])
def test_recipe_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingRecipe(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": "psychic"}, "AuditConfig.labels must be None or one of"),
    ({"attack": "nope"}, "unknown attack preset 'nope'"),
    ({"attack": "inverting", "attack_options": {"warp": 1}}, r"unknown attack option\(s\) \['warp'\]"),
    ({"attack_options": {"tv": 0.1}}, "no attack preset is set"),
    ({"iterations": 0}, "AuditConfig.iterations must be a positive int"),
])
def test_audit_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AuditConfig(**kwargs)


def test_strategy_argument_errors(tmp_path):
    model = build("lenet", 10)
    with pytest.raises(TypeError, match="strategy must be a flwr.server.strategy.Strategy"):
        AuditStrategy("fedavg", model=model, recipe=RECIPE, out_dir=tmp_path)
    with pytest.raises(TypeError, match="recipe must be a TrainingRecipe"):
        AuditStrategy(model=model, recipe={"lr": 0.1}, out_dir=tmp_path)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match="input_shape is needed"):
        AuditStrategy(model=plain, recipe=RECIPE, out_dir=tmp_path)
    assert AuditStrategy(model=plain, recipe=RECIPE, out_dir=tmp_path, input_shape=(3, 32, 32)).input_shape == (3, 32, 32)
    no_classifier = torch.nn.Sequential(plain, torch.nn.ReLU())
    with pytest.raises(ValueError, match="must end in an nn.Linear classifier"):
        AuditStrategy(model=no_classifier, recipe=RECIPE, out_dir=tmp_path, input_shape=(3, 32, 32))
    recorder = AuditStrategy(model=no_classifier, recipe=RECIPE, out_dir=tmp_path, input_shape=(3, 32, 32),
                             audit=AuditConfig(labels=None))
    assert recorder.num_classes is None


def test_client_app_refuses_batches_the_recipe_cannot_train_on():
    model = build("lenet", 10)
    x, y = load("cifar10", 1, seed=1)
    with pytest.raises(ValueError, match=r"batches\[1\]: batch_size must be at most the number of samples 1, got 2"):
        client_app(model, [client_batches()[0], (x, y)], RECIPE)
    with pytest.raises(ValueError, match=r"batches\[0\]: x has per-sample shape \(1, 28, 28\)"):
        client_app(model, [load("mnist", 4, seed=1)], RECIPE)


def test_default_strategy_is_fedavg_from_the_models_weights(tmp_path):
    model = build("lenet", 10, seed=3)
    strategy = AuditStrategy(model=model, recipe=RECIPE, out_dir=tmp_path / "audit")
    assert isinstance(strategy.strategy, FedAvg) and (tmp_path / "audit").is_dir()
    initial = parameters_to_ndarrays(strategy.initialize_parameters(SimpleClientManager()))
    for a, b in zip(initial, get_weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
