"""fastleak.ops.grad_distance: compiled ops against the pure-PyTorch reference, autograd, errors."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastleak import _ext
from fastleak.ops import grad_distance, grad_distance_reference
from fastleak.ops.grad_distance import _partials_reference
from tests.ops.devices import CUDA, compiled, cuda_only, graph_node_names

DEVICES = [pytest.param("cpu", marks=compiled), CUDA]

PARTIALS = torch.ops.fastleak.grad_distance_partials if _ext.LOADED else None
BACKWARD = torch.ops.fastleak.grad_distance_backward if _ext.LOADED else None

METRICS = ["l2", "l2_relative", "cosine"]
# Empty and 0-dim tensors included; BIG_SHAPES cross the kernels' chunk sizes (CPU 65536, CUDA 16384).
SHAPES = [(3, 4), (0,), (5, 1, 3), (), (2, 3, 3, 3), (1000,)]
BIG_SHAPES = SHAPES + [(65537,), (16385,)]
# (forward rtol, gradient rtol) against the reference.
TOLERANCES = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5)}


# (batched, row_targets): one problem; restarts sharing one target; one target row per restart
MODES = pytest.mark.parametrize("batched, row_targets", [(False, False), (True, False), (True, True)],
                                ids=["single", "batched", "rows"])


def make_lists(shapes, dtype=torch.float64, device="cpu", restarts=None, seed=0, grad=True, row_targets=False):
    gen = torch.Generator().manual_seed(seed)
    lead = () if restarts is None else (restarts,)
    target_lead = lead if row_targets else ()
    target = [torch.randn(target_lead + tuple(s), generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
              for s in shapes]
    # rec correlated with target so that the cosine distance is far from 1
    rec = [(t.double().cpu() + 0.5 * torch.randn(lead + tuple(s), generator=gen, dtype=torch.float64))
           .to(device=device, dtype=dtype) for t, s in zip(target, shapes)]
    if grad:
        for x in rec + target:
            x.requires_grad_()
    return rec, target


def assert_close_rel(actual, expected, rtol):
    """|a - e| <= rtol * max|e| + two subnormal steps of actual's dtype."""
    floor = 2 * torch.finfo(actual.dtype).smallest_normal * torch.finfo(actual.dtype).eps
    actual, expected = actual.double().cpu(), expected.double().cpu()
    assert actual.shape == expected.shape
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=rtol * scale + floor)


def uses_compiled_partials(out) -> bool:
    return any("GradDistancePartialsFunction" in name for name in graph_node_names(out))


def grads(out, inputs):
    return torch.autograd.grad(out.sum(), inputs, allow_unused=True)


# --------------------------------------------------------------------------------------------
# against the reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_matches_reference(device, dtype, metric, batched, weighted):
    rec, target = make_lists(SHAPES, dtype, device, restarts=3 if batched else None)
    weights = [0.5 + i for i in range(len(SHAPES))] if weighted else None
    fwd_tol, grad_tol = TOLERANCES[dtype]

    out = grad_distance(rec, target, metric, weights, batched=batched)
    ref = grad_distance_reference(rec, target, metric, weights, batched=batched)
    assert out.dtype == dtype
    assert out.shape == ((3,) if batched else ())
    assert_close_rel(out, ref, fwd_tol)
    for g, g_ref in zip(grads(out, rec + target), grads(ref, rec + target)):
        assert g.dtype == dtype
        assert_close_rel(g, g_ref, grad_tol)


def test_l2_relative_is_l2_over_the_weighted_target_norm():
    rec, target = make_lists(SHAPES, torch.float64, restarts=3, grad=False)
    weights = [0.5 + i for i in range(len(SHAPES))]
    norm = sum(w * t.pow(2).sum() for w, t in zip(weights, target))
    for fn in (grad_distance, grad_distance_reference):
        expected = fn(rec, target, "l2", weights, batched=True) / norm
        assert_close_rel(fn(rec, target, "l2_relative", weights, batched=True), expected, 1e-13)
    scaled = grad_distance([100.0 * r for r in rec], [100.0 * t for t in target], "l2_relative", weights, batched=True)
    assert_close_rel(scaled, grad_distance(rec, target, "l2_relative", weights, batched=True), 1e-12)


