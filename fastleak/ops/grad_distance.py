"""Distance between two gradients given as lists of tensors (one tensor per model parameter).

    grad_distance(rec, target, metric="l2" | "cosine", weights=None, *, batched=False)

With per-tensor weights w_i (all 1 when ``weights`` is None):

- ``l2``:     sum_i w_i * ||r_i - t_i||^2, with (r - t)^2 summed directly (no r.r + t.t - 2 r.t).
- ``l2_relative``: sum_i w_i * ||r_i - t_i||^2 / max(sum_i w_i ||t_i||^2, EPS^2): the L2 distance
  relative to the target's size, so that it does not scale with the model's gradient magnitude.
- ``cosine``: 1 - sum_i w_i <r_i, t_i> / (norm_r * norm_t) with
  norm_r = sqrt(max(sum_i w_i ||r_i||^2, EPS^2)) and likewise norm_t, EPS = 1e-12: the
  cosine distance of the two whole concatenated (weighted) gradients. A zero gradient
  therefore has distance 1 and finite derivatives instead of NaN.

Shapes: every ``rec[i]`` has ``target[i]``'s shape and the result is a scalar. With
``batched=True`` every ``rec[i]`` has a leading restart dimension R (shape
``[R, *target[i].shape]``), the target is shared, and the result has shape ``[R]``. With
``batched=True, row_targets=True`` every ``target[i]`` has the leading dimension R too, and row
k of the result is the distance between row k of rec and row k of target: R independent
problems (e.g. attacks on different observations) in one call.

Dtypes: float32 and float64 are accepted; all tensors must share one dtype and one device, and
the result has that dtype. The sums are accumulated in float64 on CPU; on CUDA each thread
accumulates in the input dtype and threads and chunks are combined in float64. Both are
deterministic: bitwise the same from run to run, and on CPU independent of the thread count.

Weights are a sequence of N floats or a 1-D tensor of N values (non-negative for ``cosine``);
pass a tensor on the inputs' device to avoid a host-to-device copy per call.

The result is differentiable with respect to ``rec``, ``target`` and a weights tensor. The
compiled path computes the per-(restart, tensor) sums sum (r-t)^2, sum r.t, sum r^2 and sum t^2
in one deterministic pass over all tensors (``fastleak::grad_distance_partials``) and their
gradient in one fused pass (``fastleak::grad_distance_backward``, itself differentiable through
ATen ops, so that both paths are differentiable to any order); the metric itself is plain torch
on the [R, N, 4] sums. Both ops take per-row targets natively (``row_targets``), without
splitting the rows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered

EPS = 1e-12
_SUPPORTED_DTYPES = (torch.float32, torch.float64)
# Slots of the [R, N, 4] partial sums: sum (r-t)^2, sum r*t, sum r^2, sum t^2 (in this order).
_SLOT_DIFF2, _SLOT_RT, _SLOT_TT = 0, 1, 3

# metric name -> function(partials [R, N, 4], weights [N] | None) -> [R]
_METRICS: dict[str, Callable[[Tensor, Tensor | None], Tensor]] = {}


def _metric(name: str):
    def register(fn: Callable[[Tensor, Tensor | None], Tensor]):
        _METRICS[name] = fn
        return fn

    return register


def _weighted_sum(values: Tensor, weights: Tensor | None) -> Tensor:
    """Sum of values [R, N, ...] over the tensor axis N, weighted when weights [N] is given."""
    if weights is not None:
        values = values * weights.reshape((-1,) + (1,) * (values.dim() - 2))
    return values.sum(dim=1)


@_metric("l2")
def _l2(partials: Tensor, weights: Tensor | None) -> Tensor:
    return _weighted_sum(partials[..., _SLOT_DIFF2], weights)


@_metric("l2_relative")
def _l2_relative(partials: Tensor, weights: Tensor | None) -> Tensor:
    diff2 = _weighted_sum(partials[..., _SLOT_DIFF2], weights)
    tt = _weighted_sum(partials[..., _SLOT_TT], weights)
    return diff2 / tt.clamp_min(EPS * EPS)


@_metric("cosine")
def _cosine(partials: Tensor, weights: Tensor | None) -> Tensor:
    sums = _weighted_sum(partials[..., _SLOT_RT:], weights)  # [R, 3]: <r,t>, |r|^2, |t|^2
    norms = sums[:, 1:].clamp_min(EPS * EPS).sqrt()
    return 1.0 - sums[:, 0] / (norms[:, 0] * norms[:, 1])


def _check_sequences(rec: Sequence[Tensor], target: Sequence[Tensor]) -> None:
    for name, seq in (("rec", rec), ("target", target)):
        if isinstance(seq, Tensor) or not isinstance(seq, Sequence):
            raise InvalidTypeError(f"grad_distance: {name} must be a list or tuple of tensors, "
                                   f"got {type(seq).__name__}")
    if len(rec) != len(target):
        raise InvalidValueError(f"grad_distance: rec and target must have the same length, "
                                f"got {len(rec)} and {len(target)}")
    if len(rec) == 0:
        raise InvalidValueError("grad_distance: rec and target must be non-empty lists of tensors, got empty lists")


def _check_inputs(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool) -> None:
    """Raise a clear ValueError/TypeError for inputs the op does not accept."""
    _check_sequences(rec, target)
    ref = rec[0]
    if not isinstance(ref, Tensor):
        raise InvalidTypeError(f"grad_distance: rec[0] must be a tensor, got {type(ref).__name__}")
    if ref.dtype not in _SUPPORTED_DTYPES:
        raise InvalidTypeError(f"grad_distance: rec[0] must be float32 or float64, got dtype {ref.dtype}")
    restarts = None
    if batched:
        if ref.dim() == 0:
            raise InvalidValueError("grad_distance: with batched=True, rec[0] must have a leading restart dimension, "
                                    "got a 0-dim tensor")
        restarts = ref.shape[0]
    for i, (r, t) in enumerate(zip(rec, target)):
        for name, x in (("rec", r), ("target", t)):
            if not isinstance(x, Tensor):
                raise InvalidTypeError(f"grad_distance: {name}[{i}] must be a tensor, got {type(x).__name__}")
            if x.dtype != ref.dtype:
                raise InvalidTypeError(f"grad_distance: {name}[{i}] has dtype {x.dtype}, expected {ref.dtype} "
                                       "(the dtype of rec[0]); all tensors must share one dtype")
            if x.device != ref.device:
                raise InvalidValueError(f"grad_distance: {name}[{i}] is on {x.device}, expected {ref.device} "
                                        "(the device of rec[0]); all tensors must be on one device")
        expected = [restarts, *t.shape] if batched else list(t.shape)
        if list(r.shape) != expected:
            what = "[R, *target[i].shape]" if batched else "target[i].shape"
            raise InvalidValueError(f"grad_distance: shape mismatch at index {i}: rec[{i}] has shape "
                                    f"{list(r.shape)}, expected {expected} ({what})")


def _weights_tensor(weights: Sequence[float] | Tensor | None, n: int, dtype: torch.dtype,
                    device: torch.device) -> Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, Tensor):
        if weights.dim() != 1 or weights.shape[0] != n:
            raise InvalidValueError(f"grad_distance: weights must be a 1-D tensor of {n} values (one per tensor), "
                                    f"got shape {tuple(weights.shape)}")
        if not weights.is_floating_point():
            weights = weights.to(dtype)
        return weights.to(device=device, dtype=dtype)
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        raise InvalidTypeError(f"grad_distance: weights must be None, a sequence of {n} floats or a 1-D tensor, "
                               f"got {type(weights).__name__}")
    if len(weights) != n:
        raise InvalidValueError(f"grad_distance: weights must have {n} values (one per tensor), got {len(weights)}")
    return torch.tensor([float(w) for w in weights], dtype=dtype, device=device)


def _metric_fn(metric: str) -> Callable[[Tensor, Tensor | None], Tensor]:
    try:
        return _METRICS[metric]
    except (KeyError, TypeError):
        raise InvalidValueError(f"grad_distance: metric must be one of {sorted(_METRICS)}, got {metric!r}") from None


def _partials_reference(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool,
                        row_targets: bool = False) -> Tensor:
    """Pure-PyTorch [R, N, 4] sums: (r-t)^2, r*t, r^2, t^2 per restart and tensor (row r of a
    per-row target with ``row_targets``)."""
    rows = []
    for r, t in zip(rec, target):
        if batched:
            r = r.reshape(r.shape[0], -1)
            t = t.reshape(r.shape[0] if row_targets else 1, -1)
        else:
            r = r.reshape(1, -1)
            t = t.reshape(1, -1)
        rows.append(torch.stack([(r - t).pow(2).sum(1), (r * t).sum(1), r.pow(2).sum(1),
                                 t.pow(2).sum(1).expand(r.shape[0])], dim=1))
    return torch.stack(rows, dim=1)


def _finish(partials: Tensor, metric_fn, weights: Tensor | None, batched: bool) -> Tensor:
    out = metric_fn(partials, weights)
    return out if batched else out[0]


def _check_op_inputs(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool, row_targets: bool) -> None:
    """The inputs' checks (reference and fake ops): per-row targets are checked like a shared
    target against their row shape."""
    if row_targets:
        _check_rows(rec, target, batched)
        _check_inputs(rec, [t.new_empty(t.shape[1:]) for t in target], True)
    else:
        _check_inputs(rec, target, batched)


def _check_rows(rec: Sequence[Tensor], target: Sequence[Tensor], batched: bool) -> None:
    """Check that every tensor of per-row batched lists has the same leading row dimension R."""
    if not batched:
        raise InvalidValueError("grad_distance: row_targets=True needs batched=True")
    _check_sequences(rec, target)
    for i, (r, t) in enumerate(zip(rec, target)):
        if not isinstance(r, Tensor) or not isinstance(t, Tensor) or r.dim() == 0 or t.dim() == 0:
            raise InvalidValueError(f"grad_distance: with row_targets=True, rec[{i}] and target[{i}] must be tensors "
                                    "with a leading row dimension")
    rows = rec[0].shape[0]
    for i, (r, t) in enumerate(zip(rec, target)):
        if r.shape[0] != rows or t.shape[0] != rows:
            raise InvalidValueError("grad_distance: with per-row targets every rec[i] and target[i] must have the "
                                    f"same leading dimension {rows}; index {i} has {r.shape[0]} and {t.shape[0]}")


def grad_distance_reference(rec: Sequence[Tensor], target: Sequence[Tensor], metric: str = "l2",
                            weights: Sequence[float] | Tensor | None = None, *, batched: bool = False,
                            row_targets: bool = False) -> Tensor:
    """Pure-PyTorch grad_distance; defines the semantics (see the module docstring)."""
    metric_fn = _metric_fn(metric)
    _check_op_inputs(rec, target, batched, row_targets)
    w = _weights_tensor(weights, len(rec), rec[0].dtype, rec[0].device)
    return _finish(_partials_reference(rec, target, batched, row_targets), metric_fn, w, batched)


def grad_distance(rec: Sequence[Tensor], target: Sequence[Tensor], metric: str = "l2",
                  weights: Sequence[float] | Tensor | None = None, *, batched: bool = False,
                  row_targets: bool = False) -> Tensor:
    """Distance between gradients ``rec`` and ``target`` (lists of tensors); see the module docstring.

    Uses the fused compiled kernels when fastleak._C has them for the inputs' device, the
    pure-PyTorch reference otherwise.
    """
    _check_sequences(rec, target)
    if not (isinstance(rec[0], Tensor) and compiled_for("grad_distance_partials", rec[0])):
        return grad_distance_reference(rec, target, metric, weights, batched=batched, row_targets=row_targets)
    metric_fn = _metric_fn(metric)
    w = _weights_tensor(weights, len(rec), rec[0].dtype, rec[0].device)
    if row_targets:
        _check_rows(rec, target, batched)
    # The op checks every tensor's dtype, device and shape itself (TORCH_CHECK).
    partials = torch.ops.fastleak.grad_distance_partials(rec, target, batched, row_targets)
    return _finish(partials, metric_fn, w, batched)


if registered("grad_distance_partials"):

    @torch.library.register_fake("fastleak::grad_distance_partials")
    def _partials_fake(rec, target, batched, row_targets):
        _check_op_inputs(rec, target, batched, row_targets)
        restarts = rec[0].shape[0] if batched else 1
        return rec[0].new_empty((restarts, len(rec), 4))

    @torch.library.register_fake("fastleak::grad_distance_backward")
    def _backward_fake(rec, target, coef_rec, coef_target, batched, row_targets):
        _check_op_inputs(rec, target, batched, row_targets)
        return [r.new_empty(r.shape) for r in rec]
