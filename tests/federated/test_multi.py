import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd, multi_pair


@pytest.fixture(scope="module")
def batch():
    return D.load("cifar10", 3, labels="unique")


def test_one_pair_equals_single_observation(batch):
    model = M.build("lenet", 10)
    single = fedsgd(model, *batch)
    multi = multi_pair(model, *batch, pairs=1)
    assert multi.num_pairs == 1
    assert all(torch.equal(a, b) for a, b in zip(single.pairs[0].shared, multi.pairs[0].shared))


def test_sgd_between_applies_the_shared_gradient(batch):
    model = M.build("lenet", 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obs = multi_pair(model, *batch, pairs=3, between="sgd", server_lr=0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "model must not change"
    assert obs.num_pairs == 3 and obs.meta["multi_pair"]["between"] == "sgd"
    for i in range(2):
        now, nxt = obs.pairs[i], obs.pairs[i + 1]
        for name, g in zip(obs.param_names, now.shared):
            torch.testing.assert_close(nxt.state[name], now.state[name] - 0.5 * g)
    copy = M.build("lenet", 10)
    copy.load_state_dict(obs.pairs[2].state)
    for a, b in zip(obs.pairs[2].shared, fedsgd(copy, *batch).pairs[0].shared):
        torch.testing.assert_close(a, b)


def test_sgd_between_on_other_data(batch):
    model = M.build("lenet", 10)
    other = D.load("cifar10", 4, labels="random", seed=9)
    obs = multi_pair(model, *batch, pairs=2, other=other)
    step = fedsgd(model, *other)
    for name, g in zip(obs.param_names, step.pairs[0].shared):
        torch.testing.assert_close(obs.pairs[1].state[name], obs.pairs[0].state[name] - 0.1 * g)


def test_update_pairs_add_the_update(batch):
    model = M.build("lenet", 10)
    obs = multi_pair(model, *batch, pairs=2, kind="update", local_steps=2, lr=0.1)
    assert obs.kind == "update" and obs.local_steps == 2
    first = fedavg(model, *batch, local_steps=2, lr=0.1)
    for name, u, v in zip(obs.param_names, obs.pairs[0].shared, first.pairs[0].shared):
        torch.testing.assert_close(u, v)
        torch.testing.assert_close(obs.pairs[1].state[name], obs.pairs[0].state[name] + u)


def test_reinit_uses_fresh_seeded_initialisations(batch):
    model = M.build("lenet", 10, seed=4)
    obs = multi_pair(model, *batch, pairs=3, between="reinit")
    for i in (1, 2):
        expected = M.build("lenet", 10, seed=4 + i).state_dict()
        assert all(torch.equal(obs.pairs[i].state[k], v) for k, v in expected.items())
    assert not torch.equal(obs.pairs[1].shared[0], obs.pairs[2].shared[0])
    again = multi_pair(model, *batch, pairs=3, between="reinit")
    assert all(torch.equal(a, b) for p, q in zip(obs.pairs, again.pairs) for a, b in zip(p.shared, q.shared))


def test_reinit_of_a_plain_module(batch):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    obs = multi_pair(net, *batch, pairs=2, between="reinit", seed=1)
    assert not torch.equal(obs.pairs[0].state["1.weight"], obs.pairs[1].state["1.weight"])
    torch.manual_seed(2)
    fresh = nn.Linear(3 * 32 * 32, 10)
    torch.testing.assert_close(obs.pairs[1].state["1.weight"], fresh.weight.detach())


def test_bad_arguments(batch):
    model = M.build("lenet", 10)
    with pytest.raises(ValueError, match="pairs"):
        multi_pair(model, *batch, pairs=0)
    with pytest.raises(ValueError, match="unknown between-rounds rule 'swap'"):
        multi_pair(model, *batch, pairs=2, between="swap")
    with pytest.raises(ValueError, match="unknown observation kind"):
        multi_pair(model, *batch, pairs=2, kind="weights")

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3 * 32 * 32, 10))

        def forward(self, x):
            return x.flatten(1) @ self.w

    with pytest.raises(ValueError, match="no reset_parameters"):
        multi_pair(Custom(), *batch, pairs=2, between="reinit")
