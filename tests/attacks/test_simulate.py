import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks.priors import BatchNormStatistics
from fastleak.attacks.simulate import ClientSimulator

BN = BatchNormStatistics().tap()
from fastleak.federated import fedavg, fedsgd


@pytest.mark.parametrize("kind,model_name", [("gradient", "convnet"), ("update", "convnet"), ("gradient", "lenet")])
def test_one_dummy_batch_is_simulated_as_one_of_several(kind, model_name):
    """The single-dummy-batch path (no vmap) gives what the batched path gives that batch; the
    LeNet (no BatchNorm, one model state) takes the shared-state path."""
    x, y = data.load("cifar10", 2, seed=0, labels="random")
    options = {"width": 4} if model_name == "convnet" else {}
    model = models.build(model_name, 10, seed=0, **options).train().double()
    x = x.double()
    obs = fedsgd(model, x, y) if kind == "gradient" else fedavg(model, x, y, local_steps=2, lr=0.1)
    one = ClientSimulator(model, [obs], 0, restarts=1, taps=[BN])
    two = ClientSimulator(model, [obs], 0, restarts=2, taps=[BN])
    assert one.shared_state == two.shared_state == (model_name == "lenet")
    dummy = torch.rand(2, *x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dummy.requires_grad_(True)
    labels = y.expand(2, -1)
    single = one.shared(dummy[:1], labels[:1])
    batched = two.shared(dummy, labels)
    for a, b in zip(single, batched):
        assert a.shape == (1, *b.shape[1:])
        torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    # and the same gradient back to the dummy images (the double backward of the attack)
    d_single, = torch.autograd.grad(sum(g.pow(2).sum() for g in single), dummy)
    d_batched, = torch.autograd.grad(sum(g[0].pow(2).sum() for g in batched), dummy)
    torch.testing.assert_close(d_single, d_batched, rtol=1e-9, atol=1e-12)
    if one.tapped[0] is not None:
        torch.testing.assert_close(one.tapped[0][0], two.tapped[0][0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["gradient", "update"])
def test_dummy_batches_one_after_another_match_vmap(kind):
    """vmap_batches=False (the CPU path) gives the vectorised values and double backward."""
    x, y = data.load("cifar10", 2, seed=0, labels="random")
    model = models.build("convnet", 10, seed=0, width=4).train().double()
    x = x.double()
    obs = fedsgd(model, x, y) if kind == "gradient" else fedavg(model, x, y, local_steps=2, lr=0.1)
    dummy = torch.rand(3, *x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    dummy.requires_grad_(True)
    labels = y.expand(3, -1)
    results = []
    for vmap_batches in (True, False):
        sim = ClientSimulator(model, [obs], 0, restarts=3, taps=[BN], lean_conv=True, vmap_batches=vmap_batches)
        shared = sim.shared(dummy, labels)
        loss = sum(g.pow(2).sum() for g in shared) + sim.tapped[0].sum()
        results.append([*shared, sim.tapped[0], *torch.autograd.grad(loss, dummy)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("threads,batched", [(1, False), (2, True)])
def test_problem_batches_dummy_batches_on_several_cpu_threads_only(threads, batched):
    from fastleak.attacks import PRESETS
    from fastleak.attacks.problem import Problem

    x, y = data.load("cifar10", 2, seed=0)
    model = models.build("convnet", 10, seed=0, width=4)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        problem = Problem(model, [fedsgd(model, x, y)], PRESETS.get("inverting"), 2, [y], 0, torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    assert all(sim.vmap_batches == batched for sim in problem.sims)
