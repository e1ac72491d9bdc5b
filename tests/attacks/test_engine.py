import copy
import dataclasses

import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, attack, attack_many
from fastleak.attacks.problem import Problem
from fastleak.attacks.simulate import ClientSimulator
from fastleak.federated import fedavg, fedsgd
from fastleak.federated.observation import Pair
from fastleak.metrics import evaluate, psnr
from tests.attacks.resuming import INTERRUPT_AT, straight_and_resumed

# Where two code paths compute the same function, they are compared in float64 to this fraction of each
# tensor's largest entry: 4.5e6 eps, far above what rounding loses in a cancelling sum (1e4 eps of the
# tensor in the first layers' float32 gradients, whose rounding follows the CPU's convolution kernels),
# far below what a wrong term changes.
EXACT = 1e-9


def in_float64(model, *tensors):
    return (copy.deepcopy(model).double(), *(t.double() for t in tensors))


@pytest.fixture(scope="module")
def convnet_case():
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("convnet", 10, seed=0, width=8).eval()
    return model, x, y


def test_simulated_gradient_at_the_true_batch_matches_the_observation(convnet_case):
    # In float32 the first layers' gradients sum terms far larger than themselves, and the rounding of
    # those sums follows the CPU's convolution kernels: 2e-7 apart with oneDNN's AVX2 kernels, 3e-6 on
    # another AMD EPYC, where 1e-6 was allowed (1e4 eps of the tensor). In float64 (EXACT) they agree.
    model, x, y = convnet_case
    model, x = in_float64(model, x)
    obs = fedsgd(model, x, y)
    sim = ClientSimulator(model, [obs], 0, restarts=2)
    shared = sim.shared(x.expand(2, *x.shape), y.expand(2, -1))
    for got, want in zip(shared, obs.pairs[0].shared):
        torch.testing.assert_close(got[1], want, rtol=0, atol=EXACT * float(want.abs().max()))


def test_dummy_batches_at_one_model_state_each_get_their_own_gradient_and_double_backward(lenet_case):
    model, _, _, _ = lenet_case
    x, y = data.load("cifar10", 4, seed=3)
    model, x = in_float64(model, x)
    observations = [fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(2)]
    sim = ClientSimulator(model, observations, 0, restarts=2)
    assert sim.shared_state
    dummy = torch.rand(4, 1, *x.shape[1:], generator=torch.Generator().manual_seed(0), dtype=x.dtype).requires_grad_()
    labels = y.view(4, 1)
    got = sim.shared(dummy, labels)
    got_dx, = torch.autograd.grad(sum(g.pow(2).sum() for g in got), dummy)
    for q in range(4):
        xq = dummy[q].detach().requires_grad_()
        loss = torch.nn.functional.cross_entropy(model(xq), labels[q])
        want = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
        want_dx, = torch.autograd.grad(sum(g.pow(2).sum() for g in want), xq)
        for g, w in zip(got, want):
            torch.testing.assert_close(g[q], w, rtol=0, atol=EXACT * float(w.abs().max()))
        torch.testing.assert_close(got_dx[q], want_dx, rtol=0, atol=EXACT * float(want_dx.abs().max()))


def test_parameters_are_replicated_for_different_states_and_for_batchnorm(lenet_case, convnet_case):
    model, x, y, obs = lenet_case
    moved = dataclasses.replace(obs.pairs[0], state={n: t + 1e-3 for n, t in obs.pairs[0].state.items()})
    assert not ClientSimulator(model, [obs, dataclasses.replace(obs, pairs=(moved,))], 0, restarts=1).shared_state
    conv, cx, cy = convnet_case
    assert not ClientSimulator(conv, [fedsgd(conv, cx, cy)], 0, restarts=2).shared_state


@pytest.mark.parametrize("batch_size", [None, 1])
def test_unrolled_fedavg_at_the_true_batch_reproduces_the_update(convnet_case, batch_size):
    model, x, y = convnet_case
    model, x = in_float64(model, x)
    obs = fedavg(model, x, y, local_steps=3, lr=0.05, batch_size=batch_size)
    sim = ClientSimulator(model, [obs], 0, restarts=1, fedavg_mode="unroll")
    shared = sim.shared(x[None], y[None])
    steps = len(sim.schedule())
    for got, target, update in zip(shared, sim.target(), obs.pairs[0].shared):
        torch.testing.assert_close(target[0], -update / (0.05 * steps))
        torch.testing.assert_close(got[0] * (-0.05 * steps), update, rtol=0, atol=EXACT * float(update.abs().max()))


