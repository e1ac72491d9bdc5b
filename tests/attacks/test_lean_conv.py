import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, vmap

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import attack
from fastleak.attacks.lean_conv import LeanConv2d, LeanConv2dFunction, lean_convolutions
from fastleak.attacks.priors import BatchNormStatistics
from fastleak.attacks.simulate import ClientSimulator
from fastleak.federated import fedavg, fedsgd
from tests.ops.devices import CUDA


def _matching_loss(conv, x, weight, bias, target):
    """A gradient-matching objective through one convolution: |d loss / d (w, b) - target|^2."""
    out = conv(x, weight, bias)
    loss = (out.tanh() * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
    grads = torch.autograd.grad(loss, [weight, bias], create_graph=True)
    return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))


def _second_order(conv, x, weight, bias, target):
    x = x.clone().requires_grad_(True)
    value = _matching_loss(conv, x, weight, bias, target)
    return value, torch.autograd.grad(value, x)[0]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 4), cout_per_group=st.integers(1, 3), groups=st.integers(1, 2),
       size=st.integers(5, 11), kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 2),
       dilation=st.integers(1, 2))
def test_first_and_second_derivatives_match_conv2d(n, cin, cout_per_group, groups, size, kernel, stride, padding,
                                                   dilation):
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        return
    gen = torch.Generator().manual_seed(n * 1000 + size * 10 + kernel)
    cin *= groups
    x = torch.randn(n, cin, size, size, dtype=torch.float64, generator=gen)
    weight = torch.randn(cout_per_group * groups, cin // groups, kernel, kernel, dtype=torch.float64,
                         generator=gen).requires_grad_(True)
    bias = torch.randn(cout_per_group * groups, dtype=torch.float64, generator=gen).requires_grad_(True)
    target = [torch.randn_like(weight), torch.randn_like(bias)]
    params = ((stride, stride), (padding, padding), (dilation, dilation), groups)

    def lean(x, w, b):
        return LeanConv2dFunction.apply(x, w, b, *params)

    def plain(x, w, b):
        return F.conv2d(x, w, b, *params)

    torch.testing.assert_close(lean(x, weight, bias), plain(x, weight, bias), rtol=1e-12, atol=1e-12)
    got_value, got_dx = _second_order(lean, x, weight, bias, target)
    want_value, want_dx = _second_order(plain, x, weight, bias, target)
    torch.testing.assert_close(got_value, want_value, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_dx, want_dx, rtol=1e-9, atol=1e-10)


def test_gradcheck_and_gradgradcheck_in_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x, w, b):
        return LeanConv2dFunction.apply(x, w, b, (2, 1), (1, 0), (1, 2), 1)

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    assert torch.autograd.gradgradcheck(fn, (x, weight, bias))


def test_non_contiguous_input_gives_the_contiguous_result():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 8, 2, dtype=torch.float64, generator=gen).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    target = [torch.randn_like(weight), torch.randn_like(bias)]
    args = ((1, 1), (1, 1), (1, 1), 1)
    got = _second_order(lambda *a: LeanConv2dFunction.apply(*a, *args), x, weight, bias, target)
    want = _second_order(lambda *a: LeanConv2dFunction.apply(*a, *args), x.contiguous(), weight, bias, target)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_per_restart_parameters_under_vmap_match_a_loop():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 2, 3, stride=2)).double()
    lean = lean_convolutions(model, min_weights=1)
    assert [type(m) for m in lean if isinstance(m, nn.Conv2d)] == [LeanConv2d, LeanConv2d]
    assert all(type(m) is not LeanConv2d for m in model.modules())
    q = 3
    params = {n: p.detach().expand(q, *p.shape).clone() for n, p in model.named_parameters()}
    buffers = {n: b.expand(q, *b.shape).clone() for n, b in model.named_buffers()}
    x = torch.rand(q, 2, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def objective(net):
        xs = x.clone().requires_grad_(True)
        ps = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        bs = {n: b.clone() for n, b in buffers.items()}
        out = vmap(lambda p, b, xq: functional_call(net, (p, b), (xq,)).pow(2).sum())(ps, bs, xs)
        grads = torch.autograd.grad(out.sum(), list(ps.values()), create_graph=True)
        value = sum(g.pow(2).sum() for g in grads)
        return value, torch.autograd.grad(value, xs)[0]

    got, want = objective(lean), objective(model)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-9, atol=1e-12)


