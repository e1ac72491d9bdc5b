"""The presets of the optimisation attacks breaching configures: each resumes to its uninterrupted run,
runs many observations and restarts in one computation, and lowers its objective."""
import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, attack, attack_many
from fastleak.federated import fedsgd
from tests.attacks.resuming import straight_and_resumed

NEW_PRESETS = ("modern", "clsattack", "wei", "beyondinfering", "multiscale_ghiasi", "seethroughgradients")
# short runs: L-BFGS steps of 2 iterations, and the multiscale preset's stages within 8 steps
SHORT = {"wei": {"lbfgs_inner": 2}, "beyondinfering": {"lbfgs_inner": 2}, "multiscale_ghiasi": {"stages": 3}}


@pytest.fixture(scope="module")
def bn_case():
    """A BatchNorm ConvNet in train mode (the bn prior's taps and the features prior's forward pass)."""
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("convnet", 10, seed=0, width=8).train()
    return model, x, y


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_interrupted_attack_resumes_to_the_uninterrupted_result(bn_case, tmp_path, preset):
    model, x, y = bn_case
    obs = fedsgd(model, x, y)
    opts = dict(labels=y, restarts=2, iterations=8, seed=0, record_every=1, checkpoint_every=2, **SHORT.get(preset, {}))
    straight, resumed = straight_and_resumed(obs, model, preset, tmp_path / "run.ckpt", **opts)
    assert torch.equal(resumed.restart_images, straight.restart_images)
    assert torch.equal(resumed.history, straight.history)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_observations_and_restarts_run_in_one_computation(bn_case, preset, one_thread):
    model, x, y = bn_case
    observations = [fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(2)]
    opts = dict(restarts=2, iterations=6, seed=0, record_every=1, **SHORT.get(preset, {}))
    together = attack_many(observations, model, preset, labels=[y[:1], y[1:]], **opts)
    alone = attack(observations[0], model, preset, labels=y[:1], **opts)
    assert [r.restart_images.shape for r in together] == [(2, 1, *x.shape[1:])] * 2
    # observation 0 starts from the same images in both runs and must not feel observation 1 (on one
    # thread the dummy batches are simulated one after another, so rounding is the same in both runs)
    torch.testing.assert_close(together[0].history, alone.history, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together[0].restart_images, alone.restart_images, rtol=1e-5, atol=1e-6)
    for r in together:
        assert r.images.min() >= 0 and r.images.max() <= 1
        assert bool(torch.isfinite(r.restart_losses).all())
        # the objective at the returned images (L-BFGS: each restart's best point) against the first step's
        assert bool((r.restart_losses < r.history[0]).all()), f"{preset} did not lower its objective"


def test_breaching_settings_are_carried_over():
    modern = PRESETS.get("modern")
    assert (modern.signed, modern.lr_decay, modern.warmup, modern.init) == ("soft", "cosine", 50, "patterned-4")
    assert modern.priors["tv_power"] == {"weight": 0.1, "inner": 2.0, "outer": 0.5, "opponents": True, "eps": 1e-8}
    assert PRESETS.get("clsattack").priors.keys() == {"tv_power"}
    wei = PRESETS.get("wei")
    assert (wei.optimizer, wei.boxed, wei.init, wei.prior_weight("task")) == ("lbfgs", True, "patterned-16", 0.02)
    ghiasi = PRESETS.get("multiscale_ghiasi")
    assert (ghiasi.stages, ghiasi.adam_betas, ghiasi.adam_eps) == (7, (0.5, 0.99), 1e-4)
    seethrough = PRESETS.get("seethroughgradients")
    # breaching: 0.5 * 1e-4 ||r - t||^2 + 1e-4 TV + 1e-6 norm + 0.1 BN, noise 0.01 lr: all times 2e4 here
    assert (seethrough.prior_weight("tv_power"), seethrough.prior_weight("norm"), seethrough.prior_weight("bn"),
            seethrough.langevin) == pytest.approx((2.0, 0.02, 2000.0, 200.0))
