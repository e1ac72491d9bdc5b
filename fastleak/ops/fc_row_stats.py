"""Per-row statistics of a last-layer (fully connected) weight gradient, in one pass.

``grad_w`` is ``[C, D]`` (C classes, D features) or a stack ``[P, C, D]``. For every row
(the gradient of one class's weight vector) the op returns :class:`FCRowStats`
``(sum, min, max, neg_count)``, each of shape ``[C]`` or ``[P, C]``:

* ``sum``: sum over D, float64 for float64 input and float32 otherwise (accumulated in
  float64 on CPU, in float32/float64 on CUDA);
* ``min`` / ``max``: in the input dtype; NaN if the row holds a NaN (as ``torch.amin``);
* ``neg_count``: int64 number of entries ``< 0`` (NaN and -0.0 are not negative).

``D == 0`` is rejected: min and max of an empty row are undefined.

Gradients: ``sum`` broadcasts its gradient over the row; ``min`` and ``max`` send theirs to
the entries equal to the extremum, split evenly among ties (as ``torch.amin``/``amax``);
``neg_count`` is not differentiable.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from fastleak import _ext

_OP = "fastleak::fc_row_stats"


class FCRowStats(NamedTuple):
    sum: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    neg_count: torch.Tensor


def _check_args(grad_w: torch.Tensor) -> None:
    if not isinstance(grad_w, torch.Tensor):
        raise TypeError(f"fc_row_stats: grad_w must be a torch.Tensor, got {type(grad_w).__name__}")
    if grad_w.dim() not in (2, 3):
        raise ValueError("fc_row_stats: grad_w must be 2-D [C, D] or 3-D [P, C, D], "
                         f"got shape {tuple(grad_w.shape)}")
    if not grad_w.is_floating_point():
        raise TypeError(f"fc_row_stats: grad_w must be a floating-point tensor, got dtype {grad_w.dtype}")
    if grad_w.shape[-1] == 0:
        raise ValueError("fc_row_stats: grad_w must have a non-empty last dimension D "
                         f"(min/max of an empty row are undefined), got shape {tuple(grad_w.shape)}")


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def fc_row_stats_reference(grad_w: torch.Tensor) -> FCRowStats:
    """Pure-PyTorch row statistics: the semantics the compiled kernels implement."""
    _check_args(grad_w)
    return FCRowStats(
        sum=grad_w.to(torch.float64).sum(-1).to(_sum_dtype(grad_w.dtype)),
        min=grad_w.amin(-1),
        max=grad_w.amax(-1),
        neg_count=(grad_w < 0).sum(-1),
    )


_REGISTERED = _ext.LOADED and hasattr(torch.ops.fastleak, "fc_row_stats")


def _use_compiled(grad_w: torch.Tensor) -> bool:
    return (_ext.compiled_ops_available() and _REGISTERED
            and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, grad_w.device.type.upper()))


def fc_row_stats(grad_w: torch.Tensor) -> FCRowStats:
    """Row sum, min, max and negative count of ``grad_w`` [C, D] or [P, C, D] (see module docs).

    Runs the fused one-pass kernel when the compiled library has one for the device,
    otherwise the pure-PyTorch reference.
    """
    _check_args(grad_w)
    if not _use_compiled(grad_w):
        return fc_row_stats_reference(grad_w)
    return FCRowStats(*torch.ops.fastleak.fc_row_stats(grad_w))


if _REGISTERED:

    @torch.library.register_fake(_OP)
    def _fc_row_stats_fake(g: torch.Tensor):
        shape = g.shape[:-1]
        return (g.new_empty(shape, dtype=_sum_dtype(g.dtype)), g.new_empty(shape), g.new_empty(shape),
                g.new_empty(shape, dtype=torch.int64))

    def _setup_context(ctx, inputs, output) -> None:
        (g,) = inputs
        _, mn, mx, _ = output
        ctx.save_for_backward(g, mn, mx)
        ctx.mark_non_differentiable(output[3])

    def _extremum_grad(g: torch.Tensor, ext: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        hit = (g == ext.unsqueeze(-1)).to(grad.dtype)
        return hit * (grad / hit.sum(-1)).unsqueeze(-1)

    def _backward(ctx, grad_sum, grad_min, grad_max, _grad_count):
        g, mn, mx = ctx.saved_tensors
        grad = None
        if grad_sum is not None:
            grad = grad_sum.to(g.dtype).unsqueeze(-1).expand_as(g)
        for ext, grad_ext in ((mn, grad_min), (mx, grad_max)):
            if grad_ext is not None:
                part = _extremum_grad(g, ext, grad_ext.to(g.dtype))
                grad = part if grad is None else grad + part
        return torch.zeros_like(g) if grad is None else grad

    torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