def test_pseudo_gradient_target_has_gradient_sign_and_scale(convnet_case):
    model, x, y = convnet_case
    model, x = in_float64(model, x)
    obs = fedavg(model, x, y, local_steps=1, lr=0.1)
    sim = ClientSimulator(model, [obs], 0, restarts=1, fedavg_mode="pseudo")
    grads = fedsgd(model, x, y).pairs[0].shared
    for got, want, p in zip(sim.target(), grads, model.parameters()):
        # the update stores p - lr * g, rounded to eps * |p|: the target -update / lr carries eps * |p| / lr
        stored = 4 * torch.finfo(p.dtype).eps * float(p.abs().max()) / 0.1
        torch.testing.assert_close(got[0], want, rtol=0, atol=EXACT * float(want.abs().max()) + stored)


def test_dlg_reconstructs_a_real_image_far_above_its_initialisation(lenet_case):
    model, x, y, obs = lenet_case
    # DLG is sensitive to its initialisation; the best of two restarts (by loss) is scored
    res = attack(obs, model, "dlg", labels=y, restarts=2, iterations=15, seed=0)
    start = torch.rand((2, 1, *x.shape[1:]), generator=torch.Generator().manual_seed(0))[res.best_restart]
    baseline = psnr(start, x).item()
    achieved = evaluate(res.images, x).psnr
    assert achieved > baseline + 8, (baseline, achieved)
    assert res.images.shape == x.shape and res.labels.tolist() == y.tolist()


def test_dlg_optimised_soft_labels_find_the_label(lenet_case):
    model, x, y, obs = lenet_case
    res = attack(obs, model, "dlg", restarts=2, iterations=10, seed=1)
    assert res.label_method == "optimize"
    assert res.labels.tolist() == y.tolist()


def test_inverting_lowers_its_objective_and_returns_valid_images(convnet_case):
    model, x, y = convnet_case
    obs = fedsgd(model, x, y)
    res = attack(obs, model, "inverting", labels=y, restarts=3, iterations=30, record_every=5, seed=0, search={})
    assert res.restart_images.shape == (3, *x.shape)
    assert res.history.shape == (6, 3)
    assert bool((res.history[-1] < res.history[0]).all())
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert res.best_restart == int(res.restart_losses.argmin())
    assert res.iterations_per_second > 0


def test_callback_receives_device_tensors_every_record_step(convnet_case):
    model, x, y = convnet_case
    seen = []
    attack(fedsgd(model, x, y), model, "inverting", labels=y, restarts=2, iterations=6, record_every=2, search={},
           callback=lambda step, losses: seen.append((step, losses.shape, isinstance(losses, torch.Tensor))))
    assert seen == [(2, (2,), True), (4, (2,), True), (6, (2,), True)]


@pytest.mark.parametrize("preset", ["inverting", "dlg"])
def test_interrupted_attack_resumes_to_the_uninterrupted_result(convnet_case, tmp_path, preset):
    model, x, y = convnet_case
    obs = fedsgd(model, x, y)
    opts = dict(labels=y, restarts=2, iterations=8, seed=0, record_every=1, checkpoint_every=2)
    if preset == "dlg":
        opts["lbfgs_inner"] = 2
    straight, resumed = straight_and_resumed(obs, model, preset, tmp_path / "run.ckpt", **opts)
    assert torch.equal(resumed.restart_images, straight.restart_images)
    torch.testing.assert_close(resumed.history, straight.history, rtol=0, atol=0, equal_nan=True)  # NaN: dropped
    assert resumed.iterations_per_second * resumed.wall_time == pytest.approx(8 - INTERRUPT_AT)  # the resumed part


