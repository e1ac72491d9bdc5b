"""Label recovery on the registered models with real images (fastleak.data)."""
import pytest
import torch

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd


def images(name):
    size = D.info(name).num_images
    return D.load(name, size, seed=0)  # every image of the dataset once


@pytest.mark.parametrize("model_name,options", [("lenet", {}), ("convnet", {"width": 16})])
def test_idlg_is_exact_for_single_images(model_name, options):
    for data, classes in (("cifar10", 10), ("cifar100", 100)):
        model = M.build(model_name, classes, seed=1, **options)
        x, y = images(data)
        observations = [fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(len(y))]
        found = L.counts_many(observations, model, "auto")
        assert {c.method for c in found} == {"idlg"}
        assert torch.equal(torch.cat([c.labels for c in found]), y), f"{model_name} on {data}"


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["random", "repeat:4"])
def test_geng_and_ilrg_recover_duplicates_exactly_on_an_untrained_convnet(pattern):
    # BatchNorm uses its running statistics (eval mode), as in the published evaluations; with
    # batch statistics (train mode) the untrained softmax varies across samples and both
    # methods become approximate (see benchmarks/RESULTS_labels.md).
    model = M.build("convnet", 10, seed=0).eval()
    x, y = D.load("cifar10", 32, seed=0, labels=pattern)
    true = torch.bincount(y, minlength=10)
    assert int(true.max()) >= 4  # duplicates present
    obs = fedsgd(model, x, y)
    for method in ("geng", "ilrg", "geng_bias", "geng_shift"):
        out = L.counts(obs, model, method)
        assert torch.equal(out.counts, true), f"{method}: {out.counts.tolist()} != {true.tolist()}"


def test_fedavg_one_step_matches_fedsgd_and_sum_reduction_matches_mean():
    model = M.build("lenet", 10, seed=0)
    x, y = D.load("cifar10", 8, seed=3, labels="random")
    grad = fedsgd(model, x, y)
    for other in (fedavg(model, x, y, local_steps=1, lr=0.01), fedsgd(model, x, y, reduction="sum"),
                  fedavg(model, x, y, local_steps=1, lr=0.01, reduction="sum")):
        for method in ("geng", "ilrg", "llg"):
            a, b = L.counts(grad, model, method), L.counts(other, model, method)
            torch.testing.assert_close(a.estimates, b.estimates, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("classes,batch,pattern", [(10, 32, "random"), (100, 64, "random"), (100, 64, "repeat:4")])
def test_geng_shift_recovers_duplicates_exactly_on_the_dlg_lenet(classes, batch, pattern):
    # The sigmoid LeNet's softmax varies strongly across inputs, so which images the batch holds
    # moves its mean softmax by more than the 0.5 per class that rounding tolerates.
    model = M.build("lenet", classes, seed=0)
    for seed in range(3):
        x, y = D.load("cifar10" if classes == 10 else "cifar100", batch, seed=seed, labels=pattern)
        true = torch.bincount(y, minlength=classes)
        out = L.counts(fedsgd(model, x, y), model, "geng_shift")
        assert torch.equal(out.counts, true), f"seed {seed}: {out.counts.tolist()} != {true.tolist()}"
