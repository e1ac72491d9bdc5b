"""fastleak.ops.imprint_recover: compiled kernels against the pure-PyTorch reference, and what the
op recovers from the gradient of a real imprint layer."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastleak import _ext, data
from fastleak.ops import BinInputs, imprint_recover, imprint_recover_reference
from tests.ops.devices import CUDA, compiled

DEVICES = ["cpu", CUDA]
OP = torch.ops.fastleak
# The kernels compute in the inputs' dtype with the reference's operations (a subtraction and a
# correctly rounded division), so they must match it bit for bit in float32 as in float64.


def randn(shape, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def mnist_imprint(dtype: torch.dtype = torch.float64):
    """Gradients of an imprint layer on 20 real MNIST test digits, the digits, and their bins.

    The layer's K rows all measure mean brightness and row k is active above threshold t_k. The
    thresholds put the two darkest digits in bin 0 (a mixed bin), each other digit alone in its
    bin, and leave two bins empty. The loss weighs each digit's layer output with a different
    seeded coefficient, as a downstream network's gradient does.
    Returns (grad_weight [K, 784], grad_bias [K], digits [20, 784], members: digit ids per bin).
    """
    x = data.load("mnist", 20, labels="natural")[0].flatten(1).to(torch.float64)
    brightness = x.mean(1)
    order = brightness.argsort()
    s = brightness[order]
    mid = (s[1:] + s[:-1]) / 2
    thresholds = torch.cat([s[:1] - 1, mid[1:3], (s[2:3] + 3 * s[3:4]) / 4, mid[3:11],
                            (s[10:11] + 3 * s[11:12]) / 4, mid[11:]])
    members = [order[:2].tolist()] + [[int(i)] for i in order[2:3]] + [[]] + [[int(i)] for i in order[3:11]] + [[]] \
        + [[int(i)] for i in order[11:]]
    layer = torch.nn.Linear(784, len(thresholds), dtype=torch.float64)
    with torch.no_grad():
        layer.weight.fill_(1 / 784)
        layer.bias.copy_(-thresholds)
    coef = torch.randn(20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = (torch.relu(layer(x)).sum(1) * coef).sum()
    grad_weight, grad_bias = torch.autograd.grad(loss, (layer.weight, layer.bias))
    return grad_weight.to(dtype), grad_bias.to(dtype), x, members


def assert_matches_reference(out: BinInputs, ref: BinInputs) -> None:
    for a, b in zip(out, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_real_imprint_gradient_matches_reference(device, dtype):
    gw, gb, _, _ = mnist_imprint(dtype)
    gw, gb = gw.to(device), gb.to(device)
    for cumulative in (True, False):
        out = imprint_recover(gw, gb, cumulative)
        assert out.images.shape == gw.shape and out.bias_diff.shape == gb.shape
        assert_matches_reference(out, imprint_recover_reference(gw, gb, cumulative))


@pytest.mark.parametrize("fn", [imprint_recover, imprint_recover_reference])
def test_bins_of_real_digits(fn):
    """A digit alone in its bin comes back to float64 rounding; an empty bin has no bias difference;
    a bin of two digits gives their combination weighted by the loss coefficients."""
    gw, gb, x, members = mnist_imprint()
    out = fn(gw, gb)
    scale = gb.abs().max()
    for k, ids in enumerate(members):
        if not ids:
            assert out.bias_diff[k].abs() <= 1e-12 * scale
        elif len(ids) == 1:
            torch.testing.assert_close(out.images[k], x[ids[0]], rtol=0, atol=1e-11)
    mixed = out.images[0]
    assert min((mixed - x[i]).abs().max() for i in members[0]) > 0.1
    assert (torch.linalg.matrix_rank(torch.stack([mixed, x[members[0][0]], x[members[0][1]]])) == 2)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (0, 5), (5, 0), (0, 0), (7, 17), (1, 65535), (2, 65536),
                                   (3, 65537), (0, 4, 3), (4, 0, 3), (2, 3, 4, 5), (16, 64, 784), (2, 1, 9)])
@pytest.mark.parametrize("cumulative", [True, False])
def test_shapes_match_reference(device, shape, cumulative):
    gw = randn(shape, seed=sum(shape), device=device)
    gb = randn(shape[:-1], seed=sum(shape) + 1, device=device)
    out = imprint_recover(gw, gb, cumulative)
    assert out.images.shape == shape
    assert_matches_reference(out, imprint_recover_reference(gw, gb, cumulative))


def _layout(t: torch.Tensor, layout: str, seed: int) -> torch.Tensor:
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided":
        return torch.stack([t, torch.full_like(t, float(seed))], -1)[..., 0]
    return t


@compiled
@settings(max_examples=80, deadline=None)
@given(lead=st.lists(st.integers(0, 3), max_size=2), k=st.integers(0, 9), d=st.integers(0, 300),
       dtype=st.sampled_from([torch.float64, torch.float32]), cumulative=st.booleans(),
       layout=st.sampled_from(["contiguous", "transposed", "strided"]), repeats=st.integers(0, 4),
       seed=st.integers(0, 2**16))
def test_fuzz_shapes_dtypes_layouts(lead, k, d, dtype, cumulative, layout, repeats, seed):
    shape = (*lead, k, d)
    gb = randn(shape[:-1], seed, dtype)
    if k > 1:  # equal neighbouring bias gradients: empty bins, whose inputs must be zeros
        rows = torch.randint(0, k - 1, (repeats,), generator=torch.Generator().manual_seed(seed))
        gb[..., rows] = gb[..., rows + 1]
    gw, gb = _layout(randn(shape, seed + 1, dtype), layout, seed), _layout(gb, layout, seed)
    out = imprint_recover(gw, gb, cumulative)
    ref = imprint_recover_reference(gw, gb, cumulative)
    assert_matches_reference(out, ref)
    assert (out.images[out.bias_diff == 0] == 0).all()


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_nan_inf_and_empty_bins(device):
    nan, inf = float("nan"), float("inf")
    gw = torch.tensor([[1.0, nan], [inf, 2.0], [3.0, -4.0], [5.0, nan]], device=device)
    gb = torch.tensor([2.0, 1.0, 1.0, -0.0], device=device)
    for cumulative in (True, False):
        out = imprint_recover(gw, gb, cumulative)
        assert_matches_reference(out, imprint_recover_reference(gw, gb, cumulative))
    out = imprint_recover(gw, gb)
    # bin 1 (rows 1 - 2) and bin 3 (row 3 alone, bias -0) are empty: zeros even where rows hold NaN
    assert out.bias_diff.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out.images[[1, 3]].eq(0).all()
    assert out.images[0, 0].item() == -inf and out.images[0, 1].isnan()


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cumulative", [True, False])
def test_gradcheck(device, cumulative):
    gw = randn((2, 5, 7), seed=3, dtype=torch.float64, device=device).requires_grad_(True)
    gb = (torch.arange(10, 0, -1, dtype=torch.float64, device=device).reshape(2, 5) * 0.7).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w, b: OP.imprint_recover(w, b, cumulative), (gw, gb))
    assert torch.autograd.gradcheck(lambda w, b: imprint_recover(w, b, cumulative).images, (gw, gb))
    assert torch.autograd.gradcheck(lambda w, b: imprint_recover(w, b, cumulative).bias_diff, (gw, gb))
    assert torch.autograd.gradgradcheck(lambda w, b: OP.imprint_recover(w, b, cumulative), (gw, gb))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_gradcheck(device):
    gw = randn((3, 17, 4), seed=4, dtype=torch.float64, device=device).transpose(1, 2).requires_grad_(True)
    gb = (torch.linspace(3, 1, 12, dtype=torch.float64, device=device).reshape(4, 3).T).requires_grad_(True)
    assert not gw.is_contiguous() and not gb.is_contiguous()
    assert torch.autograd.gradcheck(lambda w, b: OP.imprint_recover(w, b, True), (gw, gb))


@compiled
def test_gradients_match_reference():
    """Including an empty bin, whose zeros pass no gradient back."""
    gw0, gb0, _, _ = mnist_imprint()
    grads = []
    for fn in (imprint_recover, imprint_recover_reference):
        gw, gb = gw0.clone().requires_grad_(True), gb0.clone().requires_grad_(True)
        out = fn(gw, gb)
        weights = torch.linspace(-1, 1, out.images.numel(), dtype=torch.float64).reshape(out.images.shape)
        loss = (out.images * weights).sum() + (out.bias_diff * torch.arange(len(gb0))).sum()
        grads.append(torch.autograd.grad(loss, (gw, gb)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gw, gb = randn((6, 33), device=device), randn((6,), seed=1, device=device)
    torch.library.opcheck(OP.imprint_recover.default, (gw, gb, True))
    torch.library.opcheck(OP.imprint_recover.default, (gw.reshape(2, 3, 33), gb.reshape(2, 3), False))
    torch.library.opcheck(OP.imprint_recover.default,
                          (gw.double().requires_grad_(True), gb.double().requires_grad_(True), True))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_repeated_runs_are_bitwise_equal(device):
    gw, gb = randn((4, 300, 2049), device=device), randn((4, 300), seed=1, device=device)
    first = imprint_recover(gw, gb)
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(first, imprint_recover(gw, gb)))


@compiled
def test_thread_count_does_not_change_results():
    gw, gb = randn((600, 2049)), randn((600,), seed=1)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(imprint_recover(gw, gb))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("fn", [imprint_recover, imprint_recover_reference])
def test_wrapper_errors(fn):
    w, b = torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(ValueError, match=r"imprint_recover: grad_weight must be at least 2-D \[\.\.\., K, D\]"):
        fn(torch.zeros(5), b)
    with pytest.raises(TypeError, match=r"imprint_recover: grad_weight must be a torch.Tensor"):
        fn([[0.0]], b)
    with pytest.raises(TypeError, match=r"imprint_recover: grad_bias must be a torch.Tensor"):
        fn(w, None)
    for dtype in (torch.int32, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"imprint_recover: grad_weight must be float32 or float64, got dtype"):
            fn(w.to(dtype), b)
        with pytest.raises(TypeError, match=r"imprint_recover: grad_bias must be float32 or float64, got dtype"):
            fn(w, b.to(dtype))
    with pytest.raises(TypeError, match=r"imprint_recover: grad_bias has dtype torch.float64, expected torch.float32"):
        fn(w, b.double())
    for shape in ((4,), (3, 1), (1, 3), ()):
        with pytest.raises(ValueError, match=r"imprint_recover: grad_bias must have shape \[\.\.\., K\] = \(3,\)"):
            fn(w, torch.zeros(shape))
    with pytest.raises(TypeError, match=r"imprint_recover: cumulative must be a bool"):
        fn(w, b, 1)


@compiled
def test_op_errors():
    w, b = torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_weight must be at least 2-D"):
        OP.imprint_recover(torch.zeros(5), b)
    for dtype in (torch.int64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_weight must be float32 or float64"):
            OP.imprint_recover(w.to(dtype), b.to(dtype))
        with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_bias must be float32 or float64"):
            OP.imprint_recover(w, b.to(dtype))
    with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_bias has dtype Double, expected Float"):
        OP.imprint_recover(w, b.double())
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_bias must have shape \[\.\.\., K\] = \[3\]"):
        OP.imprint_recover(w, torch.zeros(4))


@compiled
def test_public_wrapper_uses_compiled_op():
    gw, gb, _, _ = mnist_imprint()
    out = imprint_recover(gw.requires_grad_(True), gb)
    assert isinstance(out, BinInputs)
    assert "ImprintRecoverFunction" in out.images.grad_fn.name()


def test_fallback_to_reference_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(_ext, "LOADED", False)
    monkeypatch.setattr(_ext, "_warned", False)
    gw, gb, _, _ = mnist_imprint()
    with caplog.at_level(logging.WARNING, logger="fastleak"):
        first = imprint_recover(gw, gb)
        second = imprint_recover(gw[:3], gb[:3], False)
    assert_matches_reference(first, imprint_recover_reference(gw, gb))
    assert_matches_reference(second, imprint_recover_reference(gw[:3], gb[:3], False))
    assert len([r for r in caplog.records if "reference" in r.getMessage()]) == 1