def test_only_plain_zero_padded_convolutions_are_switched():
    class Custom(nn.Conv2d):
        pass

    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3, padding="same"),
                          nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), Custom(3, 3, 1), nn.Conv1d(3, 3, 1))
    lean = lean_convolutions(model, min_weights=1)
    assert type(lean[0]) is LeanConv2d and [type(m) for m in lean[1:]] == [nn.Conv2d, nn.Conv2d, Custom, nn.Conv1d]
    assert [n for n, _ in lean.named_parameters()] == [n for n, _ in model.named_parameters()]
    unswitched = model[1:]
    assert lean_convolutions(unswitched, min_weights=1) is unswitched
    assert lean_convolutions(model, min_weights=82) is model  # the plain convolution has 81 weights
    unbatched = torch.rand(3, 7, 7)
    torch.testing.assert_close(lean[0](unbatched), F.conv2d(unbatched, model[0].weight, model[0].bias))


def test_simulator_uses_lean_convolutions_only_with_replicated_parameters():
    x, y = data.load("cifar10", 2, seed=1)
    convnet = models.build("convnet", 10, seed=0, width=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        no_batchnorm = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 16, 3, padding=1),
                                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    replicated = ClientSimulator(convnet, [fedsgd(convnet, x, y)], 0, restarts=2, taps=[BatchNormStatistics().tap()],
                                 lean_conv=True)
    shared = ClientSimulator(no_batchnorm, [fedsgd(no_batchnorm, x, y)], 0, restarts=2, lean_conv=True)
    assert any(type(m) is LeanConv2d for m in replicated.model.modules())
    tapped = replicated.taps[0][1]
    assert tapped and all(any(b is m for m in replicated.model.modules()) for b in tapped)
    assert type(lean_convolutions(no_batchnorm)[2]) is LeanConv2d  # large enough to be switched
    assert shared.shared_state and shared.model is no_batchnorm


def _attack_losses(device: str, lean: bool) -> torch.Tensor:
    x, y = data.load("cifar10", 2, seed=1)
    model = models.build("convnet", 10, seed=0, width=16)  # 5 of its 8 convolutions are switched
    obs = fedsgd(model, x, y)
    result = attack(obs, model, "inverting", labels=y, restarts=2, iterations=4, seed=0, record_every=1, search={},
                    signed=False, device=device, cuda_graph=False, lean_conv=lean)
    return result.history


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_attack_with_lean_convolutions_follows_the_plain_attack(device):
    # The first objective (same images, one function) agrees to rounding. Later ones follow Adam's first
    # step, which moves each pixel by lr * g / (|g| + eps): a pixel whose gradient is within rounding of
    # zero moves differently under the two backward formulations' rounding. On the CPU that moved a later
    # loss by 6.8e-5 (oneDNN AVX-512 kernels; 2.1e-5 with SSE4.1 ones); cuDNN picks other algorithms for
    # the two, which moved one by 0.4% on an H200 (2026-12-04). A wrong double backward moves them by
    # orders of magnitude more.
    lean, plain = _attack_losses(device, True), _attack_losses(device, False)
    torch.testing.assert_close(lean[:1], plain[:1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(lean[1:], plain[1:], rtol=1e-3 if device == "cpu" else 2e-2, atol=1e-6)


def test_unrolled_fedavg_gradient_is_unchanged_by_lean_convolutions():
    """Local steps make later gradients depend on earlier ones: derivatives through the weights too."""
    x, y = data.load("cifar10", 4, seed=1)
    model = models.build("convnet", 10, seed=0, width=16)
    obs = fedavg(model, x, y, local_steps=2, lr=1e-2)
    dummy = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    results = []
    for lean in (True, False):
        sim = ClientSimulator(model, [obs], 0, restarts=2, fedavg_mode="unroll", lean_conv=lean)
        assert any(type(m) is LeanConv2d for m in sim.model.modules()) == lean
        xq = dummy.clone().requires_grad_(True)
        loss = sum(((s - t) ** 2).sum() for s, t in zip(sim.shared(xq, y.expand(2, -1)), sim.target()))
        results.append((loss.detach(), torch.autograd.grad(loss, xq)[0]))
    (lean_loss, lean_grad), (plain_loss, plain_grad) = results
    torch.testing.assert_close(lean_loss, plain_loss, rtol=1e-5, atol=0)
    assert float((lean_grad - plain_grad).norm() / plain_grad.norm()) < 1e-5
