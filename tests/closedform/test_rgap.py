import pytest
import torch
from torch import nn

import fastleak
from fastleak import data, federated, models
from fastleak.closedform import rank_analysis
from fastleak.closedform.rgap import chain
from fastleak.errors import InvalidValueError
from fastleak.metrics import evaluate

EXACT_DB = 60.0


def attacked(model, x, y, **options):
    return fastleak.attack(federated.fedsgd(model, x, y), model, "rgap", labels=y, **options)


@pytest.mark.parametrize("name,dataset,options", [
    ("cnn6", "cifar10", {}),                   # R-GAP's CNN6: bias-free convolutions, LeakyReLU
    ("lenet", "mnist", {}),                    # DLG's LeNet: convolutions with biases, sigmoid
    ("lenet", "mnist", {"act": "tanh"}),
])
def test_one_sample_is_exact_where_every_layer_has_full_rank(name, dataset, options):
    x, y = data.load(dataset, 1, seed=0, size=16)
    model = models.build(name, 10, in_shape=tuple(x.shape[1:]), **options)
    analysis = rank_analysis(model, x, y)
    assert analysis.determined and analysis.recursable and analysis.input_fraction == 1.0
    assert analysis.verdict == "determined: every layer's system has full rank"
    res = attacked(model, x, y)
    assert evaluate(res.images, x).psnr >= EXACT_DB and res.restart_losses[0] < 1e-3


@pytest.mark.slow
def test_the_papers_cnn6_at_full_size():
    x, y = data.load("cifar10", 1, seed=3)
    assert evaluate(attacked(models.build("cnn6", 10), x, y).images, x).psnr >= EXACT_DB


def test_relu_outputs_it_zeroed_drop_out_of_the_system():
    x, y = data.load("mnist", 1, seed=1, size=12)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 144, 10))
    analysis = rank_analysis(model, x, y)
    first = analysis.layers[0]
    assert first.forward_constraints < 8 * 144 and first.rank == 144
    assert evaluate(attacked(model, x, y).images, x).psnr >= EXACT_DB


def test_a_layer_with_fewer_constraints_than_inputs_is_refused_unless_partial():
    x, y = data.load("mnist", 1, seed=0, size=12)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(32, 10))
    analysis = rank_analysis(model, x, y)
    assert analysis.determined is False and analysis.layers[0].deficiency == 144 - analysis.layers[0].rank > 0
    assert analysis.verdict.startswith("not determined: layer '0' leaves")
    with pytest.raises(InvalidValueError, match="layer '0' has 144 unknown inputs but only 50 constraints"):
        attacked(model, x, y)
    assert attacked(model, x, y, partial=True).images.shape == x.shape


@pytest.mark.parametrize("name,message", [
    ("plainconv", r"cannot recurse through 'body.bn0' \(BatchNorm2d\)"),
    ("resnet20", "rgap cannot recurse through|needs a chain of layers"),
])
def test_models_off_the_chain_are_analysed_layer_by_layer_and_refused(name, message):
    x, y = data.load("mnist", 1, seed=0, size=8)
    model = models.build(name, 10, in_shape=(1, 8, 8), **({"width": 4} if name == "plainconv" else {}))
    model.eval()
    analysis = rank_analysis(model, x, y, max_unknowns=64)
    assert not analysis.recursable and analysis.determined is None
    assert analysis.verdict.startswith("not recursable:") and len(analysis.layers) > 1
    with pytest.raises(InvalidValueError, match=message):
        attacked(model, x, y)


def test_large_layers_get_the_counting_bound_only():
    x, y = data.load("cifar10", 1, seed=0)
    analysis = rank_analysis(models.build("cnn6", 10), x, y, max_unknowns=1000)
    big = [layer for layer in analysis.layers if layer.unknowns > 1000 and layer.kind == "Conv2d"]
    assert big and all(layer.rank is None and layer.deficiency is None for layer in big)
    assert analysis.determined is None and analysis.verdict.startswith("undecided:")


def test_batches_and_classifiers_without_bias_are_refused():
    x, y = data.load("cifar10", 2, seed=0)
    model = models.build("cnn6", 10)
    with pytest.raises(InvalidValueError, match="rgap reads one sample: the observation's batch has 2"):
        attacked(model, x, y)
    no_bias = models.build("cnn6", 10, bias=False)
    with pytest.raises(InvalidValueError, match="needs the classifier's bias"):
        attacked(no_bias, x[:1], y[:1])


def test_functional_reshapes_between_modules_are_part_of_the_chain():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.Linear(4 * 64, 10)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).flatten(1))

    steps = chain(Net(), (1, 8, 8))
    assert [s.kind for s in steps] == ["layer", "activation", "reshape", "layer"]
    x, y = data.load("mnist", 1, seed=2, size=8)
    assert evaluate(attacked(Net(), x, y).images, x).psnr >= EXACT_DB