@pytest.mark.parametrize("device", DEVICES)
@MODES
def test_partials_match_reference(device, batched, row_targets):
    rec, target = make_lists(BIG_SHAPES, torch.float64, device, restarts=2 if batched else None, grad=False,
                             row_targets=row_targets)
    assert_close_rel(PARTIALS(rec, target, batched, row_targets),
                     _partials_reference(rec, target, batched, row_targets), 1e-13)


@pytest.mark.parametrize("device", DEVICES)
@MODES
def test_op_autograd_matches_reference(device, batched, row_targets):
    """The op's gradient, without the wrapper's metric on top."""
    rec, target = make_lists(SHAPES, torch.float64, device, restarts=2 if batched else None, row_targets=row_targets)
    weight = torch.linspace(-1.0, 1.0, 4 * len(SHAPES) * (2 if batched else 1), dtype=torch.float64, device=device)
    out = (PARTIALS(rec, target, batched, row_targets) * weight.reshape(-1, len(SHAPES), 4)).sum()
    ref = (_partials_reference(rec, target, batched, row_targets) * weight.reshape(-1, len(SHAPES), 4)).sum()
    for g, g_ref in zip(grads(out, rec + target), grads(ref, rec + target)):
        assert_close_rel(g, g_ref, 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_uses_compiled_op(device):
    rec, target = make_lists([(4, 5)], torch.float32, device)
    assert uses_compiled_partials(grad_distance(rec, target))


@pytest.mark.parametrize("device", DEVICES)
def test_weights_tensor_gets_gradient(device):
    rec, target = make_lists(SHAPES, torch.float64, device)
    w = torch.linspace(0.5, 2.0, len(SHAPES), dtype=torch.float64, device=device, requires_grad=True)
    for metric in METRICS:
        out = grad_distance(rec, target, metric, w)
        ref = grad_distance_reference(rec, target, metric, w)
        assert_close_rel(out, ref, 1e-12)
        assert_close_rel(grads(out, [w])[0], grads(ref, [w])[0], 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_l2_has_no_cancellation(device):
    # r ~ t at a large magnitude: r.r + t.t - 2 r.t would lose every digit of the difference.
    t = torch.full((100_000,), 1.0e4, dtype=torch.float32, device=device)
    r = t + torch.linspace(-1e-3, 1e-3, 100_000, device=device).to(torch.float32).mul(1024).round().div(1024)
    exact = (r.double() - t.double()).pow(2).sum()
    assert exact > 0
    torch.testing.assert_close(grad_distance([r], [t]).double(), exact, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("device", DEVICES)
def test_cosine_of_zero_gradient_is_one_with_finite_grads(device):
    rec = [torch.zeros(3, 4, dtype=torch.float64, device=device, requires_grad=True)]
    target = [torch.ones(3, 4, dtype=torch.float64, device=device)]
    for fn in (grad_distance, grad_distance_reference):
        out = fn(rec, target, "cosine")
        assert out.item() == 1.0
        (g,) = grads(out, rec)
        assert torch.isfinite(g).all()
        # d/dr (1 - <r,t> / (max(|r|, eps) |t|)) at r = 0 is -t / (eps |t|)
        torch.testing.assert_close(g, -target[0] / (1e-12 * target[0].norm()))


# --------------------------------------------------------------------------------------------
# op contracts: opcheck, gradcheck, derivatives of every order


@pytest.mark.parametrize("device", DEVICES)
@MODES
def test_opcheck(device, batched, row_targets):
    shapes = [(3, 4), (7,), (0,), ()]
    rec, target = make_lists(shapes, torch.float32, device, restarts=2 if batched else None, row_targets=row_targets)
    torch.library.opcheck(PARTIALS, (rec, target, batched, row_targets))
    restarts = 2 if batched else 1
    coef_rec = torch.randn(restarts, len(shapes), device=device)
    coef_target = torch.randn(restarts, len(shapes), device=device)
    torch.library.opcheck(BACKWARD, (rec, target, coef_rec.requires_grad_(), coef_target, batched, row_targets))
    rec, target = [x.detach() for x in rec], [x.detach() for x in target]
    torch.library.opcheck(BACKWARD, (rec, target, coef_rec.detach(), coef_target, batched, row_targets))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
@MODES
def test_gradcheck(device, metric, batched, row_targets):
    shapes = [(2, 3), (4,), ()]
    rec, target = make_lists(shapes, torch.float64, device, restarts=2 if batched else None, row_targets=row_targets)
    n = len(shapes)

    def fn(*xs):
        return grad_distance(list(xs[:n]), list(xs[n:]), metric, [1.0, 0.5, 2.0], batched=batched,
                             row_targets=row_targets)

    assert torch.autograd.gradcheck(fn, tuple(rec + target))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
@MODES
def test_gradgradcheck(device, metric, batched, row_targets):
    """The compiled path is differentiable twice, in rec, target and a weights tensor, like the reference."""
    shapes = [(2, 3), (4,), ()]
    rec, target = make_lists(shapes, torch.float64, device, restarts=2 if batched else None, row_targets=row_targets)
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64, device=device, requires_grad=True)
    n = len(shapes)

    def fn(*xs):
        return grad_distance(list(xs[:n]), list(xs[n:2 * n]), metric, xs[-1], batched=batched,
                             row_targets=row_targets)

    assert torch.autograd.gradgradcheck(fn, (*rec, *target, weights))


@pytest.mark.parametrize("device", DEVICES)
@MODES
def test_backward_op_gradcheck(device, batched, row_targets):
    """The fused backward op's own derivatives in rec, target and both coefficient tensors."""
    shapes = [(2, 3), (4,), (), (0,)]
    restarts = 2 if batched else 1
    rec, target = make_lists(shapes, torch.float64, device, restarts=restarts if batched else None,
                             row_targets=row_targets)
    coefs = [torch.randn(restarts, len(shapes), dtype=torch.float64, device=device, requires_grad=True)
             for _ in range(2)]
    n = len(shapes)

    def fn(*xs):
        return tuple(BACKWARD(list(xs[:n]), list(xs[n:2 * n]), xs[-2], xs[-1], batched, row_targets))

    assert torch.autograd.gradcheck(fn, (*rec, *target, *coefs))
    assert torch.autograd.gradgradcheck(fn, (*rec, *target, *coefs))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
@MODES
def test_higher_derivatives_match_reference(device, metric, batched, row_targets):
    """Hessian-vector products and their gradient (third derivatives) of the compiled path equal
    the reference's, and the double backward goes through the compiled backward op's autograd."""
    shapes = [(2, 3), (5,), ()]
    rec, target = make_lists(shapes, torch.float64, device, restarts=3 if batched else None, grad=False,
                             row_targets=row_targets)
    gen = torch.Generator().manual_seed(5)
    v = [torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device) for x in rec + target]
    results = []
    for fn in (grad_distance, grad_distance_reference):
        inputs = [x.clone().requires_grad_() for x in rec + target]
        out = fn(inputs[:3], inputs[3:], metric, [1.0, 0.5, 2.0], batched=batched, row_targets=row_targets)
        first = torch.autograd.grad((out ** 2).sum(), inputs, create_graph=True)
        hvp = torch.autograd.grad(sum((g * w).sum() for g, w in zip(first, v)), inputs, create_graph=True)
        third = torch.autograd.grad(sum((h * w).sum() for h, w in zip(hvp, v)), inputs)
        results.append([t.detach() for t in (*first, *hvp, *third)])
        if fn is grad_distance:
            assert any("GradDistanceBackwardFunction" in name for name in graph_node_names(first[0]))
    for fused, reference in zip(*results):
        assert_close_rel(fused, reference, 1e-12)
    assert max(t.abs().max().item() for t in results[0][len(v):2 * len(v)]) > 0


@compiled
def test_first_derivatives_run_the_fused_backward_without_recording_a_graph():
    """The attack engine's path (first derivatives, no create_graph) runs one fused backward pass
    per side and builds no graph for a double backward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    rec, target = make_lists([(2, 3), (4,)], torch.float64, restarts=2)
    out = grad_distance(rec, target, "cosine", batched=True)
    with Ops() as ops:
        grads = torch.autograd.grad(out.sum(), rec + target)
    assert ops.names.count("fastleak.grad_distance_backward") == 2
    assert all(g.grad_fn is None and not g.requires_grad for g in grads)


@pytest.mark.parametrize("device", DEVICES)
@MODES
def test_noncontiguous_gradcheck(device, batched, row_targets):
    opts = dict(dtype=torch.float64, device=device)
    rec = torch.randn(4, 2, 3, 2, **opts)[..., 0].transpose(0, 2)  # (3, 2, 4): transposed slice
    target = torch.randn(2, 8, **opts)[:, ::2]                      # (2, 4): strided slice
    if row_targets:
        target = torch.randn(3, 2, 8, **opts)[:, :, ::2]           # (3, 2, 4): strided slice
    if not batched:
        rec = rec[1]
    rec.requires_grad_()
    target.requires_grad_()
    assert not rec.is_contiguous() and not target.is_contiguous()
    for metric in METRICS:
        assert torch.autograd.gradcheck(
            lambda r, t: grad_distance([r], [t], metric, batched=batched, row_targets=row_targets), (rec, target))


# --------------------------------------------------------------------------------------------
# randomised shapes, counts and layouts

SMALL_SHAPES = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)
EDGE_SIZES = st.sampled_from([0, 1, 2, 7])
BIG_SIZES = st.lists(st.sampled_from([65535, 65536, 65537, 16383, 16384, 16385]), max_size=2)


def _layout(x: torch.Tensor, how: int) -> torch.Tensor:
    """The same values in a contiguous (0), strided-slice (1) or transposed (2) layout."""
    if how == 1:
        wide = torch.zeros(x.shape + (2,), dtype=x.dtype, device=x.device)
        wide[..., 1] = x
        return wide[..., 1]
    if how == 2 and x.dim() >= 2:
        return x.transpose(0, -1).contiguous().transpose(0, -1)
    return x


@st.composite
def tensor_lists(draw):
    count = draw(st.integers(1, 200))
    shapes = [draw(st.one_of(SMALL_SHAPES, EDGE_SIZES.map(lambda n: (n,)))) for _ in range(count)]
    for size in draw(BIG_SIZES):
        shapes.insert(draw(st.integers(0, len(shapes))), (size,))
    restarts = draw(st.sampled_from([None, 1, 3]))
    row_targets = restarts is not None and draw(st.booleans())
    layouts = draw(st.lists(st.integers(0, 2), min_size=2 * len(shapes), max_size=2 * len(shapes)))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    seed = draw(st.integers(0, 2**16))
    return shapes, restarts, row_targets, layouts, dtype, seed


def _fuzz(device, case):
    shapes, restarts, row_targets, layouts, dtype, seed = case
    rec, target = make_lists(shapes, dtype, device, restarts=restarts, seed=seed, grad=False, row_targets=row_targets)
    n = len(shapes)
    rec = [_layout(x, how) for x, how in zip(rec, layouts[:n])]
    target = [_layout(x, how) for x, how in zip(target, layouts[n:])]
    batched = restarts is not None
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    ref_inputs = ([x.double() for x in rec], [x.double() for x in target])
    assert_close_rel(PARTIALS(rec, target, batched, row_targets), _partials_reference(*ref_inputs, batched, row_targets),
                     tol)
    coef_rec = torch.linspace(-1, 2, (restarts or 1) * n, dtype=dtype, device=device).reshape(-1, n)
    coef_target = torch.linspace(3, -1, (restarts or 1) * n, dtype=dtype, device=device).reshape(-1, n)
    out = BACKWARD(rec, target, coef_rec, coef_target, batched, row_targets)
    for i, (o, r, t) in enumerate(zip(out, rec, target)):
        assert o.is_contiguous() and o.shape == r.shape and o.dtype == dtype
        shape = (-1,) + (1,) * (r.dim() - 1) if batched else ()
        cr = coef_rec[:, i].double().cpu().reshape(shape)
        ct = coef_target[:, i].double().cpu().reshape(shape)
        r64, t64 = r.double().cpu(), t.double().cpu()
        expected = (cr * r64 + ct * t64).reshape(r.shape)
        bound = (cr.abs() * r64.abs() + ct.abs() * t64.abs()).reshape(r.shape)
        assert (o.double().cpu() - expected).abs().le(tol * bound).all(), f"backward output {i}"


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@compiled
@FUZZ
@given(case=tensor_lists())
def test_fuzz_against_reference_cpu(case):
    _fuzz("cpu", case)


@cuda_only
@FUZZ
@given(case=tensor_lists())
def test_fuzz_against_reference_cuda(case):
    _fuzz("cuda", case)


# --------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("device", DEVICES)
def test_bitwise_repeatable(device):
    shapes = [(300_000,), (3, 3, 64, 64), (65537,), (10,)]
    rec, target = make_lists(shapes, torch.float32, device, restarts=2, grad=False)
    rows = [t.expand(2, *t.shape) for t in target]
    first, first_rows = PARTIALS(rec, target, True, False), PARTIALS(rec, rows, True, True)
    for _ in range(3):
        assert torch.equal(PARTIALS(rec, target, True, False), first)
        assert torch.equal(PARTIALS(rec, rows, True, True), first_rows)


@compiled
def test_independent_of_thread_count():
    shapes = [(300_000,), (3, 3, 64, 64), (65537,), (10,)] * 3
    rec, target = make_lists(shapes, torch.float32, "cpu", restarts=2, grad=False)
    coef = torch.randn(2, len(shapes))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, one_bwd = PARTIALS(rec, target, True, False), BACKWARD(rec, target, coef, coef, True, False)
        torch.set_num_threads(2)
        two, two_bwd = PARTIALS(rec, target, True, False), BACKWARD(rec, target, coef, coef, True, False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert all(torch.equal(a, b) for a, b in zip(one_bwd, two_bwd))


# --------------------------------------------------------------------------------------------
# errors

BOTH = pytest.mark.parametrize("fn", [pytest.param(grad_distance, marks=compiled), grad_distance_reference],
                               ids=["compiled", "reference"])


def _pair(*shapes, dtype=torch.float32):
    return [torch.zeros(s, dtype=dtype) for s in shapes]


@BOTH
def test_error_length_mismatch(fn):
    with pytest.raises(ValueError, match=r"rec and target must have the same length, got 2 and 1"):
        fn(_pair((2,), (3,)), _pair((2,)))


@BOTH
def test_error_empty(fn):
    with pytest.raises(ValueError, match=r"non-empty lists of tensors"):
        fn([], [])


@BOTH
def test_error_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"shape mismatch at index 1: rec\[1\] has shape \[3, 2\], "
                                         r"expected \[2, 3\] \(target\[i\]\.shape\)"):
        fn(_pair((2,), (3, 2)), _pair((2,), (2, 3)))
    with pytest.raises(ValueError, match=r"shape mismatch at index 0: rec\[0\] has shape \[2\], "
                                         r"expected \[2, 2\] \(\[R, \*target\[i\]\.shape\]\)"):
        fn(_pair((2,)), _pair((2,)), batched=True)
    with pytest.raises(ValueError, match=r"shape mismatch at index 1: rec\[1\] has shape \[3, 2\], expected \[2, 2\]"):
        fn(_pair((2, 2), (3, 2)), _pair((2,), (2,)), batched=True)


@BOTH
def test_error_integer_dtype(fn):
    with pytest.raises(TypeError, match=r"rec\[0\] must be float32 or float64, got dtype (torch\.int64|Long)"):
        fn(_pair((2,), dtype=torch.int64), _pair((2,), dtype=torch.int64))


@BOTH
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_error_half_dtype(fn, dtype):
    with pytest.raises(TypeError, match=r"rec\[0\] must be float32 or float64, got dtype (torch\.)?(float16|Half|"
                                        r"bfloat16|BFloat16)"):
        fn(_pair((2,), dtype=dtype), _pair((2,), dtype=dtype))


@BOTH
def test_error_mixed_dtype(fn):
    with pytest.raises(TypeError, match=r"target\[1\] has dtype (torch\.float64|Double), expected (torch\.float32|Float) "
                                        r"\(the dtype of rec\[0\]\); all tensors must share one dtype"):
        fn(_pair((2,), (3,)), _pair((2,)) + _pair((3,), dtype=torch.float64))


@BOTH
def test_error_bad_metric(fn):
    with pytest.raises(ValueError, match=r"metric must be one of \['cosine', 'l2', 'l2_relative'\], got 'l1'"):
        fn(_pair((2,)), _pair((2,)), "l1")


@BOTH
def test_error_bad_weights(fn):
    with pytest.raises(ValueError, match=r"weights must have 2 values \(one per tensor\), got 3"):
        fn(_pair((2,), (3,)), _pair((2,), (3,)), "l2", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"weights must be a 1-D tensor of 2 values"):
        fn(_pair((2,), (3,)), _pair((2,), (3,)), "l2", torch.ones(2, 1))


@compiled
def test_op_errors_name_the_op():
    with pytest.raises(ValueError, match=r"grad_distance_partials: shape mismatch at index 0"):
        PARTIALS(_pair((2,)), _pair((3,)), False, False)
    with pytest.raises(ValueError, match=r"grad_distance_backward: coef_rec must have shape \[R, N\] = \[1, 1\]"):
        BACKWARD(_pair((2,)), _pair((2,)), torch.zeros(2, 1), torch.zeros(1, 1), False, False)
    with pytest.raises(TypeError, match=r"grad_distance_backward: coef_target has dtype Double, expected Float"):
        BACKWARD(_pair((2,)), _pair((2,)), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.float64), False, False)
    with pytest.raises(ValueError, match=r"grad_distance_partials: row_targets=True needs batched=True"):
        PARTIALS(_pair((2,)), _pair((2,)), False, True)
    with pytest.raises(ValueError, match=r"grad_distance_partials: with row_targets=True every rec\[i\] and "
                                         r"target\[i\] must have the leading dimension R = 3; index 1 has shape"):
        PARTIALS([torch.zeros(3, 2), torch.zeros(2, 2)], [torch.zeros(3, 2), torch.zeros(2, 2)], True, True)


@cuda_only
def test_error_mixed_device():
    rec = [torch.zeros(2, device="cuda"), torch.zeros(3, device="cuda")]
    target = [torch.zeros(2, device="cuda"), torch.zeros(3)]
    for fn in (grad_distance, grad_distance_reference):
        with pytest.raises(ValueError, match=r"target\[1\] is on cpu, expected cuda:0"):
            fn(rec, target)


# --------------------------------------------------------------------------------------------
# fallback without the compiled library


@pytest.mark.parametrize("metric", METRICS)
def test_fallback_uses_reference_and_warns_once(monkeypatch, caplog, metric):
    rec, target = make_lists(SHAPES, torch.float64)
    expected = grad_distance_reference(rec, target, metric, batched=False)
    monkeypatch.setattr(_ext, "LOADED", False)
    monkeypatch.setattr(_ext, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="fastleak"):
        first = grad_distance(rec, target, metric)
        second = grad_distance(rec, target, metric)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "reference" in r.getMessage()]
    assert len(warnings) == 1
    assert not uses_compiled_partials(first)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("fn", [grad_distance, grad_distance_reference])
def test_per_row_targets_equal_one_call_per_row(metric, fn):
    g = torch.Generator().manual_seed(7)
    rec = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True),
           torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)]
    target = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g,
                                                                                   dtype=torch.float64)]
    out = fn(rec, target, metric, [1.0, 0.5], batched=True, row_targets=True)
    rows = torch.stack([grad_distance_reference([r[k] for r in rec], [t[k] for t in target], metric, [1.0, 0.5])
                        for k in range(3)])
    torch.testing.assert_close(out, rows, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(out.sum(), rec)
    want = torch.autograd.grad(rows.sum(), rec)
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_per_row_targets_gradcheck(metric):
    g = torch.Generator().manual_seed(8)
    rec = [torch.randn(3, 5, 2, generator=g, dtype=torch.float64).transpose(1, 2).requires_grad_(),
           torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)]
    target = [torch.randn(3, 2, 5, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)]

    def fn(*tensors):
        return grad_distance(list(tensors[:2]), list(tensors[2:]), metric, [1.0, 0.5], batched=True,
                             row_targets=True)

    assert torch.autograd.gradcheck(fn, (*rec, *target))


def test_row_targets_needs_batched_and_equal_rows():
    rec = [torch.zeros(3, 2)]
    with pytest.raises(ValueError, match="row_targets=True needs batched=True"):
        grad_distance(rec, [torch.zeros(3, 2)], row_targets=True)
    with pytest.raises(ValueError, match="same leading dimension 3"):
        grad_distance(rec, [torch.zeros(2, 2)], batched=True, row_targets=True)
