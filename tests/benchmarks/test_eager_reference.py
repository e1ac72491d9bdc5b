"""The eager baseline of bench_attack.py computes what fastleak's engine computes, step for step."""
import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from benchmarks import eager_reference
from benchmarks.eager_reference import eager_attack_many, gradient_distance, total_variation
from fastleak.attacks import PRESETS, attack, attack_many
from fastleak.attacks.simulate import layer_weights
from fastleak.federated import fedavg, fedsgd
from fastleak.ops import grad_distance
from fastleak.ops import total_variation as fused_tv

STEPS = 5
# L-BFGS on the sigmoid LeNet amplifies rounding differences (float64 vs float32 sums, the engine's
# compact-form direction vs torch's two-loop recursion) when a step overshoots: the first step agrees
# to ~1e-6, an overshooting one later to ~3e-4.
LBFGS_RTOL = 1e-3
# Adam's first step moves every pixel by lr * g / (|g| + eps): a pixel whose gradient is within rounding of
# zero moves differently under another summation order (another CPU's convolution kernels), and the later
# objectives follow it: up to 1.9e-4 apart with oneDNN's SSE4.1 kernels against its AVX-512 ones. The
# first objective, at the same images, is one function computed twice and agrees to rounding (4e-7).
ADAM_RTOL = 1e-3
DLG_FIXED = PRESETS.get("dlg").replace(labels="recover", lbfgs_inner=1)


def assert_same_adam_objectives(eager: torch.Tensor, fast: torch.Tensor) -> None:
    """[restarts, steps] objectives: the first to rounding, the later ones to ADAM_RTOL."""
    torch.testing.assert_close(eager[:, :1], fast[:, :1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(eager[:, 1:], fast[:, 1:], rtol=ADAM_RTOL, atol=1e-6)


@pytest.fixture(scope="module")
def convnet_case():
    x, y = data.load("cifar10", 2, seed=1)
    model = models.build("convnet", 10, seed=0, width=8)  # train mode: BatchNorm on batch statistics
    return model, y, fedsgd(model, x, y)


@pytest.fixture(scope="module")
def lenet_case():
    x, y = data.load("cifar10", 2, seed=4)
    model = models.build("lenet", 10, seed=0)
    return model, y, fedsgd(model, x, y)


def test_distance_and_tv_match_the_fused_ops(convnet_case):
    _, _, obs = convnet_case
    target = list(obs.pairs[0].shared)
    rec = [t.flip(0) if t.dim() else t for t in target]
    weights = layer_weights("linear", len(target))
    for metric in ("l2", "cosine"):
        want = grad_distance([r[None] for r in rec], target, metric, weights, batched=True)[0]
        torch.testing.assert_close(gradient_distance(rec, target, metric, weights), want, rtol=1e-5, atol=1e-6)
    images, _ = data.load("cifar10", 4, seed=2)
    torch.testing.assert_close(total_variation(images), fused_tv(images, p=1).mean(), rtol=1e-5, atol=1e-7)


def test_inverting_adam_matches_the_engine(convnet_case):
    model, y, obs = convnet_case
    fast = attack(obs, model, "inverting", labels=y, restarts=2, iterations=STEPS, seed=3, record_every=1, search={})
    eager, = eager_attack_many([obs], model, "inverting", [y], restarts=2, seed=3, iterations=STEPS, search={})
    # both record the objective evaluated in each step (at the images before the update)
    assert_same_adam_objectives(eager.losses, fast.history.T)
    assert fast.history[-1].lt(fast.history[0]).all()
    torch.testing.assert_close(eager.images, fast.restart_images, rtol=0, atol=1e-4)


def test_dlg_lbfgs_matches_the_engine(lenet_case):
    model, y, obs = lenet_case
    fast = attack(obs, model, DLG_FIXED, labels=y, restarts=2, iterations=STEPS, seed=3, record_every=1)
    eager, = eager_attack_many([obs], model, DLG_FIXED, [y], restarts=2, seed=3, iterations=STEPS)
    # torch.optim.LBFGS.step returns the objective before its step, the engine records it after
    torch.testing.assert_close(eager.losses[:, 1:], fast.history[:-1].T, rtol=LBFGS_RTOL, atol=1e-6)
    assert fast.history[-1].lt(eager.losses[:, 0]).all()
    torch.testing.assert_close(eager.images, fast.restart_images, rtol=0, atol=1e-4)


def test_independent_attacks_match_attack_many(lenet_case):
    model, _, _ = lenet_case
    x, y = data.load("cifar10", 3, seed=5)
    observations = [fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(3)]
    labels = list(y.split(1))
    fast = attack_many(observations, model, DLG_FIXED, labels=labels, restarts=1, iterations=3, seed=7,
                       record_every=1)
    eager = eager_attack_many(observations, model, DLG_FIXED, labels, restarts=1, seed=7, iterations=3)
    for f, e in zip(fast, eager):
        torch.testing.assert_close(e.losses[:, 1:], f.history[:-1].T, rtol=LBFGS_RTOL, atol=1e-6)
        torch.testing.assert_close(e.images, f.restart_images, rtol=0, atol=1e-4)


def test_priors_and_layer_weights_match_the_engine(convnet_case):
    model, y, obs = convnet_case
    config = PRESETS.get("inverting").replace(distance="l2", lr=0.05, signed=False, layer_weights="linear",
                                              priors={"bn": {"weight": 1e-3}, "tv": {"weight": 0.02},
                                                      "l2": {"weight": 1e-4}})
    fast = attack(obs, model, config, labels=y, restarts=2, iterations=2, seed=3, record_every=1)
    eager, = eager_attack_many([obs], model, config, [y], restarts=2, seed=3, iterations=2)
    assert_same_adam_objectives(eager.losses, fast.history.T)


def test_dlg_preset_with_given_labels_matches_the_engine(lenet_case):
    model, y, obs = lenet_case
    fast = attack(obs, model, "dlg", labels=y, restarts=2, iterations=STEPS, seed=3, record_every=1, lbfgs_inner=1)
    eager, = eager_attack_many([obs], model, "dlg", [y], restarts=2, seed=3, iterations=STEPS, lbfgs_inner=1)
    torch.testing.assert_close(eager.losses[:, 1:], fast.history[:-1].T, rtol=LBFGS_RTOL, atol=1e-6)


def test_unsupported_settings_are_refused(convnet_case):
    model, y, obs = convnet_case
    with pytest.raises(ValueError, match="group consistency"):
        eager_attack_many([obs], model, "gradinversion", [y], iterations=1)
    update = fedavg(model, *data.load("cifar10", 2, seed=1), local_steps=2, lr=0.1)
    with pytest.raises(ValueError, match="gradient observations"):
        eager_attack_many([update], model, "inverting", [y], iterations=1)
    with pytest.raises(ValueError, match="plain restarts: search and halving must be empty"):
        eager_attack_many([obs], model, "inverting", [y], iterations=1)


def test_only_the_images_receive_gradients(convnet_case, monkeypatch):
    clients = []

    class Recorded(eager_reference._Client):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clients.append(self)

    monkeypatch.setattr(eager_reference, "_Client", Recorded)
    model, y, obs = convnet_case
    eager_attack_many([obs], model, "inverting", [y], iterations=2, search={})
    assert clients and all(p.grad is None for c in clients for p in c.model.parameters())
