"""fastleak.ops.imprint_recover: compiled kernels against the pure-PyTorch reference, and what the
op recovers from the gradient of a real imprint layer."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastleak import _ext, data
from fastleak.ops import BinInputs, imprint_recover, imprint_recover_reference
from tests.ops.devices import CUDA, compiled, cuda_only

DEVICES = ["cpu", CUDA]
OP = torch.ops.fastleak
# The kernels compute in the inputs' dtype with the reference's operations (a subtraction and a
# correctly rounded division), so they must match it bit for bit in float32 as in float64.
# Gradients are computed with other operations than the reference's autograd (a reciprocal and a
# product instead of a division), so they match it to a tolerance, measured against the largest
# term of the gradient's sums: float64 tight, float32 loose.
GRAD_TOL = {torch.float64: 1e-13, torch.float32: 1e-5}


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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", [imprint_recover, imprint_recover_reference])
def test_bins_of_real_digits(fn, device):
    """A digit alone in its bin comes back to float64 rounding; an empty bin has no bias difference;
    a bin of two digits gives their combination weighted by the loss coefficients."""
    gw, gb, x, members = mnist_imprint()
    out = BinInputs(*(t.cpu() for t in fn(gw.to(device), gb.to(device))))
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


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAYOUTS = ["contiguous", "transposed", "strided"]


@st.composite
def fuzz_cases(draw):
    """(shape, dtype, cumulative, weight layout, bias layout, empty bins, seed)."""
    lead = draw(st.lists(st.integers(0, 3), max_size=2))
    shape = (*lead, draw(st.integers(0, 9)), draw(st.integers(0, 300)))
    return (shape, draw(st.sampled_from([torch.float64, torch.float32])), draw(st.booleans()),
            draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, 4)),
            draw(st.integers(0, 2**16)))


def _fuzz(device, case):
    shape, dtype, cumulative, w_layout, b_layout, repeats, seed = case
    k = shape[-2]
    gb = randn(shape[:-1], seed, dtype)
    if k > 1:  # equal neighbouring bias gradients: empty bins, whose inputs must be zeros
        rows = torch.randint(0, k - 1, (repeats,), generator=torch.Generator().manual_seed(seed))
        gb[..., rows] = gb[..., rows + 1]
    gw = _layout(randn(shape, seed + 1, dtype).to(device), w_layout, seed)
    gb = _layout(gb.to(device), b_layout, seed)
    out = imprint_recover(gw, gb, cumulative)
    ref = imprint_recover_reference(gw, gb, cumulative)
    assert_matches_reference(out, ref)
    assert out.images.is_contiguous() and out.bias_diff.is_contiguous()
    assert (out.images[out.bias_diff == 0] == 0).all()


@compiled
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_shapes_dtypes_layouts(case):
    _fuzz("cpu", case)


@cuda_only
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_shapes_dtypes_layouts_cuda(case):
    _fuzz("cuda", case)


def separated_bias(shape, seed: int, dtype, cumulative: bool, empty: int) -> torch.Tensor:
    """A bias gradient [..., K] whose bins' bias differences are in +-[0.5, 2] or, for ``empty``
    seeded bins, exactly zero: the op's gradients stay well conditioned."""
    g = torch.Generator().manual_seed(seed)
    diff = (torch.rand(shape, generator=g, dtype=torch.float64) * 1.5 + 0.5) \
        * torch.randint(0, 2, shape, generator=g).mul(2).sub(1)
    if shape[-1] and empty:
        diff[..., torch.randint(0, shape[-1], (empty,), generator=g)] = 0
    if cumulative:  # row k = bin k + row k + 1, summed from the last row; equal rows for an empty bin
        diff = diff.to(dtype).flip(-1).cumsum(-1).flip(-1)
    return diff.to(dtype)


def _peak(t: torch.Tensor) -> float:
    return t.abs().max().item() if t.numel() else 0.0


