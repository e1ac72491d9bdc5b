"""RLG (Dang et al. 2021): the label set from the column space of the FC weight gradient."""
import logging

import pytest
import torch

import fastleak.data as D
import fastleak.labels as L
from fastleak.federated import fedavg, fedsgd
from fastleak.labels.rlg import fill_counts, label_set
from fastleak.training import TrainConfig, train


def gradient_of(errors: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """ΔW = (1/B)·Σ_k e_k·h_kᵀ for hand-made logit gradients e [B, C] and features h [B, D]."""
    return errors.T @ features / errors.shape[0]


def logit_gradients(labels: list[int], classes: int, gen: torch.Generator) -> torch.Tensor:
    p = torch.softmax(3 * torch.randn(len(labels), classes, generator=gen, dtype=torch.float64), dim=1)
    return p - torch.nn.functional.one_hot(torch.tensor(labels), classes).double()


@pytest.mark.parametrize("labels", [[3], [0, 7], [2, 5, 9], [1, 4, 6, 8], [0, 1, 2, 3, 4]])
def test_the_set_of_distinct_labels_is_found(labels):
    gen = torch.Generator().manual_seed(len(labels))
    errors = logit_gradients(labels, 10, gen)
    features = torch.rand(len(labels), 50, generator=gen, dtype=torch.float64)
    found = label_set(gradient_of(errors, features), len(labels))
    assert found.nonzero().flatten().tolist() == sorted(labels)


def test_confidence_does_not_matter_only_the_signs_do():
    # Errors of a confident model, 1 - p_y from 1e-2 down to 1e-6: the set is still exact.
    gen = torch.Generator().manual_seed(0)
    labels = [1, 4, 6, 8]
    scale = torch.tensor([1e-2, 1e-3, 1e-5, 1e-6], dtype=torch.float64)[:, None]
    errors = logit_gradients(labels, 10, gen) * scale
    features = torch.rand(4, 50, generator=gen, dtype=torch.float64)
    assert label_set(gradient_of(errors, features), 4).nonzero().flatten().tolist() == labels


def test_a_zero_gradient_has_an_empty_set():
    assert not label_set(torch.zeros(10, 20), 3).any()


def test_fill_counts_gives_each_present_class_one_and_shares_the_rest_by_the_estimates():
    present = torch.tensor([[True, True, False, False], [True, False, False, False], [False] * 4])
    estimates = torch.tensor([[3.0, 1.2, 0.9, 0.0], [0.5, 0.2, 0.1, 0.2], [1.0, 1.0, 0.0, 0.0]],
                             dtype=torch.float64)
    out = fill_counts(present, estimates, torch.tensor([5, 1, 2]))
    # Row 0: 2 + 3 extra in proportion (2.0 : 0.2); row 1: the one sample; row 2: no set, estimates kept.
    torch.testing.assert_close(out[0], torch.tensor([1 + 3 * 2.0 / 2.2, 1 + 3 * 0.2 / 2.2, 0.0, 0.0],
                                                    dtype=torch.float64))
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out[2], estimates[2])


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    """An MLP trained by the federated trainer to >= 85% held-out accuracy (seconds)."""
    config = TrainConfig(model="mlp", model_options={"hidden": [32]}, rounds=6, clients=3, local_steps=40,
                         lr=0.1, shift=0, eval_samples=300)
    result = train(config, tmp_path_factory.mktemp("mlp"))
    assert result.final_accuracy >= 0.85
    return result.model


def distinct_batches(count: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [D.load("mnist", size, seed=s, labels="unique") for s in range(count)]


def test_rlg_is_exact_on_a_trained_model_where_the_bias_estimate_is_not(trained_mlp):
    batches = distinct_batches(6, 4)
    observations = [fedsgd(trained_mlp, x, y) for x, y in batches]
    truths = [torch.bincount(y, minlength=10) for _, y in batches]
    rlg = L.counts_many(observations, trained_mlp, "rlg")
    geng_bias = L.counts_many(observations, trained_mlp, "geng_bias")
    assert all(torch.equal(c.counts, t) for c, t in zip(rlg, truths))
    assert sum(torch.equal(c.counts, t) for c, t in zip(geng_bias, truths)) < len(truths)


def test_rlg_reads_the_set_of_a_one_step_update(trained_mlp):
    # Several local steps add the trajectory's directions to the column space; the trained-model
    # grid (benchmarks/RESULTS.md) measures how much that costs.
    for x, y in distinct_batches(3, 3):
        update = fedavg(trained_mlp, x, y, local_steps=1, lr=0.01)
        assert torch.equal(L.counts(update, trained_mlp, "rlg").counts, torch.bincount(y, minlength=10))


def test_rlg_without_a_shared_bias_fills_the_set_from_geng(trained_mlp):
    x, y = distinct_batches(1, 4)[0]
    obs = fedsgd(trained_mlp, x, y)
    bias_name = [n for n, _ in trained_mlp.named_parameters()][-1]
    keep = [i for i, n in enumerate(obs.param_names) if n != bias_name]
    from dataclasses import replace

    from fastleak.federated import Pair
    no_bias = replace(obs, param_names=tuple(obs.param_names[i] for i in keep),
                      pairs=tuple(Pair(p.state, tuple(p.shared[i] for i in keep)) for p in obs.pairs))
    assert torch.equal(L.counts(no_bias, trained_mlp, "rlg").counts, torch.bincount(y, minlength=10))


def test_auto_takes_rlg_up_to_half_the_classes_on_a_confident_model_and_says_why(trained_mlp, caplog):
    x, y = D.load("mnist", 6, seed=0, labels="random")
    small, large = fedsgd(trained_mlp, x[:5], y[:5]), fedsgd(trained_mlp, x, y)
    with caplog.at_level(logging.INFO, logger="fastleak.labels"):
        found = L.counts_many([small, large], trained_mlp, "auto")
    assert [c.method for c in found] == ["rlg", "presence_prior"]
    assert "chose rlg for 1 observation(s): B <= half of 10 classes, error mass < 0.45" in caplog.text
    assert "chose presence_prior for 1 observation(s): B > half of 10 classes, error mass < 0.45" in caplog.text


def test_auto_keeps_the_count_methods_on_an_untrained_model_with_duplicates():
    # RLG's column space also holds vectors negative only in an absent class once duplicates leave
    # spare dimensions; an untrained model's error mass sends auto to geng_shift, exact here.
    from fastleak.models import build

    model = build("lenet", 10, in_shape=(1, 28, 28), seed=0)
    batches = [D.load("mnist", 4, seed=s, labels="repeat:2") for s in (0, 2, 3)]  # error mass near 1
    found = L.counts_many([fedsgd(model, x, y) for x, y in batches], model, "auto")
    assert {c.method for c in found} == {"geng_shift"}
    assert all(torch.equal(c.counts, torch.bincount(y, minlength=10)) for c, (_, y) in zip(found, batches))
