import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.models as M


def images(n, in_shape=(3, 32, 32)):
    """Real images of the requested shape: CIFAR-10 (3 channels) or MNIST (1 channel), resized."""
    name = "cifar10" if in_shape[0] == 3 else "mnist"
    return D.load(name, n, size=in_shape[-1])[0]

SMALL = {"convnet": {"width": 8}, "resnet18": {"width": 8}}


@pytest.mark.parametrize("name", M.names())
@pytest.mark.parametrize("in_shape", [(3, 32, 32), (1, 28, 28)])
def test_builds_with_output_shape_and_linear_head(name, in_shape):
    model = M.build(name, 7, in_shape=in_shape, **SMALL.get(name, {}))
    out = model(images(3, in_shape))
    assert out.shape == (3, 7)
    head = M.final_linear(model)
    assert isinstance(head, nn.Linear) and head.out_features == 7 and head.bias is not None
    assert M.final_linear(model, images(2, in_shape)) is head
    assert M.spec_of(model).name == name


@pytest.mark.parametrize("name", M.names())
def test_init_is_deterministic_given_seed_and_keeps_global_rng(name):
    kw = SMALL.get(name, {})
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = M.build(name, 10, seed=3, **kw).state_dict()
    assert torch.equal(torch.rand(1), before)
    b = M.build(name, 10, seed=3, **kw).state_dict()
    c = M.build(name, 10, seed=4, **kw).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", M.names())
def test_bias_false_removes_classifier_bias(name):
    model = M.build(name, 5, bias=False, **SMALL.get(name, {}))
    assert M.final_linear(model).bias is None
    weight, bias = M.final_linear_param_names(model)
    assert bias is None and dict(model.named_parameters())[weight] is M.final_linear(model).weight


def test_lenet_matches_dlg():
    model = M.build("lenet", 100)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (12, (5, 5), (2, 2), (2, 2)), (12, (5, 5), (2, 2), (2, 2)), (12, (5, 5), (1, 1), (2, 2))]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    assert (M.final_linear(model).in_features, M.final_linear(model).out_features) == (768, 100)
    params = torch.cat([p.flatten() for p in model.parameters()])
    assert params.abs().max() <= 0.5 and params.min() < -0.45 and params.max() > 0.45
    assert abs(params.mean().item()) < 0.02


def test_convnet_width_and_batchnorm():
    model = M.build("convnet", 10, width=4)
    assert M.final_linear(model).in_features == 36 * 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert M.final_linear(M.build("convnet", 10)).in_features == 36 * 64


def test_plainconv_keeps_full_resolution():
    model = M.build("plainconv", 10, width=4, depth=2)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert M.final_linear(model).in_features == 4 * 32 * 32
    assert M.final_linear(M.build("plainconv", 10, in_shape=(1, 28, 28))).in_features == 16 * 28 * 28
    with pytest.raises(ValueError, match="depth must be a positive int"):
        M.build("plainconv", 10, depth=0)


def test_resnet_sizes():
    assert sum(p.numel() for p in M.build("resnet18", 10).parameters()) == 11173962
    r20 = M.build("resnet20", 10)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in r20.modules()) == 19
    assert M.final_linear(r20).in_features == 64
    big = M.build("resnet18", 10, in_shape=(3, 64, 64), stem="imagenet", width=8)
    assert big(images(2, (3, 64, 64))).shape == (2, 10)


def test_features_and_logits_returns_classifier_input():
    model = M.build("lenet", 10).eval()
    x = images(4)
    feats, logits = M.features_and_logits(model, x)
    assert feats.shape == (4, 768)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(M.final_linear(model)(feats), logits)
    assert logits.requires_grad


@pytest.mark.parametrize("tail", [nn.Softmax(dim=1), nn.Conv2d(3, 3, 1)])
def test_final_linear_rejects_other_last_layers(tail):
    body = [nn.Flatten(), nn.Linear(12, 4)] if isinstance(tail, nn.Softmax) else [nn.Conv2d(3, 3, 1)]
    model = nn.Sequential(*body, tail)
    with pytest.raises(ValueError, match="must end in an nn.Linear classifier"):
        M.final_linear(model)


def test_final_linear_detects_function_after_linear():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x.flatten(1)), 1)

    with pytest.raises(ValueError, match="must end in an nn.Linear classifier"):
        M.final_linear(Net(), images(2, (3, 2, 2)))
    with pytest.raises(ValueError, match="must end in an nn.Linear classifier"):
        M.features_and_logits(Net(), images(2, (3, 2, 2)))


def test_final_linear_with_input_follows_execution_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    net = Net()
    with pytest.raises(ValueError, match="Conv2d"):
        M.final_linear(net)
    assert M.final_linear(net, images(1, (3, 2, 2))) is net.fc


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*lenet"):
        M.build("vgg", 10)
    with pytest.raises(TypeError, match="width"):
        M.build("lenet", 10, width=3)
    with pytest.raises(ValueError, match="num_classes"):
        M.build("lenet", 0)
    with pytest.raises(ValueError, match="in_shape"):
        M.build("lenet", 10, in_shape=(3, 32))
    with pytest.raises(ValueError, match="does not fit"):
        M.build("convnet", 10, in_shape=(3, 4, 4), width=2)
    with pytest.raises(ValueError, match="unknown activation"):
        M.build("mlp", 10, act="gelu")


class SizedNet(nn.Module):
    """A user's class that takes the sizes build passes and one option of its own."""

    def __init__(self, num_classes: int, in_shape: tuple[int, ...], hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class ClassesOnlyNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, num_classes)


class NotAModel:
    pass


def test_build_imports_a_users_class_by_module_and_name():
    net = M.build(f"{__name__}:SizedNet", 7, in_shape=(1, 4, 4), seed=3, hidden=5)
    assert isinstance(net, SizedNet) and net.head.out_features == 7 and net.head.in_features == 5
    again = M.build(f"{__name__}:SizedNet", 7, in_shape=(1, 4, 4), seed=3, hidden=5)
    assert torch.equal(net.head.weight, again.head.weight)
    assert M.spec_of(net).name == f"{__name__}:SizedNet"
    assert M.build("tests.cli.user_models:TinyNet", None, None).head.out_features == 10  # takes no sizes
    assert M.build(f"{__name__}:ClassesOnlyNet", 4, None).head.out_features == 4
    with pytest.raises(ValueError, match="num_classes must be a positive int, got None"):
        M.build(f"{__name__}:ClassesOnlyNet", None, None)


@pytest.mark.parametrize("name, error, message", [
    ("nothere.mod:Net", ValueError, "cannot import model class 'nothere.mod:Net'"),
    (f"{__name__}:Missing", ValueError, "has no attribute 'Missing'"),
    (f"{__name__}:NotAModel", ValueError, "is not a torch.nn.Module subclass"),
])
def test_build_names_a_user_class_that_cannot_be_used(name, error, message):
    with pytest.raises(error, match=message):
        M.build(name, 10)


def test_build_rejects_options_a_users_class_does_not_take():
    with pytest.raises(TypeError, match="does not accept option\\(s\\) width; accepted options: hidden"):
        M.build(f"{__name__}:SizedNet", 10, in_shape=(1, 4, 4), width=3)
