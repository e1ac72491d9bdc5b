"""fastleak.ops.total_variation: compiled kernels against the pure-PyTorch reference."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastleak import _ext, data
from fastleak.ops import total_variation, total_variation_reference
from tests.ops.devices import CUDA, compiled, graph_node_names

DEVICES = ["cpu", CUDA]
EXPONENTS = pytest.mark.parametrize("p", [1, 2])
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}
OP = torch.ops.fastleak


def cifar_images(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 20 real CIFAR-10 test images of ``fastleak.data``, [20, 3, 32, 32] in [0, 1]."""
    return data.load("cifar10", 20, labels="natural")[0].to(dtype)


def spread(shape, seed: int = 0, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Operator input whose neighbouring values differ by at least 0.01 (no kinks of |d|)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape))
    return (torch.randperm(n, generator=g).to(dtype) * 0.01).reshape(shape).to(device)


def randn(shape, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


def fused_and_reference(x: torch.Tensor, p: int = 1):
    """Values and input gradients (for a fixed upstream gradient) of the fused op and the reference."""
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64, device=x.device)
    out = []
    for fn in (OP.total_variation, total_variation_reference):
        xi = x.detach().clone().requires_grad_(True)
        tv = fn(xi, p)
        (grad,) = torch.autograd.grad((tv * w.to(tv.dtype)).sum(), xi, allow_unused=True)
        out.append((tv.detach(), torch.zeros_like(xi) if grad is None else grad))
    return out


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_real_images_match_reference(device, p):
    x = cifar_images().to(device)
    (tv, grad), (tv_ref, grad_ref) = fused_and_reference(x, p)
    assert tv.dtype == torch.float64 and tv.shape == (20,)
    assert_close(tv, tv_ref, torch.float64)
    assert_close(grad, grad_ref, torch.float64)
    assert (tv > 0).all()


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_float32_matches_reference(device, p):
    x = cifar_images(torch.float32).to(device)
    (tv, grad), (tv_ref, grad_ref) = fused_and_reference(x, p)
    assert tv.dtype == torch.float32 and grad.dtype == torch.float32
    assert_close(tv, tv_ref, torch.float32)
    scale = grad_ref.abs().max().item()
    torch.testing.assert_close(grad / scale, grad_ref / scale, rtol=TOL[torch.float32], atol=TOL[torch.float32])


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 2, 5, 7), (2, 1, 1, 6), (2, 3, 6, 1), (2, 2, 1, 1), (0, 3, 4, 4),
                                   (2, 0, 4, 4), (2, 3, 0, 4), (2, 3, 4, 0), (1, 1, 1, 65537), (1, 1, 65537, 1),
                                   (1, 1, 2, 40000), (2, 3, 300, 200), (2, 2, 50, 127), (2, 2, 50, 128),
                                   (2, 2, 700, 20), (1, 1, 5000, 10)])
@EXPONENTS
def test_shapes_match_reference(device, shape, p):
    x = randn(shape, seed=sum(shape), dtype=torch.float64, device=device)
    (tv, grad), (tv_ref, grad_ref) = fused_and_reference(x, p)
    assert tv.shape == (shape[0],)
    assert_close(tv, tv_ref, torch.float64)
    assert_close(grad, grad_ref, torch.float64)


@compiled
def test_degenerate_directions_contribute_zero():
    x = randn((2, 3, 1, 1), dtype=torch.float64)
    assert torch.equal(total_variation(x), torch.zeros(2, dtype=torch.float64))
    row = torch.tensor([[[[0.0, 1.0, 3.0]]]], dtype=torch.float64)  # H == 1: horizontal term only
    assert total_variation(row, p=1).item() == pytest.approx(1.5)
    assert total_variation(row.transpose(2, 3)).item() == pytest.approx(1.5)
    assert total_variation(row, p=2).item() == pytest.approx(2.5)  # (1 + 4) / 2
    assert total_variation(row.transpose(2, 3), p=2).item() == pytest.approx(2.5)


