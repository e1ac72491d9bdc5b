"""fastleak.ops.fc_row_stats: compiled kernels against the pure-PyTorch reference."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastleak import _ext, data
from fastleak.ops import fc_row_stats, fc_row_stats_reference
from fastleak.ops.fc_row_stats import FCRowStats
from tests.ops.devices import CUDA, compiled

DEVICES = ["cpu", CUDA]
# Relative tolerance of the sums, measured against the sum of |entries| of the row.
SUM_TOL = {torch.float64: 1e-13, torch.float32: 1e-6}
OP = torch.ops.fastleak


def fc_gradient(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Last-layer weight gradient [10, 3072] of a linear classifier on the 20 real CIFAR-10 test
    images of ``fastleak.data`` (cross-entropy on their true labels, seeded initial weights)."""
    images, labels = data.load("cifar10", 20, labels="natural")
    x = images.to(torch.float64).flatten(1)
    layer = torch.nn.Linear(x.shape[1], 10, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(10, x.shape[1], generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64) * 0.02)
    loss = torch.nn.functional.cross_entropy(layer(x), labels)
    (grad,) = torch.autograd.grad(loss, layer.weight)
    return grad.to(dtype)


def randn(shape, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def assert_stats_match(stats, ref, g: torch.Tensor):
    assert stats.sum.dtype == g.dtype and stats.min.dtype == g.dtype
    scale = g.abs().to(torch.float64).sum(-1).clamp_min(1e-300)
    err = (stats.sum.to(torch.float64) - ref.sum.to(torch.float64)).abs() / scale
    assert (err <= SUM_TOL[g.dtype]).all(), err.max()
    assert torch.equal(stats.min, ref.min)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_real_gradient_matches_reference(device, dtype):
    g = fc_gradient(dtype).to(device)
    stats = fc_row_stats(g)
    assert stats.sum.shape == (10,)
    assert_stats_match(stats, fc_row_stats_reference(g), g)
    # Classes 2 and 4 are absent from the batch: with non-negative inputs their rows have no
    # negative entries (the label-leakage signal the op is used for).
    assert (stats.min[[2, 4]] >= 0).all()
    assert (stats.min[[0, 1, 3, 6, 8]] < 0).all()


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (0, 5), (7, 15), (7, 16), (7, 17), (5, 65535), (2, 65536),
                                   (3, 65537), (0, 4, 3), (4, 0, 3), (16, 100, 512), (2, 3, 1)])
def test_shapes_match_reference(device, shape):
    g = randn(shape, seed=sum(shape), dtype=torch.float32, device=device)
    stats = fc_row_stats(g)
    assert stats.sum.shape == shape[:-1]
    assert_stats_match(stats, fc_row_stats_reference(g), g)


@compiled
@settings(max_examples=60, deadline=None)
@given(p=st.one_of(st.none(), st.integers(0, 3)), c=st.integers(0, 6), d=st.integers(1, 300),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       layout=st.sampled_from(["contiguous", "transposed", "strided"]), seed=st.integers(0, 2**16))
def test_fuzz_shapes_dtypes_layouts(p, c, d, dtype, layout, seed):
    shape = (c, d) if p is None else (p, c, d)
    if layout == "transposed":
        g = randn(shape[:-2] + (d, c), seed, dtype).transpose(-1, -2)
    elif layout == "strided":
        g = randn(shape[:-1] + (2 * d,), seed, dtype)[..., 1::2]
    else:
        g = randn(shape, seed, dtype)
    assert_stats_match(fc_row_stats(g), fc_row_stats_reference(g), g)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf(device):
    g = torch.tensor([[1.0, float("nan"), -2.0], [float("inf"), -1.0, 0.5], [-float("inf"), -0.0, 3.0]],
                     device=device)
    stats = fc_row_stats(g)
    ref = fc_row_stats_reference(g)
    for a, b in zip(stats, ref):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)
    assert stats.min[1:].tolist() == [-1.0, -float("inf")]


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    g = randn((2, 3, 17), seed=3, dtype=torch.float64, device=device).requires_grad_(True)
    assert torch.autograd.gradcheck(OP.fc_row_stats, (g,))
    assert torch.autograd.gradcheck(lambda t: fc_row_stats(t).min * 2 + fc_row_stats(t).sum, (g,))
    assert torch.autograd.gradcheck(lambda t: fc_row_stats(t).min, (g,))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_gradcheck(device):
    g = randn((3, 17, 2), seed=4, dtype=torch.float64, device=device).transpose(1, 2).requires_grad_(True)
    assert not g.is_contiguous()
    assert torch.autograd.gradcheck(OP.fc_row_stats, (g,))


