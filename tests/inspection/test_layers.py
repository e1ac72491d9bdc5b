import torch
from torch import nn

from fastleak import models
from fastleak.inspection.layers import linear_layers
from fastleak.malicious import ImprintConfig, imprint_model


class Normalised(nn.Module):
    """A user's model that standardises its input before the first fully connected layer."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(784, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.relu(self.first(((x - 0.13) / 0.31).flatten(1))))


def test_the_first_layer_of_an_mlp_reads_the_input_and_the_others_do_not():
    found = linear_layers(models.build("mlp", 10, in_shape=(1, 28, 28)), (1, 28, 28))
    assert [(layer.name, layer.reads_input) for layer in found] == [("linear0", True), ("linear1", False),
                                                                    ("fc", False)]


def test_a_layer_behind_a_normalisation_reads_the_input():
    assert [layer.reads_input for layer in linear_layers(Normalised(), (1, 28, 28))] == [True, False]


def test_conv_networks_have_no_layer_reading_the_input():
    for name in ("lenet", "convnet"):
        assert not any(layer.reads_input for layer in linear_layers(models.build(name, 10, (1, 28, 28)), (1, 28, 28)))


def test_the_bin_layer_of_an_imprint_block_reads_the_input(public_digits):
    model = imprint_model(models.build("lenet", 10, (1, 28, 28)), public_digits, ImprintConfig(bins=16))
    reading = [layer.name for layer in linear_layers(model, (1, 28, 28)) if layer.reads_input]
    assert reading == ["block.bins"]
    assert model.training  # left in its mode
