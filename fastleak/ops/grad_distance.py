"""Distance between two gradients given as lists of tensors (one tensor per model parameter).

    grad_distance(rec, target, metric="l2" | "cosine", weights=None, *, batched=False)

With per-tensor weights w_i (all 1 when ``weights`` is None):

- ``l2``:     sum_i w_i * ||r_i - t_i||^2, with (r - t)^2 summed directly (no r.r + t.t - 2 r.t).
- ``cosine``: 1 - sum_i w_i <r_i, t_i> / (norm_r * norm_t) with
  norm_r = sqrt(max(sum_i w_i ||r_i||^2, EPS^2)) and likewise norm_t, EPS = 1e-12: the
  cosine distance of the two whole concatenated (weighted) gradients. A zero gradient
  therefore has distance 1 and finite derivatives instead of NaN.

Shapes: every ``rec[i]`` has ``target[i]``'s shape and the result is a scalar. With
``batched=True`` every ``rec[i]`` has a leading restart dimension R (shape
``[R, *target[i].shape]``), the target is shared, and the result has shape ``[R]``.

Dtypes: float16, bfloat16, float32 and float64 are accepted; all tensors must share one dtype
and one device. The result is float64 for float64 inputs and float32 otherwise; the sums are
accumulated in float64 on CPU.

Weights are a sequence of N floats or a 1-D tensor of N values (non-negative for ``cosine``);
pass a tensor on the inputs' device to avoid a host-to-device copy per call.

The result is differentiable with respect to ``rec``, ``target`` and a weights tensor, to any
order. The compiled path computes the per-(restart, tensor) sums sum (r-t)^2, sum r.t,
sum r^2 and sum t^2 in one deterministic pass over all tensors
(``fastleak::grad_distance_partials``) and the gradient in one fused pass
(``fastleak::grad_distance_backward``); the metric itself is plain torch on the [R, N, 4] sums.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fastleak import _ext

EPS = 1e-12
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SLOT_DIFF2, _SLOT_RT, _SLOT_RR, _SLOT_TT = range(4)

# metric name -> function(partials [R, N, 4], weights [N] | None) -> [R]
_METRICS: dict[str, Callable[[Tensor, Tensor | None], Tensor]] = {}


def _metric(name: str):
    def register(fn: Callable[[Tensor, Tensor | None], Tensor]):
        _METRICS[name] = fn
        return fn

    return register


def _weighted_sum(values: Tensor, weights: Tensor | None) -> Tensor:
    """Sum over the tensor axis of values [R, N], weighted when weights [N] is given."""
    if weights is None:
        return values.sum(dim=1)
    return (values * weights).sum(dim=1)


@_metric("l2")
def _l2(partials: Tensor, weights: Tensor | None) -> Tensor:
    return _weighted_sum(partials[..., _SLOT_DIFF2], weights)


@_metric("cosine")
def _cosine(partials: Tensor, weights: Tensor | None) -> Tensor:
    dot = _weighted_sum(partials[..., _SLOT_RT], weights)
    rr = _weighted_sum(partials[..., _SLOT_RR], weights)
    tt = _weighted_sum(partials[..., _SLOT_TT], weights)
    eps2 = EPS * EPS
    return 1.0 - dot / (rr.clamp_min(eps2).sqrt() * tt.clamp_min(eps2).sqrt())


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool) -> None:
    """Raise a clear ValueError/TypeError for inputs the op does not accept."""
    for name, seq in (("rec", rec), ("target", target)):
        if isinstance(seq, Tensor) or not isinstance(seq, Sequence):
            raise TypeError(f"grad_distance: {name} must be a list or tuple of tensors, "
                            f"got {type(seq).__name__}")
    if len(rec) == 0:
        raise ValueError("grad_distance: rec and target must be non-empty lists of tensors, got empty lists"
                         if len(target) == 0 else "grad_distance: rec is an empty list")
    if len(rec) != len(target):
        raise ValueError(f"grad_distance: rec and target must have the same length, "
                         f"got {len(rec)} and {len(target)}")
    ref = rec[0]
    if not isinstance(ref, Tensor):
        raise TypeError(f"grad_distance: rec[0] must be a tensor, got {type(ref).__name__}")
    if ref.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"grad_distance: rec[0] has dtype {ref.dtype}; expected one of "
                        "float16, bfloat16, float32, float64")
    restarts = None
    if batched:
        if ref.dim() == 0:
            raise ValueError("grad_distance: with batched=True, rec[0] must have a leading restart dimension, "
                             "got a 0-dim tensor")
        restarts = ref.shape[0]
    for i, (r, t) in enumerate(zip(rec, target)):
        for name, x in (("rec", r), ("target", t)):
            if not isinstance(x, Tensor):
                raise TypeError(f"grad_distance: {name}[{i}] must be a tensor, got {type(x).__name__}")
            if x.dtype != ref.dtype:
                raise TypeError(f"grad_distance: {name}[{i}] has dtype {x.dtype}, expected {ref.dtype} "
                                "(the dtype of rec[0]); all tensors must share one dtype")
            if x.device != ref.device:
                raise ValueError(f"grad_distance: {name}[{i}] is on {x.device}, expected {ref.device} "
                                 "(the device of rec[0]); all tensors must be on one device")
        expected = (restarts, *t.shape) if batched else tuple(t.shape)
        if tuple(r.shape) != expected:
            what = f"[R={restarts}, *target[{i}].shape]" if batched else f"target[{i}].shape"
            raise ValueError(f"grad_distance: shape mismatch at index {i}: rec[{i}] has shape "
                             f"{tuple(r.shape)}, expected {list(expected)} ({what})")


def _weights_tensor(weights: Sequence[float] | Tensor | None, n: int, dtype: torch.dtype,
                    device: torch.device) -> Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, Tensor):
        if weights.dim() != 1 or weights.shape[0] != n:
            raise ValueError(f"grad_distance: weights must be a 1-D tensor of {n} values (one per tensor), "
                             f"got shape {tuple(weights.shape)}")
        if not weights.is_floating_point():
            weights = weights.to(dtype)
        return weights.to(device=device, dtype=dtype)
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        raise TypeError(f"grad_distance: weights must be None, a sequence of {n} floats or a 1-D tensor, "
                        f"got {type(weights).__name__}")
    if len(weights) != n:
        raise ValueError(f"grad_distance: weights must have {n} values (one per tensor), got {len(weights)}")
    return torch.tensor([float(w) for w in weights], dtype=dtype, device=device)


def _metric_fn(metric: str) -> Callable[[Tensor, Tensor | None], Tensor]:
    try:
        return _METRICS[metric]
    except (KeyError, TypeError):
        raise ValueError(f"grad_distance: metric must be one of {sorted(_METRICS)}, got {metric!r}") from None


def _partials_reference(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool) -> Tensor:
    """Pure-PyTorch [R, N, 4] sums: (r-t)^2, r*t, r^2, t^2 per restart and tensor."""
    acc = _result_dtype(rec[0].dtype)
    rows = []
    for r, t in zip(rec, target):
        r = r.to(acc)
        t = t.to(acc)
        if batched:
            r = r.reshape(r.shape[0], -1)
            t = t.reshape(1, -1)
        else:
            r = r.reshape(1, -1)
            t = t.reshape(1, -1)
        rows.append(torch.stack([(r - t).pow(2).sum(1), (r * t).sum(1), r.pow(2).sum(1),
                                 t.pow(2).sum(1).expand(r.shape[0])], dim=1))
    return torch.stack(rows, dim=1)


def _finish(partials: Tensor, metric_fn, weights: Tensor | None, batched: bool) -> Tensor:
    out = metric_fn(partials, weights)
    return out if batched else out[0]


def grad_distance_reference(rec: Sequence[Tensor], target: Sequence[Tensor], metric: str = "l2",
                            weights: Sequence[float] | Tensor | None = None, *, batched: bool = False) -> Tensor:
    """Pure-PyTorch grad_distance; defines the semantics (see the module docstring)."""
    metric_fn = _metric_fn(metric)
    _check_inputs(rec, target, batched)
    acc = _result_dtype(rec[0].dtype)
    w = _weights_tensor(weights, len(rec), acc, rec[0].device)
    return _finish(_partials_reference(rec, target, batched), metric_fn, w, batched)


def grad_distance(rec: Sequence[Tensor], target: Sequence[Tensor], metric: str = "l2",
                  weights: Sequence[float] | Tensor | None = None, *, batched: bool = False) -> Tensor:
    """Distance between gradients ``rec`` and ``target`` (lists of tensors); see the module docstring.

    Uses the fused compiled kernels when fastleak._C is loaded, the pure-PyTorch reference otherwise.
    """
    if not (_ext.compiled_ops_available() and hasattr(torch.ops.fastleak, "grad_distance_partials")):
        return grad_distance_reference(rec, target, metric, weights, batched=batched)
    metric_fn = _metric_fn(metric)
    _check_inputs(rec, target, batched)
    acc = _result_dtype(rec[0].dtype)
    w = _weights_tensor(weights, len(rec), acc, rec[0].device)
    partials = torch.ops.fastleak.grad_distance_partials(list(rec), list(target), batched)
    return _finish(partials, metric_fn, w, batched)
