import dataclasses

import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd
from fastleak.federated.multi import multi_pair

ROWS = torch.tensor([[0.3, 0.1, 0.2], [-0.9, 0.2, -0.4], [0.1, 0.0, 0.3], [-0.2, -0.6, 0.1]], dtype=torch.float64)
BIAS = torch.tensor([0.3, -0.2, 0.1, -0.2], dtype=torch.float64)


def test_methods_are_listed_and_unknown_names_rejected(make_head, make_observation):
    assert L.METHODS == ("bias", "geng", "geng_bias", "geng_shift", "idlg", "ilrg", "llg", "posterior",
                         "presence_prior", "rlg", "yin", "auto")
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, BIAS, num_samples=2)
    valid = "bias, geng, geng_bias, geng_shift, idlg, ilrg, llg, posterior, presence_prior, rlg, yin, auto"
    with pytest.raises(ValueError, match=f"method must be one of {valid}; got 'dlg'"):
        L.counts(obs, model, "dlg")


def test_model_without_final_linear_is_rejected(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, BIAS, num_samples=2)
    for bad in (nn.Sequential(model, nn.ReLU()), nn.Sequential(nn.Flatten(), nn.Conv1d(1, 1, 1))):
        with pytest.raises(ValueError, match="^model: model must end in an nn.Linear"):
            L.counts(obs, bad, "llg")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        L.counts(obs, "lenet", "llg")


