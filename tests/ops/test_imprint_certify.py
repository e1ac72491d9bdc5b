"""fastleak.ops.imprint_certify: compiled kernels against the pure-PyTorch reference: the bins exactly as
imprint_recover gives them, and their statistics (grid offset, range, measurement, finiteness)."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastleak import _ext
from fastleak.ops import (CertifiedBins, imprint_certify, imprint_certify_reference, imprint_recover,
                          imprint_recover_reference)
from fastleak.ops.imprint_certify import STATS
from tests.ops.devices import CUDA, compiled, cuda_only
from tests.ops.test_imprint_recover import FUZZ, LAYOUTS, _layout, mnist_imprint, randn

DEVICES = ["cpu", CUDA]
OP = torch.ops.fastleak
MEASURED = STATS.index("measured")
EXACT = [i for i in range(len(STATS)) if i != MEASURED]
GRID = (0.0, 1.0, 255)


def measured_tolerance(images: torch.Tensor, measurement: torch.Tensor | None) -> torch.Tensor:
    """How far two sums of D products may differ in float32 (lanes summed in a different order): D times
    float32's epsilon times the sum of the products' magnitudes; 0 without a measurement."""
    if measurement is None:
        return torch.zeros(images.shape[:-1], dtype=torch.float64)
    k = images.shape[-2]
    rows = measurement.double().cpu().repeat_interleave(k // measurement.shape[0], 0)
    magnitude = (images.double().cpu().abs() * rows.abs()).nan_to_num(0, 0, 0).sum(-1)
    return images.shape[-1] * 1.2e-7 * magnitude + 1e-300


def assert_matches_reference(out: CertifiedBins, ref: CertifiedBins, measurement: torch.Tensor | None) -> None:
    for a, b in zip(out, ref):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    for a, b in zip(out[:2], ref[:2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out.stats[..., EXACT], ref.stats[..., EXACT], rtol=0, atol=0, equal_nan=True)
    got, want = out.stats[..., MEASURED].double().cpu(), ref.stats[..., MEASURED].double().cpu()
    assert torch.equal(got.isnan(), want.isnan())
    tol = measured_tolerance(ref.images, measurement)
    assert ((got - want).abs().nan_to_num(0) <= tol).all()


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_real_imprint_gradient_matches_reference_and_recover(device, dtype):
    gw, gb, _, _ = mnist_imprint(dtype)
    gw, gb = gw.to(device), gb.to(device)
    measurement = torch.full((1, gw.shape[1]), 1 / gw.shape[1], dtype=dtype, device=device)
    for cumulative in (True, False):
        out = imprint_certify(gw, gb, cumulative, measurement, *GRID)
        assert out.stats.shape == (*gb.shape, len(STATS))
        assert_matches_reference(out, imprint_certify_reference(gw, gb, cumulative, measurement, *GRID), measurement)
        recovered = imprint_recover(gw, gb, cumulative)
        assert torch.equal(out.images, recovered.images) and torch.equal(out.bias_diff, recovered.bias_diff)


@pytest.mark.parametrize("fn", [imprint_certify, imprint_certify_reference])
def test_statistics_of_real_digits(fn):
    """A digit alone in its bin comes back on the grid (offset ~0), in [0, 1], measuring its mean
    brightness; the mixed bin of two digits lies off the grid."""
    gw, gb, x, members = mnist_imprint()
    measurement = torch.full((1, 784), 1 / 784, dtype=torch.float64)
    out = fn(gw, gb, True, measurement, *GRID)
    for k, ids in enumerate(members):
        off, low, high, measured, finite = out.stats[k].tolist()
        assert finite == 1
        if len(ids) == 1:
            assert off < 1e-4 and low >= -1e-12 and high <= 1 + 1e-12  # float32 pixels: 2e-5 steps off the grid
            assert measured == pytest.approx(x[ids[0]].mean().item(), abs=1e-12)
    assert out.stats[0, 0] > 0.25


def test_reference_statistics_by_hand():
    gw = torch.tensor([[[0.5, 1.0, 1.5], [0.3, 0.0, 0.9]]], dtype=torch.float64)
    gb = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    out = imprint_certify_reference(gw, gb, False, m, 0.0, 1.0, 10)
    # bin 0: [0.25, 0.5, 0.75] in steps of 0.1: 2.5, 5, 7.5 -> offset 0.5; bin 1: [0.3, 0, 0.9] on the grid
    assert out.stats[0, 0].tolist() == pytest.approx([0.5, 0.25, 0.75, 0.25 + 1.0 + 2.25, 1.0])
    assert out.stats[0, 1].tolist() == pytest.approx([0.0, 0.0, 0.9, 0.3 + 2.7, 1.0], abs=1e-12)
    no_grid = imprint_certify_reference(gw, gb, False, None, 0.0, 1.0, 0)
    assert no_grid.stats[..., 0].eq(0).all() and no_grid.stats[..., MEASURED].eq(0).all()


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (0, 5), (5, 0), (0, 0), (7, 17), (1, 65535), (2, 65536),
                                   (3, 65537), (0, 4, 3), (4, 0, 3), (2, 3, 4, 5), (16, 64, 784), (2, 6, 9)])
@pytest.mark.parametrize("cumulative", [True, False])
@pytest.mark.parametrize("groups", [0, 1, 2])
def test_shapes_match_reference(device, shape, cumulative, groups):
    k = shape[-2]
    groups = groups if k and k % max(groups, 1) == 0 else 0
    gw = randn(shape, seed=sum(shape), device=device).mul(3).add(0.5)
    gb = randn(shape[:-1], seed=sum(shape) + 1, device=device)
    measurement = randn((groups, shape[-1]), seed=7, device=device) if groups else None
    out = imprint_certify(gw, gb, cumulative, measurement, -1.0, 2.0, 7)
    assert_matches_reference(out, imprint_certify_reference(gw, gb, cumulative, measurement, -1.0, 2.0, 7),
                             measurement)


@st.composite
def fuzz_cases(draw):
    """(shape, dtype, cumulative, weight layout, bias layout, groups, grid, seed)."""
    lead = draw(st.lists(st.integers(0, 3), max_size=2))
    groups = draw(st.integers(0, 3))
    per_group = draw(st.integers(0, 4))
    k = groups * per_group if groups else draw(st.integers(0, 9))
    shape = (*lead, k, draw(st.integers(0, 300)))
    grid = draw(st.sampled_from([(0.0, 1.0, 255), (0.0, 1.0, 0), (-2.0, 3.0, 16)]))
    return (shape, draw(st.sampled_from([torch.float64, torch.float32])), draw(st.booleans()),
            draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS)), groups if k else 0, grid,
            draw(st.integers(0, 2**16)))


def _fuzz(device, case):
    shape, dtype, cumulative, w_layout, b_layout, groups, grid, seed = case
    gw = _layout(randn(shape, seed, dtype).to(device), w_layout, seed)
    gb = randn(shape[:-1], seed + 1, dtype)
    if shape[-2] > 1:  # equal neighbouring bias gradients: empty bins
        gb[..., 0] = gb[..., 1]
    gb = _layout(gb.to(device), b_layout, seed)
    measurement = _layout(randn((groups, shape[-1]), seed + 2, dtype).to(device), w_layout, seed) if groups else None
    out = imprint_certify(gw, gb, cumulative, measurement, *grid)
    assert_matches_reference(out, imprint_certify_reference(gw, gb, cumulative, measurement, *grid), measurement)
    assert out.images.is_contiguous() and out.stats.is_contiguous()


@compiled
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_shapes_dtypes_layouts_groups(case):
    _fuzz("cpu", case)


@cuda_only
@FUZZ
@given(case=fuzz_cases())
def test_fuzz_shapes_dtypes_layouts_groups_cuda(case):
    _fuzz("cuda", case)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_make_a_bin_not_finite(device):
    nan, inf = float("nan"), float("inf")
    gw = torch.tensor([[1.0, nan], [inf, 2.0], [3.0, -4.0], [5.0, nan]], device=device)
    gb = torch.tensor([2.0, 1.0, 1.0, -0.0], device=device)
    for cumulative in (True, False):
        out = imprint_certify(gw, gb, cumulative, None, *GRID)
        assert_matches_reference(out, imprint_certify_reference(gw, gb, cumulative, None, *GRID), None)
    out = imprint_certify(gw, gb, False, None, *GRID)
    assert out.stats[:, 4].tolist() == [0.0, 0.0, 1.0, 1.0]   # the empty bin 3 is zeros: finite
    assert out.stats[:2, :4].isnan().all() and not out.stats[2:].isnan().any()


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs_match_reference(device):
    for dtype in (torch.float64, torch.float32):
        w = randn((3, 8, 80), 9, dtype, device)[..., 1::2]
        b = randn((8, 3), 10, dtype, device).T
        m = randn((80, 2), 11, dtype, device).T[:, 1::2]
        assert not (w.is_contiguous() or b.is_contiguous() or m.is_contiguous())
        for cumulative in (True, False):
            out = imprint_certify(w, b, cumulative, m, *GRID)
            assert_matches_reference(out, imprint_certify_reference(w, b, cumulative, m, *GRID), m)
            contiguous = imprint_certify(w.contiguous(), b.contiguous(), cumulative, m.contiguous(), *GRID)
            assert all(torch.equal(x.nan_to_num(), y.nan_to_num()) for x, y in zip(out, contiguous))


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cumulative", [True, False])
def test_gradcheck_and_statistics_without_gradient(device, cumulative):
    gw = randn((2, 6, 7), seed=3, dtype=torch.float64, device=device).requires_grad_(True)
    gb = (torch.arange(12, 0, -1, dtype=torch.float64, device=device).reshape(2, 6) * 0.7).requires_grad_(True)
    m = randn((2, 7), seed=4, dtype=torch.float64, device=device)

    def bins(w, b):
        out = OP.imprint_certify(w, b, cumulative, m, 0.0, 1.0, 255)
        return out[0], out[1]

    assert torch.autograd.gradcheck(bins, (gw, gb))
    assert torch.autograd.gradgradcheck(bins, (gw, gb))
    stats = imprint_certify(gw, gb, cumulative, m, *GRID).stats
    assert not stats.requires_grad


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_equal_imprint_recover(device):
    gw0, gb0, _, _ = mnist_imprint(torch.float64)
    grads = []
    for fn in (lambda w, b: imprint_certify(w, b, True, None, *GRID)[:2], lambda w, b: imprint_recover(w, b, True)):
        gw, gb = gw0.to(device).requires_grad_(True), gb0.to(device).requires_grad_(True)
        images, bias_diff = fn(gw, gb)
        weights = torch.linspace(-1, 1, images.numel(), dtype=images.dtype, device=device).reshape(images.shape)
        grads.append(torch.autograd.grad((images * weights).sum() + bias_diff.sum(), (gw, gb)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gw, gb = randn((6, 33), device=device), randn((6,), seed=1, device=device)
    m = randn((3, 33), seed=2, device=device)
    op = OP.imprint_certify.default
    torch.library.opcheck(op, (gw, gb, True, m, 0.0, 1.0, 255))
    torch.library.opcheck(op, (gw.reshape(2, 3, 33), gb.reshape(2, 3), False, None, 0.0, 1.0, 0))
    torch.library.opcheck(op, (gw.double().requires_grad_(True), gb.double().requires_grad_(True), True,
                               m.double(), -1.0, 2.0, 9))
    torch.library.opcheck(op, (gw[:, ::2], gb, True, m[:, ::2], 0.0, 1.0, 255))
    torch.library.opcheck(op, (gw[:0], gb[:0], True, None, 0.0, 1.0, 255))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_repeated_runs_and_thread_counts_are_bitwise_equal(device):
    gw, gb = randn((4, 300, 2049), device=device), randn((4, 300), seed=1, device=device)
    m = randn((3, 2049), seed=2, device=device)
    first = imprint_certify(gw, gb, False, m, *GRID)
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(first, imprint_certify(gw, gb, False, m, *GRID)))
    if device == "cpu":
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(2)
            assert all(torch.equal(a, b) for a, b in zip(first, imprint_certify(gw, gb, False, m, *GRID)))
        finally:
            torch.set_num_threads(threads)


@pytest.mark.parametrize("fn", [imprint_certify, imprint_certify_reference])
def test_wrapper_errors(fn):
    w, b = torch.zeros(4, 5), torch.zeros(4)
    with pytest.raises(ValueError, match=r"imprint_certify: grad_weight must be at least 2-D"):
        fn(torch.zeros(5), b)
    with pytest.raises(TypeError, match=r"imprint_certify: cumulative must be a bool"):
        fn(w, b, 1)
    with pytest.raises(ValueError, match=r"imprint_certify: levels must be an int >= 0"):
        fn(w, b, True, None, 0.0, 1.0, -1)
    with pytest.raises(ValueError, match=r"imprint_certify: high must be greater than low"):
        fn(w, b, True, None, 1.0, 1.0, 255)
    with pytest.raises(TypeError, match=r"imprint_certify: low must be a number"):
        fn(w, b, True, None, "0", 1.0, 255)
    with pytest.raises(TypeError, match=r"imprint_certify: measurement must be a torch.Tensor or None"):
        fn(w, b, True, [[0.0] * 5])
    with pytest.raises(TypeError, match=r"imprint_certify: measurement has dtype torch.float64, expected "
                                        r"torch.float32"):
        fn(w, b, True, torch.zeros(1, 5, dtype=torch.float64))
    for shape in ((5,), (3, 5), (1, 4), (0, 5)):
        with pytest.raises(ValueError, match=r"imprint_certify: measurement must have shape \[M, D\] with D = 5 and "
                                             r"M dividing K = 4"):
            fn(w, b, True, torch.zeros(shape))


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_op_errors(device):
    w, b = torch.zeros(4, 5, device=device), torch.zeros(4, device=device)
    with pytest.raises(ValueError, match=r"fastleak::imprint_certify: levels must be >= 0"):
        OP.imprint_certify(w, b, True, None, 0.0, 1.0, -1)
    with pytest.raises(ValueError, match=r"fastleak::imprint_certify: high must be greater than low"):
        OP.imprint_certify(w, b, True, None, 2.0, 1.0, 3)
    with pytest.raises(TypeError, match=r"fastleak::imprint_certify: measurement has dtype Double, expected Float"):
        OP.imprint_certify(w, b, True, torch.zeros(1, 5, dtype=torch.float64, device=device), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"fastleak::imprint_certify: measurement must have shape \[M, D\] with "
                                         r"D = 5 and M dividing K = 4"):
        OP.imprint_certify(w, b, True, torch.zeros(3, 5, device=device), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"fastleak::imprint_certify: grad_bias must have shape"):
        OP.imprint_certify(w, torch.zeros(5, device=device), True, None, 0.0, 1.0, 3)


@cuda_only
def test_mixed_device_errors():
    w, b = torch.zeros(4, 5, device="cuda"), torch.zeros(4, device="cuda")
    with pytest.raises(ValueError, match=r"imprint_certify: measurement is on cpu, expected cuda:0"):
        imprint_certify(w, b, True, torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"fastleak::imprint_certify: measurement is on cpu, expected cuda:0"):
        OP.imprint_certify(w, b, True, torch.zeros(1, 5), 0.0, 1.0, 3)


@compiled
@pytest.mark.parametrize("device", DEVICES)
def test_public_wrapper_uses_compiled_op(device):
    gw, gb, _, _ = mnist_imprint()
    out = imprint_certify(gw.to(device).requires_grad_(True), gb.to(device))
    assert isinstance(out, CertifiedBins)
    assert "ImprintCertifyFunction" in out.images.grad_fn.name()


def test_fallback_to_reference_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(_ext, "LOADED", False)
    monkeypatch.setattr(_ext, "_warned", False)
    gw, gb, _, _ = mnist_imprint()
    with caplog.at_level(logging.WARNING, logger="fastleak"):
        out = imprint_certify(gw, gb, True, None, *GRID)
        imprint_recover(gw[:3], gb[:3], False)
    ref = imprint_certify_reference(gw, gb, True, None, *GRID)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert torch.equal(out.images, imprint_recover_reference(gw, gb).images)
    assert len([r for r in caplog.records if "reference" in r.getMessage()]) == 1
