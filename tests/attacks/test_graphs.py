import logging

import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import attack
from fastleak.attacks.adam import AdamRun
from fastleak.attacks.graphs import _agree, capture_step
from fastleak.attacks.presets import PRESETS
from fastleak.attacks.problem import Problem
from fastleak.federated import fedsgd
from tests.ops.devices import cuda_only


@pytest.fixture(scope="module")
def convnet_case():
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("convnet", 10, seed=0, width=8)
    return model, x, y, fedsgd(model, x, y)


def _run(case, **config) -> AdamRun:
    model, _, y, obs = case
    cfg = PRESETS.get("inverting").replace(iterations=4, search={}, **config)
    return AdamRun(Problem(model, [obs], cfg, 3, [y], 0, torch.device("cpu")))


def test_agreement_allows_rounding_and_refuses_a_different_result():
    expected = torch.tensor([1.0, -2.0, 3.0, float("nan")])
    assert _agree(expected * (1 + 1e-5), expected)
    assert not _agree(expected * 1.01, expected)
    assert not _agree(expected.flip(0), expected)


def test_adam_steps_on_the_cpu_never_capture(convnet_case):
    run = _run(convnet_case)
    run.step(0)
    assert run.graph is None


def test_fresh_images_depend_on_seed_and_step_only(convnet_case):
    run = _run(convnet_case)
    problem = run.problem
    again = _run(convnet_case).problem
    assert torch.equal(problem.fresh_images(5), again.fresh_images(5))
    assert not torch.equal(problem.fresh_images(5), problem.fresh_images(6))
    assert not torch.equal(problem.fresh_images(0), _run(convnet_case).problem.init_images())
    assert problem.fresh_images(0).shape == (3, 2, 3, 32, 32)


def test_reset_restarts_only_the_failed_rows_and_their_adam_moments(convnet_case):
    run = _run(convnet_case)
    run.step(0)
    before = run.x.detach().clone()
    moments = {k: v.clone() for k, v in run.opt.state[run.x].items() if k in ("exp_avg", "exp_avg_sq")}
    with torch.no_grad():
        run._reset(torch.tensor([False, True, False]), 7)
    torch.testing.assert_close(run.x[1], run.problem.fresh_images(7)[1])
    assert torch.equal(run.x[0], before[0]) and torch.equal(run.x[2], before[2])
    for key, old in moments.items():
        new = run.opt.state[run.x][key]
        assert bool((new[1] == 0).all()) and torch.equal(new[0], old[0])
    assert int(run.resets) == 1
    with torch.no_grad():
        run._reset(torch.tensor([False, False, False]), 8)
    assert int(run.resets) == 1


@cuda_only
def test_graphed_attack_matches_the_eager_attack(convnet_case, caplog):
    model, _, y, obs = convnet_case
    opts = dict(labels=y, restarts=3, iterations=5, seed=0, record_every=1, signed=False, device="cuda")
    with caplog.at_level(logging.INFO, logger="fastleak.attacks.graphs"):
        graphed = attack(obs, model, "inverting", cuda_graph=True, **opts)
    assert "captured as a CUDA graph" in caplog.text
    eager = attack(obs, model, "inverting", cuda_graph=False, **opts)
    torch.testing.assert_close(graphed.history, eager.history, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(graphed.restart_images, eager.restart_images, rtol=1e-3, atol=1e-4)


@cuda_only
def test_a_step_that_synchronises_with_the_host_is_not_captured(caplog):
    v = torch.ones(4, device="cuda", requires_grad=True)

    def step():
        loss = (v * float(v.sum())).sum()
        return loss.detach().reshape(1), torch.autograd.grad(loss, [v])

    with caplog.at_level(logging.WARNING, logger="fastleak.attacks.graphs"):
        assert capture_step(step, [v]) is None
    assert "running it eagerly" in caplog.text
    assert torch.equal(v.detach(), torch.ones(4, device="cuda"))


@cuda_only
def test_a_captured_step_follows_its_variables():
    v = torch.linspace(0, 1, 8, device="cuda").requires_grad_(True)

    def step():
        loss = (v.sin() * v).sum()
        return loss.detach().reshape(1), torch.autograd.grad(loss, [v])

    graph = capture_step(step, [v])
    assert graph is not None
    with torch.no_grad():
        v.mul_(2)
    losses, (grad,) = graph()
    want = (v.sin() + v * v.cos()).detach()
    torch.testing.assert_close(grad, want)
    torch.testing.assert_close(losses, (v.sin() * v).sum().detach().reshape(1))
