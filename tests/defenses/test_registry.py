"""One registry for every defense: its stage, the protocols it applies to, and a round under any of them."""
import functools

import pytest
import torch

from fastleak import data, defenses, models
from fastleak.defenses import DEFENSES
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import fedavg, fedsgd


@pytest.fixture(scope="module")
def batches():
    x, y = data.load("mnist", 6, seed=1)
    return [(x[i:i + 2], y[i:i + 2]) for i in range(0, 6, 2)]


@pytest.fixture
def model():
    return models.build("lenet", 10, in_shape=(1, 28, 28), seed=0)


def _equal(a, b):
    return all(torch.equal(s, t) for p, q in zip(a.pairs, b.pairs) for s, t in zip(p.shared, q.shared))


def test_every_defense_is_registered_with_its_stage_and_protocols():
    assert set(defenses.names()) == {"gaussian", "laplace", "clip", "topk", "prune", "quantize", "dp_sgd",
                                     "secure_aggregation"}
    assert defenses.names("client") == ("dp_sgd",) and defenses.names("aggregate") == ("secure_aggregation",)
    assert set(defenses.names("shared")) == {"gaussian", "laplace", "clip", "topk", "prune", "quantize"}
    assert {n: defenses.get(n).protocols for n in defenses.names() if defenses.get(n).protocols != (
        "fedsgd", "fedavg", "multi-pair")} == {"dp_sgd": ("fedsgd",)}
    assert defenses.get("dp_sgd").parameters == ("clip", "sigma", "seed", "loss", "reduction")
    assert defenses.get("secure_aggregation").parameters == ("clients",)
    assert defenses.get("gaussian").parameters == ("sigma", "seed")
    with pytest.raises(InvalidValueError, match="stages must be some of client, shared, aggregate"):
        defenses.names("server")


def test_a_defense_limited_to_some_protocols_says_why():
    dp = defenses.get("dp_sgd")
    assert dp.applies_to("fedsgd") and not dp.applies_to("fedavg") and not dp.applies_to("multi-pair")
    dp.check_protocol("fedsgd")
    with pytest.raises(InvalidValueError, match=r"defense 'dp_sgd' applies to fedsgd only \(it clips the "
                                                r"per-example gradients of one FedSGD step\), not to mode 'fedavg'"):
        dp.check_protocol("fedavg")
    with pytest.raises(InvalidValueError, match="protocol must be one of fedsgd, fedavg, multi-pair, got 'fedprox'"):
        dp.check_protocol("fedprox")


@pytest.mark.parametrize("name, use", [("dp_sgd", r"fastleak\.defenses\.dp_sgd\(model, x, y"),
                                       ("secure_aggregation", r"fastleak\.defenses\.secure_aggregate\(observations\)")])
def test_apply_names_the_function_of_a_client_or_aggregation_defense(model, batches, name, use):
    obs = fedsgd(model, *batches[0])
    with pytest.raises(InvalidValueError, match=f"defense '{name}' .*, not on an observation; use {use}"):
        defenses.apply(obs, name, clip=1.0, sigma=0.0)


def test_a_round_applies_each_defense_at_its_stage(model, batches):
    step = fedsgd
    alone = defenses.protect(step, model, batches[:1], "fedsgd")
    assert _equal(alone, fedsgd(model, *batches[0])) and "defenses" not in alone.meta
    noisy = defenses.protect(step, model, batches[:1], "fedsgd", [("gaussian", {"sigma": 0.1, "seed": 4})])
    assert _equal(noisy, defenses.apply(fedsgd(model, *batches[0]), "gaussian", sigma=0.1, seed=4))
    model.eval()
    dp = {"clip": 0.5, "sigma": 0.1}
    # the order given does not matter: the client step comes first, then the transforms, then the aggregation
    summed = defenses.protect(step, model, batches, "fedsgd",
                              [("secure_aggregation", {"clients": 3}), ("clip", {"max_norm": 0.2}), ("dp_sgd", dp)])
    clients = [defenses.apply(defenses.dp_sgd(model, x, y, **dp), "clip", max_norm=0.2) for x, y in batches]
    expected = defenses.secure_aggregate(clients)
    assert _equal(summed, expected) and summed.meta["defenses"] == expected.meta["defenses"]
    assert [d["name"] for d in summed.meta["defenses"]] == ["dp_sgd", "clip", "secure_aggregation"]


def test_a_round_refuses_what_does_not_fit(model, batches):
    step = functools.partial(fedavg, local_steps=1, lr=0.1)
    with pytest.raises(InvalidValueError, match="defense 'dp_sgd' applies to fedsgd only"):
        defenses.protect(step, model, batches[:1], "fedavg", [("dp_sgd", {"clip": 1.0, "sigma": 0.0})])
    with pytest.raises(InvalidValueError, match=r"3 clients need an aggregation defense \(secure_aggregation\)"):
        defenses.protect(step, model, batches, "fedavg")
    with pytest.raises(InvalidValueError, match="secure aggregation over clients=2 got 3 clients' observations"):
        defenses.protect(step, model, batches, "fedavg", [("secure_aggregation", {"clients": 2})])
    with pytest.raises(InvalidTypeError, match="defense 'secure_aggregation': missing a required argument: 'clients'"):
        defenses.protect(step, model, batches, "fedavg", [("secure_aggregation", {})])
    with pytest.raises(InvalidValueError, match="defenses dp_sgd, dp_sgd each replace the client's step"):
        defenses.check("fedsgd", [("dp_sgd", {"clip": 1.0, "sigma": 0.0})] * 2)
    with pytest.raises(InvalidValueError, match="unknown defense 'blur'"):
        defenses.check("fedsgd", [("blur", {})])


def test_a_users_transform_declares_the_protocols_it_applies_to(model, batches):
    @defenses.register("halve_gradients", protocols=("fedsgd", "multi-pair"), why="scales gradients, not updates")
    def halve(tensors):
        return tuple(t / 2 for t in tensors)

    try:
        obs = defenses.apply(fedsgd(model, *batches[0]), "halve_gradients")
        assert torch.equal(obs.pairs[0].shared[0], fedsgd(model, *batches[0]).pairs[0].shared[0] / 2)
        update = fedavg(model, *batches[0], local_steps=1, lr=0.1)
        with pytest.raises(InvalidValueError, match=r"defense 'halve_gradients' applies to gradient observations only "
                                                    r"\(it scales gradients, not updates\), got kind 'update'"):
            defenses.apply(update, "halve_gradients")
        assert "halve_gradients" in defenses.names("shared")
    finally:
        DEFENSES._entries.pop("halve_gradients")


def test_a_defense_must_name_known_protocols():
    with pytest.raises(InvalidValueError, match="protocols must be some of fedsgd, fedavg, multi-pair"):
        defenses.register("fedprox_noise", protocols=("fedprox",))(lambda tensors: tensors)
    assert "fedprox_noise" not in defenses.names()
