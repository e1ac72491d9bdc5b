import pytest
import torch

import fastleak
from fastleak import models
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.inspection import SIGNALS, Verdict, inspect
from fastleak.malicious import presets
from tests.inspection.conftest import planted_trap_mlp, shrunk_rows


def test_the_package_exports_inspect():
    assert fastleak.inspect is inspect and "inspect" in dir(fastleak)
    assert set(SIGNALS.names()) == {"parallel_rows", "trap_rows", "readable_rows"}


@pytest.mark.parametrize("name", models.names())
def test_every_registry_model_at_initialisation_is_honest(name, digits):
    shape = (1, 28, 28) if name != "resnet18" else (1, 32, 32)
    x = digits if name != "resnet18" else torch.nn.functional.pad(digits, (2, 2, 2, 2))
    net = models.build(name, 10, in_shape=shape)
    for verdict in (inspect(net), inspect(net, x[:128], draws=2)):
        assert not verdict.malicious and verdict.kind is None
        assert not any(e.alarming for e in verdict.evidence)
        assert verdict.summary().startswith("honest")


@pytest.mark.parametrize("batch", [8, 64])
@pytest.mark.parametrize("preset,options,kind", [("imprint", {}, "imprint"),
                                                  ("imprint", {"structure": "cumulative"}, "imprint"),
                                                  ("imprint_pca", {}, "imprint"),
                                                  ("imprint_pca", {"clients": 3}, "imprint"),
                                                  ("trap", {}, "trap")])
def test_the_shipped_presets_are_found_with_and_without_data(preset, options, kind, batch, digits, public_digits):
    model = presets.build(preset, models.build("lenet", 10, in_shape=(1, 28, 28)), public_digits, batch, **options)
    bare = inspect(model)
    assert bare.malicious and bare.kind == kind and bare.recoverable_fraction is None
    assert bare.summary().startswith(f"MALICIOUS ({kind}): block.bins")
    with_data = inspect(model, digits, batch_size=batch, draws=2)
    assert with_data.malicious and with_data.kind == kind and with_data.recoverable_fraction > 0.2


def test_trap_weights_planted_in_an_unchanged_class_are_found(public_digits, digits):
    net = planted_trap_mlp(public_digits, 64)
    verdict = inspect(net, digits, batch_size=64, draws=2)
    assert verdict.malicious and verdict.kind == "trap"
    assert {e.signal for e in verdict.evidence if e.alarming} == {"trap_rows", "readable_rows"}
    assert verdict.layers == ("linear0", "linear1", "fc")


def test_inspect_leaves_the_model_as_it_was(public_digits):
    model = presets.build("imprint", models.build("lenet", 10, in_shape=(1, 28, 28)), public_digits, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    inspect(model, public_digits[:32])
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_model_without_fully_connected_layers_is_honest_and_says_so():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    verdict = inspect(net, in_shape=(1, 8, 8))
    assert isinstance(verdict, Verdict) and not verdict.malicious and verdict.layers == ()
    assert "no fully connected layer" in verdict.summary()


def test_bad_arguments_name_what_was_expected(digits):
    net = models.build("mlp", 10, in_shape=(1, 28, 28))
    with pytest.raises(InvalidTypeError, match="model must be a torch.nn.Module"):
        inspect("mlp")
    with pytest.raises(InvalidValueError, match="x must be a floating-point tensor"):
        inspect(net, torch.zeros(4, 1, 28, 28, dtype=torch.long))
    with pytest.raises(InvalidValueError, match="x contains NaN"):
        inspect(net, torch.full((2, 1, 28, 28), float("nan")))
    with pytest.raises(InvalidValueError, match="batch_size must be a positive int"):
        inspect(net, digits, batch_size=0)
    with pytest.raises(InvalidValueError, match="in_shape is needed"):
        inspect(torch.nn.Linear(3, 2))
    with pytest.raises(InvalidValueError, match="does not accept inputs of shape"):
        inspect(net, in_shape=(3, 5, 5))


def test_each_client_model_of_a_separated_server_is_found(public_digits, digits):
    from fastleak.malicious import separate

    union = presets.build("imprint_pca", models.build("lenet", 10, in_shape=(1, 28, 28)), public_digits, 16, clients=2)
    for own in separate(union):
        verdict = inspect(own, digits, batch_size=16, draws=2)
        assert verdict.malicious and verdict.kind == "imprint" and verdict.recoverable_fraction > 0.5


def test_trap_rows_that_lean_too_little_are_found_by_their_shrunk_positive_entries_and_trained_rows_are_not():
    def mlp_with(rows: torch.Tensor) -> torch.nn.Module:
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, len(rows)), torch.nn.ReLU(),
                                  torch.nn.Linear(len(rows), 10))
        with torch.no_grad():
            net[1].weight.copy_(rows)
        return net

    verdict = inspect(mlp_with(shrunk_rows(16, 0.95)), in_shape=(3, 32, 32))
    assert verdict.malicious and verdict.kind == "trap"
    assert "signs balanced" in verdict.evidence[0].summary
    assert not inspect(mlp_with(shrunk_rows(16, 1.0)), in_shape=(3, 32, 32)).malicious
