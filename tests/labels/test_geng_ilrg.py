import itertools

import numpy as np
import pytest
import torch

import fastleak.labels as L
from fastleak.labels import LabelConfig

# Six inputs whose features (the inputs themselves) all sum to 6 but point different ways.
X = torch.tensor(list(itertools.permutations([1.0, 2.0, 3.0])), dtype=torch.float64)
Y = torch.tensor([0, 2, 2, 3, 0, 0])
W = torch.tensor([[0.4, -0.3, 0.2], [-0.1, 0.5, 0.3], [0.2, 0.2, -0.6], [0.0, -0.4, 0.1]], dtype=torch.float64)
BIAS = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)


def fc_gradients(x, y, weight=W, bias=BIAS, reduction="mean"):
    """(p - y) x^T and (p - y), averaged or summed over the batch, written out by hand."""
    gw, gb = torch.zeros_like(weight), torch.zeros(weight.shape[0], dtype=torch.float64)
    for xk, yk in zip(x, y):
        p = torch.softmax(weight @ xk + bias, 0)
        e = torch.nn.functional.one_hot(yk, weight.shape[0]).double()
        gw += torch.outer(p - e, xk)
        gb += p - e
    scale = 1.0 / len(y) if reduction == "mean" else 1.0
    return gw * scale, gb * scale


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_geng_is_exact_when_the_dummies_are_the_batch_and_feature_sums_agree(make_head, make_observation, reduction):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    gw, gb = fc_gradients(X, Y, reduction=reduction)
    obs = make_observation(model, gw, gb, num_samples=6, reduction=reduction)
    out = L.counts(obs, model, "geng", config=LabelConfig(dummies=X))
    torch.testing.assert_close(out.estimates, torch.tensor([3.0, 0.0, 2.0, 1.0], dtype=torch.float64))
    assert out.labels.tolist() == [0, 0, 0, 2, 2, 3]


def test_geng_formula_by_hand_with_other_dummies(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    gw, gb = fc_gradients(X, Y)
    dummies = torch.tensor([[0.5, 0.0, 1.0], [2.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    a, o = torch.zeros(4, dtype=torch.float64), 0.0
    for d in dummies:
        p = torch.softmax(W @ d + BIAS, 0)
        a += p * d.sum() / len(dummies)
        o += float(d.sum()) / len(dummies)
    expected = 6 * (a - gw.sum(1)) / o
    out = L.counts(make_observation(model, gw, gb, num_samples=6), model, "geng", config=LabelConfig(dummies=dummies))
    torch.testing.assert_close(out.estimates, expected)


def test_ilrg_is_exact_when_all_samples_share_their_features(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    x = X[:1].expand(6, 3)  # p_k is then the same for every sample, and so is every class embedding
    gw, gb = fc_gradients(x, Y)
    out = L.counts(make_observation(model, gw, gb, num_samples=6), model, "ilrg")
    torch.testing.assert_close(out.estimates, torch.tensor([3.0, 0.0, 2.0, 1.0], dtype=torch.float64))


def test_ilrg_solves_the_stated_least_squares_system(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    gw, gb = fc_gradients(X, Y)
    probs = []
    for c in range(4):
        emb = gw[c] / gb[c]
        probs.append(torch.softmax(W @ emb + BIAS, 0).numpy())
    system = np.vstack([np.ones((1, 4)), np.array(probs).T - np.eye(4)])
    rhs = np.concatenate([[6.0], 6.0 * gb.numpy()])
    expected = np.linalg.lstsq(system, rhs, rcond=None)[0]
    out = L.counts(make_observation(model, gw, gb, num_samples=6), model, "ilrg")
    np.testing.assert_allclose(out.estimates.numpy(), expected, rtol=1e-9, atol=1e-9)
    assert int(out.counts.sum()) == 6


def test_bias_free_model_rejects_bias_methods(make_head, make_observation):
    model = make_head(3, 4, bias=False, weight=W)
    gw, _ = fc_gradients(X, Y, bias=torch.zeros(4, dtype=torch.float64))
    obs = make_observation(model, gw, num_samples=6)
    for method in ("ilrg", "bias", "geng_bias", "geng_shift"):
        with pytest.raises(ValueError, match=f"method '{method}' needs the final nn.Linear's bias"):
            L.counts(obs, model, method)
    out = L.counts(obs, model, "auto", config=LabelConfig(dummies=X))
    assert out.method == "geng" and out.requested == "auto"


def test_geng_bias_is_exact_when_the_dummies_are_the_batch(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    x = X * torch.arange(1, 7, dtype=torch.float64)[:, None]  # feature sums now differ: geng's error source
    gw, gb = fc_gradients(x, Y)
    obs = make_observation(model, gw, gb, num_samples=6)
    out = L.counts(obs, model, "geng_bias", config=LabelConfig(dummies=x))
    torch.testing.assert_close(out.estimates, torch.tensor([3.0, 0.0, 2.0, 1.0], dtype=torch.float64))
    geng = L.counts(obs, model, "geng", config=LabelConfig(dummies=x)).estimates
    assert float((geng - out.estimates).abs().max()) > 0.3
    other = X[:2]
    expected = 6 * (torch.softmax(other @ W.T + BIAS, 1).mean(0) - gb)
    torch.testing.assert_close(L.counts(obs, model, "geng_bias", config=LabelConfig(dummies=other)).estimates, expected)


def test_geng_shift_is_exact_when_the_batch_shares_its_features(make_head, make_observation):
    # Then ΔW = Δb·hᵀ exactly, so the batch mean feature is h; dummies translated onto it
    # give the batch's softmax whatever their own features are.
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    x = X[1:2].expand(6, 3)
    gw, gb = fc_gradients(x, Y)
    obs = make_observation(model, gw, gb, num_samples=6)
    dummies = torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64).expand(4, 3)
    out = L.counts(obs, model, "geng_shift", config=LabelConfig(dummies=dummies))
    torch.testing.assert_close(out.estimates, torch.tensor([3.0, 0.0, 2.0, 1.0], dtype=torch.float64))
    unshifted = L.counts(obs, model, "geng_bias", config=LabelConfig(dummies=dummies)).estimates
    assert float((unshifted - out.estimates).abs().max()) > 0.5


def test_geng_shift_formula_by_hand(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    gw, gb = fc_gradients(X, Y)
    dummies = torch.tensor([[0.5, 0.0, 1.0], [2.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    mean_feature = gw.T @ gb / (gb @ gb)
    moved = dummies - dummies.mean(0) + mean_feature
    expected = 6 * (torch.softmax(moved @ W.T + BIAS, 1).mean(0) - gb)
    obs = make_observation(model, gw, gb, num_samples=6)
    out = L.counts(obs, model, "geng_shift", config=LabelConfig(dummies=dummies))
    torch.testing.assert_close(out.estimates, expected)
    doubled = make_observation(model, 6 * gw, 6 * gb, num_samples=6, reduction="sum")
    torch.testing.assert_close(L.counts(doubled, model, "geng_shift", config=LabelConfig(dummies=dummies)).estimates,
                               expected)


def test_geng_shift_without_bias_gradient_leaves_the_dummies_in_place(make_head, make_observation):
    model = make_head(3, 4, weight=W, bias_value=BIAS)
    gw, _ = fc_gradients(X, Y)
    obs = make_observation(model, gw, torch.zeros(4, dtype=torch.float64), num_samples=6)
    config = LabelConfig(dummies=X[:3])
    torch.testing.assert_close(L.counts(obs, model, "geng_shift", config=config).estimates,
                               L.counts(obs, model, "geng_bias", config=config).estimates)