def test_checkpoint_of_another_configuration_is_refused(convnet_case, tmp_path):
    model, x, y = convnet_case
    obs = fedsgd(model, x, y)
    path = tmp_path / "run.ckpt"
    attack(obs, model, "inverting", labels=y, restarts=1, iterations=2, checkpoint=path, checkpoint_every=1)
    with pytest.raises(ValueError, match="different attack configuration"):
        attack(obs, model, "inverting", labels=y, restarts=1, iterations=2, checkpoint=path, tv=0.5)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        attack(obs, model, "inverting", labels=y, restarts=1, iterations=2, checkpoint=path)


def test_attack_many_runs_independent_problems(convnet_case):
    model, x, y = convnet_case
    observations = [fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(2)]
    opts = dict(restarts=2, iterations=6, seed=0, record_every=1, search={})
    together = attack_many(observations, model, "inverting", labels=[y[:1], y[1:]], **opts)
    alone = attack(observations[0], model, "inverting", labels=y[:1], **opts)
    assert len(together) == 2 and together[1].restart_images.shape == (2, 1, *x.shape[1:])
    # problem 0 starts from the same images in both runs and must not feel problem 1
    torch.testing.assert_close(together[0].history, alone.history, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together[0].restart_images, alone.restart_images, rtol=1e-4, atol=1e-5)
    assert bool((together[1].history[-1] < together[1].history[0]).all())


def test_group_consistency_pulls_restarts_together(convnet_case):
    model, x, y = convnet_case
    obs = fedsgd(model, x, y)
    cfg = PRESETS.get("gradinversion").replace(iterations=4, group_every=1, group_start=0.0, bn=0.0)
    problem = Problem(model, [obs], cfg, 3, [y], 0, torch.device("cpu"))
    group = problem.prior("group")
    images = problem.init_images()
    group.update_consensus(images, problem)
    assert group.center.shape == (1, *x.shape)
    spread = group.term(images, problem)
    assert spread.shape == (3,) and bool((spread > 0).all())
    same = images[:1].expand_as(images).clone()
    group.update_consensus(same, problem)
    assert group.term(same, problem).max() < 1e-4


def test_bad_inputs_get_clear_errors(convnet_case, lenet_case):
    model, x, y = convnet_case
    obs = fedsgd(model, x, y)
    with pytest.raises(ValueError, match="unknown attack preset 'nope'; valid names"):
        attack(obs, model, "nope", labels=y)
    with pytest.raises(ValueError, match="unknown attack option"):
        attack(obs, model, "inverting", labels=y, colour=3)
    with pytest.raises(ValueError, match="labels has 1 entries but the observation's batch has 2"):
        attack(obs, model, "inverting", labels=y[:1])
    with pytest.raises(ValueError, match="restarts must be a positive int"):
        attack(obs, model, "inverting", labels=y, restarts=0)
    lenet = lenet_case[0]
    with pytest.raises(ValueError, match="does not match the model"):
        attack(obs, lenet, "inverting", labels=y)
    poisoned = dataclasses.replace(obs, pairs=(Pair(state=obs.pairs[0].state, shared=tuple(
        torch.full_like(t, float("nan")) for t in obs.pairs[0].shared)),))
    with pytest.raises(ValueError, match="NaN or inf"):
        attack(poisoned, model, "inverting", labels=y)


def test_given_labels_override_a_preset_that_optimises_labels(lenet_case):
    model, x, y, obs = lenet_case
    res = attack(obs, model, "dlg", labels=y, restarts=1, iterations=1, lbfgs_inner=2)
    assert res.config.labels == "recover" and res.label_method == "given"
    assert torch.equal(res.labels, y)


def test_observations_that_do_not_fit_together_are_refused_by_name(lenet_case):
    model, x, y, obs = lenet_case
    other = fedsgd(model, x, y, reduction="sum")
    with pytest.raises(ValueError, match=r"observations\[1\].reduction = 'sum' differs from observations\[0\] "
                                         r"\('mean'\); attack_many needs observations of one protocol"):
        attack_many([obs, other], model, "inverting", labels=[y, y])
    with pytest.raises(TypeError, match=r"observations\[1\] must be a fastleak Observation, got dict"):
        attack_many([obs, {}], model, "inverting")
    with pytest.raises(ValueError, match="labels must be None, 'recover', 'optimize' or label tensors, got 'guess'"):
        attack(obs, model, "inverting", labels="guess")
