"""Secure aggregation: the server sees the mean of K clients' shared tensors, nothing else."""
import dataclasses

import pytest
import torch

from fastleak import data, defenses, models
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import fedavg, fedsgd


@pytest.fixture(scope="module")
def batches():
    x, y = data.load("mnist", 12, seed=3)
    return [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]


@pytest.fixture
def model():
    return models.build("lenet", 10, in_shape=(1, 28, 28), seed=0).double()


def test_the_mean_of_fedsgd_gradients_is_the_gradient_of_the_union_of_the_batches(model, batches):
    clients = [fedsgd(model, x.double(), y) for x, y in batches]
    summed = defenses.secure_aggregate(clients)
    union = fedsgd(model, torch.cat([x for x, _ in batches]).double(), torch.cat([y for _, y in batches]))
    assert summed.num_samples == 12 and summed.param_names == union.param_names
    for got, want in zip(summed.pairs[0].shared, union.pairs[0].shared):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert summed.meta["defenses"][-1] == {"name": "secure_aggregation", "clients": 3}


def test_one_client_is_returned_unchanged_but_recorded(model, batches):
    (x, y), = batches[:1]
    obs = fedsgd(model, x.double(), y)
    alone = defenses.secure_aggregate([obs])
    assert all(torch.equal(a, b) for a, b in zip(alone.pairs[0].shared, obs.pairs[0].shared))
    assert alone.meta["defenses"] == ({"name": "secure_aggregation", "clients": 1},)


def test_clients_of_different_protocols_or_models_are_refused(model, batches):
    (x0, y0), (x1, y1) = batches[:2]
    sgd = fedsgd(model, x0.double(), y0)
    with pytest.raises(InvalidValueError, match=r"observations\[1\]\.kind = 'update' differs"):
        defenses.secure_aggregate([sgd, fedavg(model, x1.double(), y1, local_steps=2, lr=0.1)])
    other = models.build("lenet", 10, in_shape=(1, 28, 28), seed=1).double()
    with pytest.raises(InvalidValueError, match="other model states"):
        defenses.secure_aggregate([sgd, fedsgd(other, x1.double(), y1)])
    with pytest.raises(InvalidValueError, match="observations\\[1\\].loss"):
        defenses.secure_aggregate([sgd, dataclasses.replace(fedsgd(model, x1.double(), y1), loss="mse")])


def test_bad_arguments_name_what_was_expected(model, batches):
    with pytest.raises(InvalidValueError, match="at least one client"):
        defenses.secure_aggregate([])
    with pytest.raises(InvalidTypeError, match=r"observations\[0\] must be an Observation"):
        defenses.secure_aggregate([{"shared": ()}])