def _fuzz_gradients(device, case):
    shape, dtype, cumulative, w_layout, b_layout, empty, seed = case
    gw0 = _layout(randn(shape, seed, dtype).to(device), w_layout, seed)
    gb0 = _layout(separated_bias(shape[:-1], seed + 1, dtype, cumulative, empty).to(device), b_layout, seed)
    go_images = randn(shape, seed + 2, dtype, device)
    go_bias = randn(shape[:-1], seed + 3, dtype, device)
    grads, outs = [], []
    for fn in (imprint_recover, imprint_recover_reference):
        gw, gb = gw0.detach().requires_grad_(True), gb0.detach().requires_grad_(True)
        out = fn(gw, gb, cumulative)
        outs.append(out)
        grads.append(torch.autograd.grad(out, (gw, gb), (go_images, go_bias)))
    assert_matches_reference(*outs)
    # Every gradient entry is a sum of at most three terms g * images / bias_diff (|bias_diff| >= 1/2)
    # and g, over at most D products each.
    images = outs[1].images.detach()
    scale = 1 + 4 * _peak((go_images * images).abs().sum(-1)) + 4 * _peak(go_images) + 2 * _peak(go_bias)
    for a, b in zip(*grads):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=GRAD_TOL[dtype] * scale)


@compiled
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_gradients_match_reference(case):
    _fuzz_gradients("cpu", case)


@cuda_only
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_gradients_match_reference_cuda(case):
    _fuzz_gradients("cuda", case)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cumulative", [True, False])
