import itertools
import math

import pytest
import torch

import fastleak.labels as L
from fastleak.labels import posterior as P
from fastleak.labels.conditional import ClassStatistics


def compositions(total: int, parts: int) -> torch.Tensor:
    """Every count vector of ``parts`` non-negative entries summing to ``total`` [K, parts]."""
    rows = [c for c in itertools.product(range(total + 1), repeat=parts) if sum(c) == total]
    return torch.tensor(rows, dtype=torch.float64)


def exact_posterior(prior, ev, b):
    """Enumerated posterior of one observation: (count vectors [K, C], probabilities [K])."""
    support = compositions(b, ev.detected.shape[1])
    lp = P.log_posterior(prior, ev, support[None], torch.tensor([b]))[0]
    return support, torch.softmax(lp, 0)


def random_evidence(c, d, b, seed, temperature=1.0, dof=None, detected=None):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=gen, dtype=torch.float64)
    truth = torch.multinomial(torch.ones(c), b, replacement=True, generator=gen).bincount(minlength=c).double()
    g = truth @ means + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
    stats = ClassStatistics(torch.eye(d, dtype=torch.float64), means, torch.eye(d, dtype=torch.float64), False,
                            False, 1)
    quad, lin, offset = stats.terms(g[None], torch.tensor([1.0]))
    det = torch.zeros(1, c, dtype=torch.bool) if detected is None else detected[None]
    return P.Evidence(det, quad, lin, offset, temperature, dof, d, None), truth


@pytest.mark.parametrize("prior_spec", ["clients", "public", "dirichlet:0.5"])
@pytest.mark.parametrize("dof", [None, 4.0])
def test_sampler_marginals_and_map_match_enumeration(prior_spec, dof):
    c, b = 3, 5
    prior = P.make_prior(prior_spec, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
                         ("iid", "dirichlet:0.5", "shards"))
    detected = torch.tensor([True, False, False])
    ev, _ = random_evidence(c, 4, b, seed=3, temperature=4.0, dof=dof, detected=detected)
    ev = P.Evidence(ev.detected, ev.quad, ev.lin, ev.offset, ev.temperature, ev.dof, ev.dim,
                    torch.full((1, c), math.log(0.3), dtype=torch.float64))
    support, probs = exact_posterior(prior, ev, b)
    exact_marg = torch.zeros(c, b + 1, dtype=torch.float64)
    for cls in range(c):
        exact_marg[cls].index_add_(0, support[:, cls].long(), probs)
    res = P.sample(prior, ev, torch.tensor([b]), chains=64, sweeps=150, seed=1)
    assert (res.marginals[0] - exact_marg).abs().max() < 0.03
    assert torch.equal(res.map[0], support[probs.argmax()])
    assert exact_marg[0, 0] == 0 and res.marginals[0, 0, 0] == 0  # a detected class holds a sample


def test_class_conditional_solve_is_exact_on_a_synthetic_gradient():
    # g is exactly Σ_c n_c μ_c: a sharp likelihood must return n itself, for any prior.
    c, d, b = 6, 20, 9
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(c, d, generator=gen, dtype=torch.float64)
    truth = torch.tensor([3, 0, 2, 0, 4, 0], dtype=torch.float64)
    stats = ClassStatistics(torch.eye(d, dtype=torch.float64), means, torch.eye(d, dtype=torch.float64), False,
                            False, 1)
    quad, lin, offset = stats.terms((truth @ means)[None], torch.tensor([b]))
    assert float(P._r2(P.Evidence(torch.zeros(1, c, dtype=torch.bool), quad, lin, offset),
                       truth[None, None])) == pytest.approx(0, abs=1e-9)
    for spec in ("clients", "uniform", "dirichlet:0.5"):
        prior = P.make_prior(spec, torch.ones(c, dtype=torch.float64), ("iid", "dirichlet:0.5", "shards"))
        ev = P.Evidence(torch.zeros(1, c, dtype=torch.bool), quad, lin, offset, 0.01, None, d, None,
                        torch.ones(1, dtype=torch.bool))
        res = P.sample(prior, ev, torch.tensor([b]), chains=8, sweeps=30)
        assert torch.equal(res.map[0], truth)
        assert bool((res.marginals[0].gather(1, truth.long()[:, None]) > 0.99).all())


def test_a_silent_gradient_leaves_the_prior():
    c, b = 4, 6
    prior = P.make_prior("public", torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64))
    ev = P.Evidence(torch.zeros(1, c, dtype=torch.bool), silent=torch.ones(1, dtype=torch.bool), temperature=math.inf)
    res = P.sample(prior, ev, torch.tensor([b]), chains=64, sweeps=150, seed=2)
    for cls, f in enumerate([0.4, 0.3, 0.2, 0.1]):
        binomial = torch.tensor([math.comb(b, m) * f ** m * (1 - f) ** (b - m) for m in range(b + 1)],
                                dtype=torch.float64)
        assert (res.marginals[0, cls] - binomial).abs().max() < 0.03
    support = compositions(b, c)
    assert torch.equal(res.map[0], support[prior.log_prob(support[None], torch.tensor([b]))[0].argmax()])


def test_intervals_and_log_score():
    marg = torch.tensor([[[0.02, 0.03, 0.9, 0.05, 0.0]]], dtype=torch.float64)
    assert P.interval(marg, 0.9).tolist() == [[[1, 2]]]  # P(n <= 0) = 0.02 < 0.05 <= P(n <= 1); P(n <= 2) = 0.95
    assert P.interval(marg, 0.5).tolist() == [[[2, 2]]]
    assert float(P.marginal_log_score(marg, torch.tensor([[2.0]]))) == pytest.approx(math.log(0.9))
    assert float(P.marginal_log_score(marg, torch.tensor([[4.0]]))) == pytest.approx(math.log(1e-3))


def test_shard_supports_are_counted_exactly():
    for c, b in ((3, 5), (4, 6), (5, 4)):
        support = compositions(b, c)
        counted = P._log_splits(c, b, torch.arange(1, c + 1, dtype=torch.float64))
        for k in range(1, c + 1):
            q, r = divmod(b, k)
            allowed = {0, q} | ({q + 1} if r else set())
            brute = sum(1 for row in support.tolist() if set(row) <= allowed and q > 0)
            assert (math.exp(counted[k - 1]) if math.isfinite(counted[k - 1]) else 0) == pytest.approx(brute)


def test_prior_specs_are_checked():
    f = torch.ones(3, dtype=torch.float64)
    assert P.make_prior("dirichlet:0.5", f).components[0][0] == "dirichlet"
    for bad in ("dirichlet", "dirichlet:-1", "dirichlet:x", "flat", "public:1"):
        with pytest.raises(ValueError, match="LabelConfig.prior must be 'clients', 'public', 'uniform' or"):
            P.make_prior(bad, f)
    with pytest.raises(ValueError, match="LabelConfig.prior must be"):
        L.LabelConfig(prior="flat")
    with pytest.raises(ValueError, match="LabelConfig.clients entries must be 'iid', 'dirichlet:A' or 'shards'"):
        L.LabelConfig(clients=("iid", "natural"))
    with pytest.raises(ValueError, match="'dirichlet:A' needs A > 0"):
        L.LabelConfig(clients=("dirichlet:0",))
    for field in ("simulations", "chains", "sweeps"):
        with pytest.raises(ValueError, match=f"LabelConfig.{field} must be a positive int"):
            L.LabelConfig(**{field: 0})
    with pytest.raises(ValueError, match="LabelConfig.level must be in"):
        L.LabelConfig(level=1.0)
