import pytest
import torch

from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig

Q, N = 5, 16


def _problems(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(Q, N, N, generator=g, dtype=torch.float64)
    a = a @ a.transpose(1, 2) + 0.5 * torch.eye(N, dtype=torch.float64)
    b = torch.randn(Q, N, generator=g, dtype=torch.float64)
    x0 = 0.1 * torch.randn(Q, N, generator=g, dtype=torch.float64)
    return a, b, x0


def _f(x, a, b):
    return 0.5 * torch.einsum("...i,...ij,...j->...", x, a, x) - (b * x).sum(-1) + 0.1 * x.pow(4).sum(-1)


def _closure(a, b):
    def closure(x):
        x = x.detach().requires_grad_()
        loss = _f(x, a, b)
        grad, = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad
    return closure


@pytest.mark.parametrize("history", [3, 10])
def test_matches_torch_lbfgs_on_each_problem_alone(history):
    a, b, x0 = _problems()
    opt = BatchedLBFGS(x0, LBFGSConfig(lr=1.0, history_size=history))
    iters = 12
    for _ in range(iters):
        opt.step(_closure(a, b))
    for q in range(Q):
        x = x0[q].clone().requires_grad_()
        ref = torch.optim.LBFGS([x], lr=1.0, history_size=history, max_iter=iters, max_eval=10**6)

        def closure():
            ref.zero_grad()
            loss = _f(x, a[q], b[q])
            loss.backward()
            return loss

        ref.step(closure)
        torch.testing.assert_close(opt.x[q], x.detach(), rtol=1e-9, atol=1e-10)


def test_a_finished_problem_leaves_the_others_histories_intact():
    a, b, x0 = _problems()
    b[0], x0[0] = 0.0, 0.0  # problem 0 starts at its minimum: no curvature pair is ever stored
    opt = BatchedLBFGS(x0, LBFGSConfig(history_size=3))
    for _ in range(7):
        opt.step(_closure(a, b))
    assert opt.state["count"][0] == 0 and bool((opt.state["count"][1:] == 3).all())
    for q in (1, Q - 1):
        alone = BatchedLBFGS(x0[q:q + 1], LBFGSConfig(history_size=3))
        for _ in range(7):
            alone.step(_closure(a[q:q + 1], b[q:q + 1]))
        torch.testing.assert_close(opt.x[q], alone.x[0], rtol=1e-12, atol=1e-12)


def test_problems_do_not_influence_each_other():
    a, b, x0 = _problems()
    full = BatchedLBFGS(x0, LBFGSConfig(history_size=5))
    alone = BatchedLBFGS(x0[:1], LBFGSConfig(history_size=5))
    scaled_b = b.clone()
    scaled_b[1:] *= 100.0  # very different problems beside problem 0
    for _ in range(8):
        full.step(_closure(a, scaled_b))
        alone.step(_closure(a[:1], b[:1]))
    torch.testing.assert_close(full.x[0], alone.x[0], rtol=1e-10, atol=1e-12)


def test_backtracking_never_increases_the_loss():
    a, b, x0 = _problems(1)
    opt = BatchedLBFGS(x0, LBFGSConfig(lr=10.0, history_size=5, line_search="backtracking"))
    closure = _closure(a, b)
    previous = _f(x0, a, b)
    for _ in range(10):
        losses = opt.step(closure)
        assert bool((losses <= previous + 1e-12).all())
        previous = losses


def test_state_dict_round_trip_continues_identically():
    a, b, x0 = _problems(2)
    closure = _closure(a, b)
    one = BatchedLBFGS(x0, LBFGSConfig(history_size=4))
    for _ in range(5):
        one.step(closure)
    two = BatchedLBFGS(torch.zeros_like(x0), LBFGSConfig(history_size=4))
    two.load_state_dict(one.state_dict())
    for _ in range(5):
        one.step(closure)
        two.step(closure)
    assert torch.equal(one.x, two.x)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"x must have shape \[Q, n\]"):
        BatchedLBFGS(torch.zeros(3))
    with pytest.raises(ValueError, match="line_search"):
        BatchedLBFGS(torch.zeros(2, 3), LBFGSConfig(line_search="wolfe"))