def test_noncontiguous_inputs_match_reference(device, cumulative):
    """Transposed leading dimensions, strided slices, a storage offset and broadcast (stride 0)
    inputs give the contiguous inputs' results."""
    for dtype in (torch.float64, torch.float32):
        def r(shape, seed):
            return randn(shape, seed, dtype, device)

        cases = {
            "transposed": (r((8, 3, 40), 5).transpose(0, 1), r((8, 3), 6).T),
            "rows_transposed": (r((3, 40, 8), 7).transpose(1, 2), r((3, 8), 8)),
            "strided": (r((3, 8, 80), 9)[..., 1::2], r((3, 16), 10)[:, 1::2]),
            "every_other_row": (r((3, 16, 40), 11)[:, ::2], r((6, 8), 12)[::2]),
            "offset": (r((4, 9, 41), 13)[1:, 1:, 1:], r((4, 9), 14)[1:, 1:]),
            "broadcast": (r((1, 8, 40), 15).expand(3, 8, 40), r((8,), 16).expand(3, 8)),
            "rows_broadcast": (r((3, 1, 40), 17).expand(3, 8, 40), r((3, 8), 18)),
        }
        for name, (w, b) in cases.items():
            assert w.shape == (3, 8, 40) and b.shape == (3, 8) and not w.is_contiguous(), name
            out = imprint_recover(w, b, cumulative)
            assert_matches_reference(out, imprint_recover_reference(w, b, cumulative))
            assert_matches_reference(out, imprint_recover(w.contiguous(), b.contiguous(), cumulative))


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
@pytest.mark.parametrize("cumulative", [True, False])
def test_noncontiguous_gradcheck(device, cumulative):
    gw = randn((3, 17, 4), seed=4, dtype=torch.float64, device=device).transpose(1, 2).requires_grad_(True)
    gb = (torch.linspace(3, 1, 12, dtype=torch.float64, device=device).reshape(4, 3).T).requires_grad_(True)
    assert not gw.is_contiguous() and not gb.is_contiguous()
    assert torch.autograd.gradcheck(lambda w, b: OP.imprint_recover(w, b, cumulative), (gw, gb))
    assert torch.autograd.gradgradcheck(lambda w, b: OP.imprint_recover(w, b, cumulative), (gw, gb))


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_match_reference(device, dtype):
    """Including an empty bin, whose zeros pass no gradient back."""
    gw0, gb0, _, _ = mnist_imprint(dtype)
    gw0, gb0 = gw0.to(device), gb0.to(device)
    tol = {torch.float64: 1e-13, torch.float32: 1e-5}[dtype]
    grads = []
    for fn in (imprint_recover, imprint_recover_reference):
        gw, gb = gw0.clone().requires_grad_(True), gb0.clone().requires_grad_(True)
        out = fn(gw, gb)
        weights = torch.linspace(-1, 1, out.images.numel(), dtype=dtype, device=device).reshape(out.images.shape)
        loss = (out.images * weights).sum() + (out.bias_diff * torch.arange(len(gb0), device=device)).sum()
        grads.append(torch.autograd.grad(loss, (gw, gb)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cumulative", [True, False])
def test_double_backward_matches_reference_with_empty_bins(device, cumulative):
    """Second derivatives stay finite at empty bins (zero bias difference) and match the reference's.
    A regression test: the backward once took the reciprocal of the zero bias difference, and its
    double backward turned the empty bin's zero gradient into 0 * inf = NaN."""
    diff = torch.tensor([[1.5, 0.0, -0.75, 0.0, 2.0], [0.0, 0.5, 1.0, -1.0, 0.0]], dtype=torch.float64)
    gb0 = (diff.flip(-1).cumsum(-1).flip(-1) if cumulative else diff).to(device)
    gw0 = randn((2, 5, 6), seed=12, dtype=torch.float64, device=device)
    go = randn((2, 5, 6), seed=13, dtype=torch.float64, device=device)
    results = []
    for fn in (imprint_recover, imprint_recover_reference):
        gw, gb = gw0.clone().requires_grad_(True), gb0.clone().requires_grad_(True)
        out = fn(gw, gb, cumulative)
        assert (out.bias_diff == 0).sum() == 4
        loss = (out.images * go).sum() + out.bias_diff.pow(2).sum()
        g_w, g_b = torch.autograd.grad(loss, (gw, gb), create_graph=True)
        second = torch.autograd.grad((g_w * go).sum() + g_b.pow(2).sum(), (gw, gb))
        results.append((g_w, g_b, *second))
    for a, b in zip(*results):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gw, gb = randn((6, 33), device=device), randn((6,), seed=1, device=device)
    torch.library.opcheck(OP.imprint_recover.default, (gw, gb, True))
    torch.library.opcheck(OP.imprint_recover.default, (gw.reshape(2, 3, 33), gb.reshape(2, 3), False))
    torch.library.opcheck(OP.imprint_recover.default,
                          (gw.double().requires_grad_(True), gb.double().requires_grad_(True), True))
    torch.library.opcheck(OP.imprint_recover.default, (gw.T.contiguous().T, gb, False))
    torch.library.opcheck(OP.imprint_recover.default, (gw[:, ::2], gb, True))
    torch.library.opcheck(OP.imprint_recover.default, (gw[:0], gb[:0], True))


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
    with pytest.raises(ValueError, match=r"imprint_recover: grad_bias must have shape \[\.\.\., K\] = \(2, 3\)"):
        fn(torch.zeros(2, 3, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"imprint_recover: grad_bias is on meta, expected cpu \(the device of "
                                         r"grad_weight\)"):
        fn(w, b.to("meta"))
    with pytest.raises(TypeError, match=r"imprint_recover: cumulative must be a bool"):
        fn(w, b, 1)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_op_errors(device):
    w, b = torch.zeros(3, 4, device=device), torch.zeros(3, device=device)
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_weight must be at least 2-D"):
        OP.imprint_recover(torch.zeros(5, device=device), b)
    for dtype in (torch.int64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_weight must be float32 or float64"):
            OP.imprint_recover(w.to(dtype), b.to(dtype))
        with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_bias must be float32 or float64"):
            OP.imprint_recover(w, b.to(dtype))
    with pytest.raises(TypeError, match=r"fastleak::imprint_recover: grad_bias has dtype Double, expected Float"):
        OP.imprint_recover(w, b.double())
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_bias must have shape \[\.\.\., K\] = \[3\]"):
        OP.imprint_recover(w, torch.zeros(4, device=device))
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_bias must have shape \[\.\.\., K\] = "
                                         r"\[2, 3\] \(grad_weight's shape without D\), got \[3, 2\]"):
        OP.imprint_recover(torch.zeros(2, 3, 4, device=device), torch.zeros(3, 2, device=device))


@cuda_only
def test_mixed_device_errors():
    w, b = torch.zeros(3, 4, device="cuda"), torch.zeros(3)
    for fn in (imprint_recover, imprint_recover_reference):
        with pytest.raises(ValueError, match=r"imprint_recover: grad_bias is on cpu, expected cuda:0 \(the device of "
                                             r"grad_weight\)"):
            fn(w, b)
    # The CUDA kernel runs for either order (CUDA dispatches ahead of CPU) and checks the devices.
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_bias is on cpu, expected cuda:0 \(the "
                                         r"device of grad_weight\)"):
        OP.imprint_recover(w, b)
    with pytest.raises(ValueError, match=r"fastleak::imprint_recover: grad_bias is on cuda:0, expected cpu"):
        OP.imprint_recover(w.cpu(), b.cuda())


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_public_wrapper_uses_compiled_op(device):
    gw, gb, _, _ = mnist_imprint()
    out = imprint_recover(gw.to(device).requires_grad_(True), gb.to(device))
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