@compiled
@EXPONENTS
def test_constant_image_has_zero_value_and_gradient_and_a_ramp_its_slope(p):
    ramp = torch.arange(6, dtype=torch.float64).repeat(2, 1, 4, 1) * 0.5  # [2, 1, 4, 6], slope 0.5 along w
    assert torch.equal(total_variation(ramp, p), torch.full((2,), 0.5 ** p, dtype=torch.float64))
    x = torch.full((2, 3, 4, 5), 0.25, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(total_variation(x, p).sum(), x)
    assert torch.equal(total_variation(x, p).detach(), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(grad, torch.zeros_like(x))


@compiled
def test_zero_difference_has_zero_gradient():
    x = torch.ones(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    OP.total_variation(x).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@compiled
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3), c=st.integers(0, 3), h=st.integers(0, 40), w=st.integers(0, 40),
       layout=st.sampled_from(["contiguous", "channels_last", "strided", "transposed"]), seed=st.integers(0, 2**16),
       p=st.sampled_from([1, 2]))
def test_fuzz_shapes_and_layouts(n, c, h, w, layout, seed, p):
    if layout == "strided":
        x = randn((n, c, h, 2 * w), seed, torch.float64)[..., ::2]
    elif layout == "transposed":
        x = randn((n, c, w, h), seed, torch.float64).transpose(2, 3)
    else:
        x = randn((n, c, h, w), seed, torch.float64)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    (tv, grad), (tv_ref, grad_ref) = fused_and_reference(x, p)
    assert_close(tv, tv_ref, torch.float64)
    assert_close(grad, grad_ref, torch.float64)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_gradcheck(device, p):
    x = spread((2, 2, 4, 5), device=device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: OP.total_variation(x, p), (x,))


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_gradgradcheck(device, p, layout):
    """The compiled op is differentiable twice (and its backward op once more), like the reference."""
    x = spread((2, 2, 4, 5), device=device)
    if layout == "transposed":
        x = x.transpose(2, 3)
    x.requires_grad_(True)
    go = torch.linspace(0.5, 1.5, 2, dtype=torch.float64, device=device).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: OP.total_variation(x, p), (x,))
    assert torch.autograd.gradgradcheck(lambda go, x: OP.total_variation_backward(go, x, p), (go, x))


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_higher_derivatives_match_reference(device, p):
    """Second and third derivatives (Hessian-vector products and their gradient) of the compiled
    path equal the reference's; the double backward runs the compiled backward op again."""
    x = randn((2, 3, 6, 7), seed=3, dtype=torch.float64, device=device)
    v = randn((2, 3, 6, 7), seed=4, dtype=torch.float64, device=device)
    results = []
    for fn in (total_variation, total_variation_reference):
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((fn(xi, p) ** 2).sum(), xi, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * v).sum(), xi, create_graph=True)
        (third,) = torch.autograd.grad((hvp * v).sum(), xi)
        results.append((grad.detach(), hvp.detach(), third))
        if fn is total_variation:
            assert any("TotalVariationBackwardFunction" in name for name in graph_node_names(hvp))
    for fused, reference in zip(*results):
        torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    assert results[0][1].abs().max() > 0  # the squared TV has a non-zero Hessian for either exponent


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_opcheck(device, p):
    x = randn((2, 3, 5, 4), dtype=torch.float32, device=device)
    torch.library.opcheck(OP.total_variation.default, (x, p))
    torch.library.opcheck(OP.total_variation_backward.default, (randn((2,), 1, device=device), x, p))
    torch.library.opcheck(OP.total_variation.default, (x.requires_grad_(True), p))
    torch.library.opcheck(OP.total_variation_backward.default,
                          (randn((2,), 1, device=device).requires_grad_(True), x, p))


@compiled
@pytest.mark.parametrize("device", DEVICES)
@EXPONENTS
def test_repeated_runs_are_bitwise_equal(device, p):
    x = randn((3, 3, 130, 300), dtype=torch.float32, device=device)
    go = torch.linspace(-1, 1, 3, device=device)
    first = OP.total_variation(x, p), OP.total_variation_backward(go, x, p)
    for _ in range(3):
        again = OP.total_variation(x, p), OP.total_variation_backward(go, x, p)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@compiled
@EXPONENTS
def test_thread_count_does_not_change_results(p):
    x = randn((3, 3, 130, 300), dtype=torch.float32)
    go = torch.linspace(-1, 1, 3)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append((OP.total_variation(x, p), OP.total_variation_backward(go, x, p)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("fn", [total_variation, total_variation_reference])
def test_wrapper_errors(fn):
    with pytest.raises(ValueError, match=r"total_variation: x must be 4-D"):
        fn(torch.zeros(3, 4, 5))
    for dtype in (torch.int64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"total_variation: x must be float32 or float64, got dtype torch\."):
            fn(torch.zeros(1, 1, 2, 2, dtype=dtype))
    for p in (0, 3, 1.5, True, "2", None):
        with pytest.raises(ValueError, match=r"total_variation: p must be 1 \(absolute differences\) or 2 "
                                             r"\(squared differences\), got "):
            fn(torch.zeros(1, 1, 2, 2), p)
    assert torch.equal(fn(torch.zeros(1, 1, 2, 2), p=1), torch.zeros(1))
    assert torch.equal(fn(torch.zeros(1, 1, 2, 2), p=2), torch.zeros(1))


@compiled
def test_op_errors():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"fastleak::total_variation: x must be 4-D"):
        OP.total_variation(torch.zeros(2, 2))
    for dtype in (torch.int32, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"fastleak::total_variation: x must be float32 or float64, got dtype"):
            OP.total_variation(x.to(dtype))
    with pytest.raises(ValueError, match=r"fastleak::total_variation_backward: grad_out must have shape"):
        OP.total_variation_backward(torch.ones(2), x, 1)
    with pytest.raises(TypeError, match=r"fastleak::total_variation_backward: grad_out has dtype Double, "
                                        r"expected Float \(the dtype of x\)"):
        OP.total_variation_backward(torch.ones(1, dtype=torch.float64), x, 1)
    for p in (0, 3, -1):
        with pytest.raises(ValueError, match=rf"fastleak::total_variation: p must be 1 \(absolute differences\) "
                                             rf"or 2 \(squared differences\), got {p}"):
            OP.total_variation(x, p)
        with pytest.raises(ValueError, match=r"fastleak::total_variation_backward: p must be 1"):
            OP.total_variation_backward(torch.ones(1), x, p)


@compiled
def test_public_wrapper_uses_compiled_op():
    x = cifar_images(torch.float32).requires_grad_(True)
    tv = total_variation(x)
    assert "TotalVariationFunction" in tv.grad_fn.name()
    assert torch.equal(tv, OP.total_variation(x))


def test_fallback_to_reference_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(_ext, "LOADED", False)
    monkeypatch.setattr(_ext, "_warned", False)
    x = cifar_images().requires_grad_(True)
    with caplog.at_level(logging.WARNING, logger="fastleak"):
        first = total_variation(x)
        second = total_variation(x[:3])
    assert torch.equal(first, total_variation_reference(x))
    assert torch.equal(second, total_variation_reference(x[:3]))
    assert torch.equal(total_variation(x, 2), total_variation_reference(x, 2))
    first.sum().backward()
    assert x.grad is not None
    warnings = [r for r in caplog.records if "reference" in r.getMessage()]
    assert len(warnings) == 1
