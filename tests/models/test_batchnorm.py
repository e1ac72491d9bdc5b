import pytest
from torch import nn

from fastleak import models


def _net(*norms: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), *norms, nn.Flatten(), nn.LazyLinear(2))


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(4), nn.BatchNorm2d(4), nn.BatchNorm3d(4), nn.SyncBatchNorm(4),
                                   nn.LazyBatchNorm2d()])
def test_every_kind_of_batchnorm_counts(layer):
    assert models.is_batchnorm(layer) and models.has_batchnorm(_net(layer))
    assert models.batchnorm_layers(_net(layer)) == (layer,)


@pytest.mark.parametrize("layer", [nn.GroupNorm(2, 4), nn.LayerNorm(4), nn.InstanceNorm2d(4)])
def test_other_normalisations_do_not(layer):
    assert not models.is_batchnorm(layer) and not models.has_batchnorm(_net(layer))
    assert not models.has_batchnorm(_net(layer), training=True) and models.batchnorm_layers(_net(layer)) == ()


def test_training_selects_the_layers_in_that_mode():
    first, second = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    net = _net(first, second)
    assert models.batchnorm_layers(net, training=True) == (first, second)
    assert not models.has_batchnorm(net, training=False)
    second.eval()
    assert models.batchnorm_layers(net, training=True) == (first,)
    assert models.batchnorm_layers(net, training=False) == (second,)
    net.eval()
    assert models.has_batchnorm(net) and not models.has_batchnorm(net, training=True)
    assert models.has_batchnorm(net, training=False)


@pytest.mark.parametrize("name, expected", [("lenet", False), ("mlp", False), ("convnet", True), ("plainconv", True),
                                            ("resnet18", True)])
def test_the_registered_models(name, expected):
    model = models.build(name, 10, in_shape=(3, 32, 32), **({} if name in ("lenet", "mlp") else {"width": 4}))
    assert models.has_batchnorm(model) is expected
    assert models.has_batchnorm(model, training=True) is expected
    assert models.has_batchnorm(model.eval(), training=True) is False
