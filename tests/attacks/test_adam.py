import math

import pytest
import torch

from fastleak.attacks import PRESETS, attack
from fastleak.attacks.adam import AdamRun, rate_factor, stage_of, stage_sizes, stage_start
from fastleak.attacks.execution import Execution
from fastleak.attacks.problem import Problem


def run_for(case, **overrides):
    model, x, y, obs = case
    config = PRESETS.get("inverting").replace(search={}, **overrides)
    return AdamRun(Problem(model, [obs], config, 2, [y], 0, torch.device("cpu"), Execution()))


def test_rate_factor_warms_up_linearly_then_decays():
    assert [rate_factor(False, 4, 20, t) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert [rate_factor(True, 0, 8, t) for t in (0, 2, 3, 5, 7)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])
    assert rate_factor("cosine", 10, 110, 10) == 1.0
    assert rate_factor("cosine", 10, 110, 60) == pytest.approx(0.5)
    assert rate_factor("cosine", 10, 110, 109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_the_optimiser_follows_the_schedule(lenet_case):
    run = run_for(lenet_case, lr_decay="cosine", warmup=3, iterations=12)
    rates = []
    for step in range(12):
        rates.append(run.opt.param_groups[0]["lr"])
        run.step(step)
    assert rates == pytest.approx([0.1 * rate_factor("cosine", 3, 12, t) for t in range(12)])


def test_soft_sign_is_tanh_of_the_gradient_scaled_by_the_time_left(lenet_case):
    run = run_for(lenet_case, signed="soft", iterations=10)
    g = torch.linspace(-5, 5, 11)
    assert torch.allclose(run._direction(g.clone(), 0, True), torch.tanh(g))
    assert torch.allclose(run._direction(g.clone(), 6, True), torch.tanh(0.4 * g) / 0.4)
    assert torch.equal(run_for(lenet_case, signed=True)._direction(g.clone(), 3, True), g.sign())
    assert torch.equal(run_for(lenet_case, signed=False)._direction(g.clone(), 3, True), g)


def test_langevin_noise_has_its_scale_and_is_the_same_for_the_same_step(lenet_case):
    run = run_for(lenet_case, signed=False, langevin=2.0, lr=0.05)
    g = torch.zeros(100_000)
    noise = run._direction(g.clone(), 7, True)
    assert float(noise.std()) == pytest.approx(2.0 * 0.05, rel=0.02) and abs(float(noise.mean())) < 1e-3
    assert torch.equal(run._direction(g.clone(), 7, True), noise)
    assert not torch.equal(run._direction(g.clone(), 8, True), noise)
    assert torch.equal(run._direction(g.clone(), 7, False), g)  # soft labels get none


def test_stages_split_the_run_and_rise_to_the_input_size():
    assert stage_sizes(4, (28, 32)) == [(7, 8), (14, 16), (21, 24), (28, 32)]
    stages, iterations = 3, 8
    starts = [stage_start(k, stages, iterations) for k in range(stages + 1)]
    assert starts == [0, 3, 6, 8]
    assert [stage_of(t, stages, iterations) for t in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]
    # more stages than steps: the empty stages are skipped
    assert [stage_of(t, 5, 2) for t in range(2)] == [0, 2]


def test_a_staged_attack_optimises_small_images_and_returns_full_ones(lenet_case):
    model, x, y, obs = lenet_case
    run = run_for(lenet_case, stages=4, iterations=8)
    assert run.x.shape == (2, 1, 3, 8, 8) and run.variables()[0].shape == (2, 1, 3, 32, 32)
    for step in range(8):
        run.step(step)
        assert run.x.shape[-1] == 8 * (step // 2 + 1)
    result = attack(obs, model, "inverting", labels=y, restarts=2, iterations=8, stages=4, record_every=1, search={})
    assert result.images.shape == x.shape and bool((result.history[-1] < result.history[0]).all())
