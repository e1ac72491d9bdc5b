import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.models as M
from fastleak.federated import (Observation, client_gradients, client_loss, fedavg, fedsgd, local_schedule,
                                local_sgd, per_example_gradients, validate_batch)


EPS32 = torch.finfo(torch.float32).eps


def batch(n=4, seed=0):
    return D.load("cifar10", n, seed=seed)


def autograd_gradients(model, x, y, loss="ce", reduction="mean"):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(client_loss(model(x), y, loss, reduction), params)


@pytest.mark.parametrize("name,kw", [("lenet", {}), ("convnet", {"width": 4}), ("resnet20", {"width": 4}),
                                     ("mlp", {"hidden": (16,)})])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fedsgd_equals_autograd(name, kw, reduction):
    model = M.build(name, 10, **kw)
    x, y = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obs = fedsgd(model, x, y, reduction=reduction)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "fedsgd must not modify the model"
    expected = autograd_gradients(M.build(name, 10, **kw), x, y, reduction=reduction)
    assert obs.kind == "gradient" and obs.num_pairs == 1 and obs.num_samples == 4
    assert obs.param_names == tuple(n for n, _ in model.named_parameters())
    for got, want in zip(obs.pairs[0].shared, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(obs.pairs[0].state[k], before[k]) for k in before)
    assert obs.reduction == reduction and obs.num_classes == 10 and obs.input_shape == (3, 32, 32)
    assert obs.bn_train == (name in ("convnet", "resnet20"))


def test_fedsgd_follows_batchnorm_mode():
    model = M.build("convnet", 10, width=4)
    x, y = batch()
    train = fedsgd(model, x, y)
    model.eval()
    evalm = fedsgd(model, x, y)
    assert train.bn_train and not evalm.bn_train
    for got, want in zip(evalm.pairs[0].shared, autograd_gradients(model, x, y)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(train.pairs[0].shared[0], evalm.pairs[0].shared[0])


def test_frozen_parameters_are_not_shared():
    model = M.build("lenet", 10)
    model.body[0].weight.requires_grad_(False)
    obs = fedsgd(model, *batch())
    assert "body.0.weight" not in obs.param_names and len(obs.param_names) == 7


def test_mse_loss_and_soft_labels():
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 3, 1])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(client_loss(logits, y, "mse", "sum"), ((logits - onehot) ** 2).sum())
    torch.testing.assert_close(client_loss(logits, onehot), client_loss(logits, y))


def test_fedavg_one_full_batch_step_is_minus_lr_gradient():
    model = M.build("lenet", 10)
    x, y = batch()
    grads = fedsgd(model, x, y).pairs[0].shared
    upd = fedavg(model, x, y, local_steps=1, lr=0.05)
    assert upd.kind == "update" and upd.local_steps == 1 and upd.local_lr == 0.05 and upd.local_epochs == 1
    for u, g, p in zip(upd.pairs[0].shared, grads, model.parameters()):
        # the update is (p - lr * g) - p in float32: storing the step rounds it to half an eps of |p - lr * g|
        torch.testing.assert_close(u, -0.05 * g, rtol=4 * EPS32, atol=2 * EPS32 * float(p.abs().max()))


def test_fedavg_runs_real_sgd_steps_on_minibatches():
    model = M.build("lenet", 10)
    x, y = batch(n=5)
    lr = 0.1
    obs = fedavg(model, x, y, local_steps=3, lr=lr, batch_size=2, epochs=2)
    one = fedavg(model, x, y, local_steps=1, lr=lr)
    assert any(not torch.allclose(a, b) for a, b in zip(obs.pairs[0].shared, one.pairs[0].shared))
    manual = M.build("lenet", 10)
    opt = torch.optim.SGD(manual.parameters(), lr=lr)
    w0 = [p.detach().clone() for p in manual.parameters()]
    for start, stop in [(0, 2), (2, 4), (4, 5)] * 2:
        opt.zero_grad()
        client_loss(manual(x[start:stop]), y[start:stop]).backward()
        opt.step()
    for u, p, p0 in zip(obs.pairs[0].shared, manual.parameters(), w0):
        # six steps, each rounding the parameters to half an eps of |p| on either side
        torch.testing.assert_close(u, p.detach() - p0, rtol=1e-4, atol=2 * 6 * EPS32 * float(p0.abs().max()))
    assert obs.local_batch_size == 2 and obs.local_epochs == 2


