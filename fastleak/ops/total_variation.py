"""Anisotropic total variation of an image batch, one value per image.

For ``x`` of shape ``[N, C, H, W]`` and ``p`` in ``{1, 2}``::

    tv[n] = mean_{c, h, w < W-1} |x[n, c, h, w+1] - x[n, c, h, w]| ** p
          + mean_{c, h < H-1, w} |x[n, c, h+1, w] - x[n, c, h, w]| ** p

``p=2`` is the mean of the *squared* differences: no square root is taken.
A direction without neighbour pairs (``W == 1`` for the horizontal term, ``H == 1``
for the vertical one, or ``C == 0``) contributes 0 instead of the mean of nothing.
The derivative of ``|d|`` at ``d == 0`` is taken as 0.

The result is float64 for float64 input and float32 for float32, float16 and bfloat16
input (the differences are formed and accumulated in at least float32).
"""
from __future__ import annotations

import torch

from fastleak import _ext

_OP = "fastleak::total_variation"
_OP_BACKWARD = "fastleak::total_variation_backward"


def _check_args(x: torch.Tensor, p: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"total_variation: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"total_variation: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"total_variation: x must be a floating-point tensor, got dtype {x.dtype}")
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"total_variation: p must be 1 or 2, got {p!r}")


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def total_variation_reference(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Pure-PyTorch total variation: the semantics the compiled kernels implement."""
    _check_args(x, p)
    xf = x.to(_result_dtype(x.dtype))
    def term(d: torch.Tensor) -> torch.Tensor:
        d = d.flatten(1)
        if d.numel() == 0:  # no pairs: 0, still attached to the autograd graph
            return d.sum(1)
        return (d.abs() if p == 1 else d.square()).mean(1)

    return term(xf[..., 1:] - xf[..., :-1]) + term(xf[..., 1:, :] - xf[..., :-1, :])


_REGISTERED = _ext.LOADED and hasattr(torch.ops.fastleak, "total_variation")


def _use_compiled(x: torch.Tensor) -> bool:
    return (_ext.compiled_ops_available() and _REGISTERED
            and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, x.device.type.upper()))


def total_variation(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Per-image total variation of ``x`` [N, C, H, W]; returns shape [N] (see module docs).

    Runs the fused kernel (one pass forward, one gather pass backward) when the compiled
    library has one for ``x``'s device, otherwise the pure-PyTorch reference.
    Differentiable twice.
    """
    _check_args(x, p)
    if not _use_compiled(x):
        return total_variation_reference(x, p)
    return torch.ops.fastleak.total_variation(x, p)


if _REGISTERED:

    @torch.library.register_fake(_OP)
    def _total_variation_fake(x: torch.Tensor, p: int) -> torch.Tensor:
        return x.new_empty((x.shape[0],), dtype=_result_dtype(x.dtype))

    @torch.library.register_fake(_OP_BACKWARD)
    def _total_variation_backward_fake(grad_out: torch.Tensor, x: torch.Tensor, p: int) -> torch.Tensor:
        return x.new_empty(x.shape)

    def _tv_setup_context(ctx, inputs, output) -> None:
        x, p = inputs
        ctx.save_for_backward(x)
        ctx.p = p

    def _tv_backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return torch.ops.fastleak.total_variation_backward(grad_out, x, ctx.p), None

    torch.library.register_autograd(_OP, _tv_backward, setup_context=_tv_setup_context)

    def _tv_backward_setup_context(ctx, inputs, output) -> None:
        grad_out, x, p = inputs
        ctx.save_for_backward(grad_out, x)
        ctx.p = p

    def _tv_backward_backward(ctx, grad_grad_x: torch.Tensor):
        # backward(g, x) = g[n] * J_n(x) with J_n = d tv[n] / d x[n], so it is linear in g.
        # For p=2, J_n(x) = L x with a symmetric stencil L, hence d<gg, g L x>/dx = g L gg;
        # for p=1, J_n is piecewise constant in x and its derivative is 0 almost everywhere.
        grad_out, x = ctx.saved_tensors
        p = ctx.p
        grad_grad_out = grad_x = None
        if ctx.needs_input_grad[0]:
            jac = torch.ops.fastleak.total_variation_backward(torch.ones_like(grad_out), x, p)
            grad_grad_out = (grad_grad_x.to(grad_out.dtype) * jac.to(grad_out.dtype)).flatten(1).sum(1)
        if ctx.needs_input_grad[1]:
            if p == 2:
                grad_x = torch.ops.fastleak.total_variation_backward(grad_out, grad_grad_x.to(x.dtype), p)
            else:
                grad_x = torch.zeros_like(x)
        return grad_grad_out, grad_x, None

    torch.library.register_autograd(_OP_BACKWARD, _tv_backward_backward,
                                    setup_context=_tv_backward_setup_context)
