import logging

import pytest
import torch

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd
from fastleak.labels.conditional import class_statistics
from fastleak.labels.evidence import gather
from fastleak.labels.presence import detected
from fastleak.labels.public import as_public, draw_counts


def prototypes_model():
    """A Flatten + Linear model in float64 and one prototype input per class (4 classes, 5 inputs)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 4)).double()
    protos = torch.rand(4, 1, 5, dtype=torch.float64)
    return model, protos


def test_class_conditional_counts_are_exact_when_every_image_of_a_class_contributes_alike():
    # Public images: 6 copies of each class's prototype, so μ_c is each class's exact contribution and
    # the victim batch's gradient is exactly Σ_c n_c μ_c: the posterior must return n.
    model, protos = prototypes_model()
    public = (protos.repeat_interleave(6, 0), torch.arange(4).repeat_interleave(6))
    config = L.LabelConfig(simulations=12, chains=8, sweeps=20)
    for truth in ([3, 0, 2, 1], [0, 5, 0, 0], [1, 1, 1, 4]):
        y = torch.repeat_interleave(torch.arange(4), torch.tensor(truth))
        obs = fedsgd(model, protos[y], y)
        found = L.counts(obs, model, "posterior", public=public, config=config)
        assert found.counts.tolist() == truth
        assert found.uncertainty == "posterior" and found.interval.shape == (4, 2)
        assert bool((found.probability > 0.9).all())


def test_public_data_of_the_wrong_shape_or_classes_is_a_one_line_error():
    model = M.build("lenet", 10, in_shape=(1, 28, 28), seed=0)
    x, y = D.load("mnist", 4, seed=0, labels="random")
    obs = fedsgd(model, x, y)
    px, py = D.load("mnist", 40, seed=1, split="train", labels="random")
    cases = [
        ((D.load("cifar10", 20, seed=0)[0], py[:20]), r"public images have shape \(3, 32, 32\) per sample, but the "
                                                      r"observations' input_shape is \(1, 28, 28\)"),
        ((px, py + 5), r"public labels must be class ids in \[0, 10\) for this model, got values in \[5, 14\]"),
        ((px[py < 5], py[py < 5]), r"public has no image of 5 of the model's 10 classes \(5, 6, 7, 8, 9\)"),
        ((px, py[:10]), "public has 40 images but 10 labels"),
        ((px.long(), py), "public images must be a floating-point tensor"),
        ((px, py.double()), "public labels must be an integer tensor"),
        (px, "public must be a PublicData or a pair"),
    ]
    for public, message in cases:
        with pytest.raises((ValueError, TypeError), match=message) as info:
            L.counts(obs, model, "posterior", public=public)
        assert "\n" not in str(info.value)


def test_presence_is_never_shown_for_an_absent_class():
    x, y = D.load("mnist", 32, seed=3, labels="repeat:8")
    for name, options in (("lenet", {}), ("convnet", {"width": 4})):
        model = M.build(name, 10, in_shape=(1, 28, 28), seed=0, **options)
        model.train(name == "convnet")
        for obs in (fedsgd(model, x, y), fedavg(model, x, y, local_steps=3, lr=0.1)):
            shown = detected(gather([obs], model), nonnegative_features=True)[0]
            present = torch.bincount(y, minlength=10) > 0
            assert not bool((shown & ~present).any())
            assert int(shown.sum()) >= 1


def test_fedavg_statistics_average_a_simulated_local_run(caplog):
    model = M.build("lenet", 10, in_shape=(1, 28, 28), seed=0)
    x, y = D.load("mnist", 8, seed=0, labels="random")
    data = as_public(D.load("mnist", 60, seed=1, split="train", labels="random"), 10, (1, 28, 28))
    gradient = class_statistics(model, fedsgd(model, x, y), 0, data, 8, 10)
    update = class_statistics(model, fedavg(model, x, y, local_steps=4, lr=0.5), 0, data, 8, 10)
    assert gradient.states == 1 and update.states == 4
    assert gradient.means.shape == update.means.shape == (10, 10 * (1 + gradient.projection.shape[1]))
    assert not torch.allclose(gradient.means, update.means)


def test_auto_with_public_data_picks_the_best_method_on_simulated_batches_and_reuses_them(caplog):
    model = M.build("lenet", 10, in_shape=(1, 28, 28), seed=0)
    batches = [D.load("mnist", 16, seed=s, labels="random") for s in range(2)]
    observations = [fedsgd(model, x, y) for x, y in batches]
    public = L.PublicData(*D.load("mnist", 200, seed=1, split="train"))
    config = L.LabelConfig(simulations=8, chains=8, sweeps=10)
    with caplog.at_level(logging.INFO, logger="fastleak.labels"):
        found = L.counts_many(observations, model, "auto", public=public, config=config)
    assert len(public.cache) == 1
    (cal,) = public.cache.values()
    names = L.candidates(16, 10, True)
    assert set(names) <= set(cal.scores)
    best = max(cal.scores[n] for n in names)
    assert all(f.method in names and cal.scores[f.method] == best for f in found)
    assert "highest LnAcc on 8 public batches simulated at the model state" in caplog.text
    assert all(f.interval is not None and f.probability is not None for f in found)
    for f in found:
        assert bool((f.interval[:, 0] <= f.counts).all()) or f.uncertainty == "simulation"
    L.counts_many(observations, model, "auto", public=public, config=config)
    assert len(public.cache) == 1


def test_simulated_client_distributions():
    gen = torch.Generator().manual_seed(0)
    f = torch.full((10,), 0.1, dtype=torch.float64)
    for kind in ("iid", "dirichlet:0.5", "shards"):
        for b in (1, 7, 64):
            counts = draw_counts(kind, b, f, gen)
            assert counts.shape == (10,) and int(counts.sum()) == b
    shards = draw_counts("shards", 12, f, torch.Generator().manual_seed(4))
    assert len(set(shards[shards > 0].tolist())) <= 2


def test_an_attack_recovers_its_labels_with_the_public_data():
    import fastleak

    model = M.build("lenet", 10, in_shape=(1, 28, 28), seed=0)
    x, y = D.load("mnist", 4, seed=0, labels="random")
    obs = fedsgd(model, x, y)
    public = L.PublicData(*D.load("mnist", 60, seed=1, split="train", labels="random"))
    expected = L.counts(obs, model, "posterior", public=public)
    result = fastleak.attack(obs, model, "inverting", labels="recover", label_public=public, restarts=1,
                             iterations=1, label_method="posterior")
    assert result.label_method == "posterior"
    assert torch.equal(result.labels.sort().values, expected.labels)


def test_experiments_take_the_other_split_as_public_data_by_default():
    from types import SimpleNamespace

    from fastleak.experiments import ExperimentSpec
    from fastleak.experiments.pipeline import label_public_data

    from fastleak import models

    lenet = models.build("lenet", 10, in_shape=(1, 28, 28))
    scenario = SimpleNamespace(images=torch.zeros(1, 1, 28, 28), model=lenet)
    public = label_public_data(ExperimentSpec(dataset="mnist", model="lenet"), scenario)
    assert public.num_images == 1000 and public.images.shape[1:] == (1, 28, 28)
    assert label_public_data(ExperimentSpec(dataset="mnist", public_data="none"), scenario) is None
    # a default that lacks classes of the model is left out; a named one must fit
    wide = SimpleNamespace(images=torch.zeros(1, 1, 28, 28), model=models.build("lenet", 100, in_shape=(1, 28, 28)))
    assert label_public_data(ExperimentSpec(dataset="mnist", model="lenet"), wide) is None
    with pytest.raises(ValueError, match="public has no image of 90 of the model's 100 classes"):
        label_public_data(ExperimentSpec(dataset="mnist", model="lenet", public_data="mnist:train"), wide)
    cifar = SimpleNamespace(images=torch.zeros(1, 3, 32, 32), model=models.build("lenet", 10))
    assert label_public_data(ExperimentSpec(dataset="cifar10"), cifar) is None  # no shipped train split
    with pytest.raises(ValueError, match="no 'train' split"):
        label_public_data(ExperimentSpec(dataset="cifar10", public_data="cifar10:train"), cifar)
    with pytest.raises(ValueError, match=r"public_data must be 'NAME\[:SPLIT\]'"):
        ExperimentSpec(public_data="mnist:val")