def test_local_schedule():
    assert local_schedule(5, 4, 2, 2) == ((0, 2), (2, 4), (4, 5), (0, 2)) * 2
    assert local_schedule(3, 2) == ((0, 3), (0, 3))
    with pytest.raises(ValueError, match="batch_size"):
        local_schedule(3, 1, 4)


def test_local_sgd_is_differentiable_for_unrolled_attacks():
    model = M.build("lenet", 10)
    x, y = batch(n=2)
    x.requires_grad_(True)
    params = {n: p.detach() for n, p in model.named_parameters()}
    final = local_sgd(model, params, x, y, lr=0.1, schedule=local_schedule(2, 2), create_graph=True)
    sum(t.sum() for t in final.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_client_gradients_create_graph_reaches_input():
    model = M.build("lenet", 10)
    x, y = batch(n=1)
    x.requires_grad_(True)
    grads = client_gradients(model, dict(model.named_parameters()), x, y, create_graph=True)
    (x_grad,) = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), x)
    assert x_grad.abs().sum() > 0


def test_per_example_gradients_sum_to_batch_gradient():
    # in float64: per example and for the batch, the convolutions' sums round in orders the CPU's kernels
    # choose, and the first layer's gradients cancel (1e4 eps of the tensor apart in float32 on some CPUs)
    model = M.build("lenet", 10).double()
    x, y = batch()
    x = x.double()
    per = per_example_gradients(model, dict(model.named_parameters()), x, y)
    total = fedsgd(model, x, y, reduction="sum").pairs[0].shared
    for p, t in zip(per, total):
        assert p.shape[0] == 4
        torch.testing.assert_close(p.sum(0), t, rtol=0, atol=1e-9 * float(t.abs().max()))
    with pytest.raises(ValueError, match="BatchNorm"):
        per_example_gradients(M.build("convnet", 10, width=2), {}, x, y)


def test_bad_inputs_are_refused():
    model = M.build("lenet", 10)
    x, y = batch()
    with pytest.raises(ValueError, match="per-sample shape \\(3, 28, 28\\).*in_shape \\(3, 32, 32\\)"):
        fedsgd(model, D.load("imagenet", 4, size=28)[0], y)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match="does not fit the model"):
        fedsgd(plain, D.load("cifar10", 2, size=4)[0], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 10\).*\[0, 10\]"):
        fedsgd(model, x, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="class ids"):
        fedavg(model, x, torch.tensor([0, -1, 2, 3]), local_steps=1, lr=0.1)
    with pytest.raises(ValueError, match="n > 0"):
        fedsgd(model, torch.empty(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="4 samples"):
        fedsgd(model, x, y[:3])
    with pytest.raises(TypeError, match="int64"):
        fedsgd(model, x, y.float())
    with pytest.raises(TypeError, match="floating-point"):
        fedsgd(model, (x * 255).long(), y)
    with pytest.raises(ValueError, match="local_steps"):
        fedavg(model, x, y, local_steps=0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        fedavg(model, x, y, local_steps=1, lr=-0.1)
    with pytest.raises(ValueError, match="unknown loss"):
        fedsgd(model, x, y, loss="hinge")
    with pytest.raises(ValueError, match="reduction"):
        fedsgd(model, x, y, reduction="avg")
    assert validate_batch(model, x, y) == 10


def test_observation_validates_its_fields():
    obs = fedsgd(M.build("lenet", 10), *batch(n=1))
    with pytest.raises(ValueError, match="kind"):
        Observation(kind="grad", pairs=obs.pairs, param_names=obs.param_names, num_samples=1)
    with pytest.raises(ValueError, match="param_names"):
        Observation(kind="gradient", pairs=obs.pairs, param_names=obs.param_names[:2], num_samples=1)
    assert list(obs.shared_dict()) == list(obs.param_names)