@pytest.mark.parametrize("where", ["shared", "state"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_observations_are_rejected(make_head, make_observation, where, bad):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS.clone(), BIAS, num_samples=2)
    (obs.pairs[0].shared[0] if where == "shared" else obs.pairs[0].state["fc.weight"])[1, 2] = bad
    with pytest.raises(ValueError, match=rf"observation.pairs\[0\].{where}\['fc.weight'\] contains NaN or inf"):
        L.counts(obs, model, "llg")


def test_num_samples_must_agree(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, BIAS, num_samples=2)
    assert L.counts(obs, model, "llg", num_samples=2).num_samples == 2
    with pytest.raises(ValueError, match="num_samples=3 disagrees with observation.num_samples=2"):
        L.counts(obs, model, "llg", num_samples=3)
    with pytest.raises(ValueError, match=r"num_samples=3 disagrees with observations\[1\].num_samples=2"):
        L.counts_many([obs, obs], model, "llg", num_samples=[2, 3])


def test_update_needs_its_learning_rate(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, BIAS, num_samples=2, kind="update", local_steps=1)
    with pytest.raises(ValueError, match="update observation needs local_lr > 0"):
        L.counts(obs, model, "llg")


def test_observation_of_another_model_is_rejected(make_head, make_observation):
    obs = make_observation(make_head(3, 4), ROWS, BIAS, num_samples=2)
    with pytest.raises(ValueError, match=r"shared\['fc.weight'\] has shape \(4, 3\), expected \(5, 3\)"):
        L.counts(obs, make_head(3, 5), "llg")


def test_auto_names_its_choice(make_head, make_observation, caplog):
    model = make_head(3, 4)
    with caplog.at_level("INFO", logger="fastleak.labels"):
        one = L.counts(make_observation(model, ROWS, BIAS, num_samples=1), model)
        two = L.counts(make_observation(model, ROWS, BIAS, num_samples=2), model,
                       config=L.LabelConfig(dummies=torch.eye(3, dtype=torch.float64)))
        three = L.counts(make_observation(model, ROWS, BIAS, num_samples=3), model,
                         config=L.LabelConfig(dummies=torch.eye(3, dtype=torch.float64)))
    # The bias gradient's error mass is ½·|BIAS|₁ = 0.4, a confident model: B = 3 > 4 // 2 takes presence_prior.
    assert (one.method, two.method, three.method, three.requested) == ("idlg", "rlg", "presence_prior", "auto")
    for chosen in ("idlg", "rlg", "presence_prior"):
        assert f"auto' chose {chosen}" in caplog.text
    assert [L.choose(b, 10, mass)[0] for b, mass in ((4, 0.1), (4, None), (4, 0.9), (6, 0.1), (6, None), (6, 0.9))] == [
        "rlg", "rlg", "geng_shift", "presence_prior", "geng", "geng_shift"]
    # Larger batches on a model that is not sure: geng_shift where its estimates come out whole.
    assert [L.choose(32, 10, mass, gap)[0] for mass, gap in ((0.3, 0.05), (0.3, 0.2), (0.05, 0.05), (0.5, 0.3))] == [
        "geng_shift", "presence_prior", "presence_prior", "geng_shift"]
    assert L.api.whole_counts_gap(torch.tensor([[1.0, 2.0, -0.5, 3.25]])).tolist() == [pytest.approx(0.3125)]


def test_rounded_counts_always_sum_to_the_batch_size(make_head, make_observation):
    model = make_head(3, 4)
    for b in (1, 2, 5, 9):
        for method in ("llg", "bias", "ilrg"):
            out = L.counts(make_observation(model, ROWS, BIAS, num_samples=b), model, method)
            assert int(out.counts.sum()) == b and len(out.labels) == b and bool((out.counts >= 0).all())
            assert torch.equal(out.labels, out.labels.sort().values)


@pytest.fixture(scope="module")
def real_observations():
    """Gradients and updates of real batches: mixed sizes, reductions, model states and pair counts."""
    model = M.build("lenet", 10, seed=0)
    moved = M.build("lenet", 10, seed=5)
    obs = []
    for i, (b, pattern) in enumerate([(4, "random"), (6, "repeat:2"), (8, "random")]):
        x, y = D.load("cifar10", b, seed=10 + i, labels=pattern)
        obs.append(fedsgd(model, x, y, reduction="mean" if i % 2 else "sum"))
        obs.append(fedsgd(moved, x, y))
        obs.append(fedavg(model, x, y, local_steps=2 + i, lr=0.01))
    x, y = D.load("cifar10", 5, seed=20, labels="random")
    obs.append(multi_pair(model, x, y, pairs=3, between="reinit"))
    obs.append(multi_pair(model, x, y, pairs=2, between="sgd", kind="update", local_steps=2, lr=0.01))
    return model, obs


@pytest.mark.parametrize("method", ["auto", "geng", "geng_bias", "geng_shift", "ilrg", "llg", "bias"])
def test_batched_path_equals_the_per_observation_loop(method, real_observations):
    model, obs = real_observations
    config = L.LabelConfig(num_dummies=16)
    together = L.counts_many(obs, model, method, config=config)
    for o, t in zip(obs, together):
        alone = L.counts(o, model, method, config=config)
        torch.testing.assert_close(t.estimates, alone.estimates, rtol=1e-6, atol=1e-8)
        assert torch.equal(t.counts, alone.counts) and t.method == alone.method
    assert [r.tolist() for r in L.recover_many(obs, model, method, config=config)] == \
        [t.labels.tolist() for t in together]


@pytest.mark.parametrize("method", ["geng", "ilrg"])
def test_multi_pair_is_never_worse_than_one_pair(method):
    model = M.build("lenet", 10, seed=0)
    multi_hits = first_hits = 0
    for seed in range(5):
        x, y = D.load("cifar10", 16, seed=seed, labels="random")
        true = torch.bincount(y, minlength=10)
        obs = multi_pair(model, x, y, pairs=4, between="reinit")
        singles = L.counts_many([dataclasses.replace(obs, pairs=(p,)) for p in obs.pairs], model, method)
        multi = L.counts(obs, model, method)
        torch.testing.assert_close(multi.estimates, torch.stack([s.estimates for s in singles]).median(0).values
                                   .add(torch.stack([s.estimates for s in singles]).sort(0).values[2]).div(2))
        multi_hits += int((multi.counts == true).sum())
        first_hits += int((singles[0].counts == true).sum())
    assert multi_hits >= first_hits
