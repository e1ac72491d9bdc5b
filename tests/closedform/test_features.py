import logging

import pytest
import torch

import fastleak
from fastleak import data, federated, models
from fastleak.closedform import Target, final_features
from fastleak.closedform.features import target_features
from fastleak.errors import InvalidValueError
from fastleak.metrics import evaluate
from fastleak.models import features_and_logits


@pytest.fixture(scope="module")
def case():
    """A train-mode BatchNorm client (batch statistics mix the samples) whose classifier reads full-resolution
    feature maps, four unique labels."""
    x, y = data.load("mnist", 4, seed=0, labels="unique", size=12)
    model = models.build("plainconv", 10, in_shape=(1, 12, 12), width=4, depth=1)
    return model, x, y, federated.fedsgd(model, x, y)


def test_the_closed_form_features_are_the_batchs_own(case):
    model, x, y, obs = case
    truth = features_and_logits(model, x)[0].detach().double()
    target = Target(obs, model, obs.shared_dict())
    wanted, exact = target_features([target], [y], 200)
    assert exact.all() and (wanted[0] - truth).abs().max() < 1e-5 * truth.abs().max()
    unrefined = final_features(*(t[None] for t in (obs.shared_dict()["fc.weight"], obs.shared_dict()["fc.bias"],
                                                   model.fc.weight.detach(), model.fc.bias.detach())), y[None],
                               steps=0).features
    assert (unrefined[0] - truth).abs().max() > 100 * (wanted[0] - truth).abs().max()


@pytest.mark.slow
def test_images_that_produce_them_are_the_private_ones(case):
    model, x, y, obs = case
    res = fastleak.attack(obs, model, "feature_inversion", labels=y, restarts=2, iterations=300, seed=0)
    assert evaluate(res.images, x).psnr >= 30 and torch.equal(res.labels, y)
    assert res.restart_images.shape == (2, *x.shape) and res.iterations == 300
    assert res.history.shape == (30, 2) and res.history_steps[-1] == 300
    assert res.history[-1].max() < res.history[0].min()  # the feature objective fell in every restart
    assert res.restart_losses[res.best_restart] == res.restart_losses.min() < 0.1  # the gradient is explained


@pytest.mark.slow
def test_observations_and_restarts_are_optimised_together(case):
    model, x, y, obs = case
    x2, y2 = data.load("mnist", 4, seed=1, labels="unique", size=12)
    obs2 = federated.fedsgd(model, x2, y2)
    both = fastleak.attack_many([obs, obs2], model, "feature_inversion", labels=[y, y2], restarts=1, iterations=300)
    one = fastleak.attack(obs2, model, "feature_inversion", labels=y2, restarts=1, iterations=300)
    torch.testing.assert_close(both[1].images, one.images, atol=1e-5, rtol=0)
    assert evaluate(both[0].images, x).psnr >= 30


def test_repeated_labels_are_left_out_with_a_warning_and_none_unique_is_refused(case, caplog):
    model, x, y, _ = case
    pair = torch.tensor([int(y[0]), int(y[0]), int(y[2]), int(y[3])])  # the client trains on these labels
    obs = federated.fedsgd(model, x, pair)
    with caplog.at_level(logging.WARNING, logger="fastleak.closedform.features"):
        fastleak.attack(obs, model, "feature_inversion", labels=pair, restarts=1, iterations=2)
    assert "2 of 4 samples repeat a label" in caplog.text
    twins = torch.full_like(y, int(y[0]))
    with pytest.raises(InvalidValueError, match="needs samples whose label appears once"):
        fastleak.attack(federated.fedsgd(model, x, twins), model, "feature_inversion", labels=twins, iterations=2)
    with pytest.raises(InvalidValueError, match="distance must be one of cosine, l2"):
        fastleak.attack(obs, model, "feature_inversion", labels=pair, distance="l1", iterations=2)


def test_a_short_run_lowers_the_feature_objective_in_every_restart(case):
    model, x, y, obs = case
    res = fastleak.attack(obs, model, "feature_inversion", labels=y, restarts=2, iterations=40)
    assert res.history.shape == (4, 2) and (res.history[-1] < 0.5 * res.history[0]).all()