@compiled
def test_gradients_match_reference():
    g = fc_gradient()
    w = [torch.linspace(-1, 1, 10, dtype=torch.float64) * k for k in (1, 2)]
    grads = []
    for fn in (fc_row_stats, fc_row_stats_reference):
        gi = g.clone().requires_grad_(True)
        s = fn(gi)
        loss = (s.sum * w[0]).sum() + (s.min * w[1]).sum()
        grads.append(torch.autograd.grad(loss, gi)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-14, atol=1e-14)


@compiled
def test_gradient_of_tied_minimum_is_split_evenly():
    g = torch.tensor([[1.0, -2.0, -2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    fc_row_stats(g).min.sum().backward()
    assert g.grad.tolist() == [[0.0, 0.5, 0.5, 0.0]]


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    torch.library.opcheck(OP.fc_row_stats.default, (randn((4, 33), device=device),))
    torch.library.opcheck(OP.fc_row_stats.default, (randn((2, 4, 33), device=device).requires_grad_(True),))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_repeated_runs_are_bitwise_equal(device):
    g = randn((300, 2049), device=device)
    first = fc_row_stats(g)
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(first, fc_row_stats(g)))


@compiled
def test_thread_count_does_not_change_results():
    g = randn((300, 2049))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(fc_row_stats(g))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("fn", [fc_row_stats, fc_row_stats_reference])
def test_wrapper_errors(fn):
    with pytest.raises(ValueError, match=r"fc_row_stats: grad_w must be 2-D \[C, D\] or 3-D"):
        fn(torch.zeros(5))
    with pytest.raises(ValueError, match=r"fc_row_stats: grad_w must be 2-D \[C, D\] or 3-D"):
        fn(torch.zeros(1, 2, 3, 4))
    for dtype in (torch.int32, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"fc_row_stats: grad_w must be float32 or float64, got dtype torch\."):
            fn(torch.zeros(3, 4, dtype=dtype))
    with pytest.raises(ValueError, match=r"fc_row_stats: grad_w must have a non-empty last dimension"):
        fn(torch.zeros(3, 0))


@compiled
def test_op_errors():
    with pytest.raises(ValueError, match=r"fastleak::fc_row_stats: g must be 2-D \[C, D\] or 3-D"):
        OP.fc_row_stats(torch.zeros(5))
    for dtype in (torch.int64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"fastleak::fc_row_stats: g must be float32 or float64, got dtype"):
            OP.fc_row_stats(torch.zeros(3, 4, dtype=dtype))
    with pytest.raises(ValueError, match=r"fastleak::fc_row_stats: g must have a non-empty last dimension"):
        OP.fc_row_stats(torch.zeros(2, 3, 0))


@compiled
def test_public_wrapper_uses_compiled_op():
    g = fc_gradient().requires_grad_(True)
    stats = fc_row_stats(g)
    assert isinstance(stats, FCRowStats)
    assert "FCRowStatsFunction" in stats.sum.grad_fn.name()


def test_fallback_to_reference_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(_ext, "LOADED", False)
    monkeypatch.setattr(_ext, "_warned", False)
    g = fc_gradient()
    with caplog.at_level(logging.WARNING, logger="fastleak"):
        first = fc_row_stats(g)
        second = fc_row_stats(g[:3])
    ref = fc_row_stats_reference(g)
    assert all(torch.equal(a, b) for a, b in zip(first, ref))
    assert all(torch.equal(a, b[:3]) for a, b in zip(second, ref))
    assert len([r for r in caplog.records if "reference" in r.getMessage()]) == 1
