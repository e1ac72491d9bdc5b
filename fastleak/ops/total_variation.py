"""Anisotropic total variation of an image batch, one value per image.

For ``x`` of shape ``[N, C, H, W]``::

    tv[n] = mean_{c, h, w < W-1} |x[n, c, h, w+1] - x[n, c, h, w]|
          + mean_{c, h < H-1, w} |x[n, c, h+1, w] - x[n, c, h, w]|

A direction without neighbour pairs (``W == 1`` for the horizontal term, ``H == 1``
for the vertical one, or ``C == 0``) contributes 0 instead of the mean of nothing.
The derivative of ``|d|`` at ``d == 0`` is taken as 0.

``x`` is float32 or float64, and the result has its dtype. The compiled op is differentiable
once (its gradient is one fused pass); the reference to any order.
"""
from __future__ import annotations

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def _check_args(x: torch.Tensor, p: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"total_variation: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InvalidValueError(f"total_variation: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in _SUPPORTED_DTYPES:
        raise InvalidTypeError(f"total_variation: x must be float32 or float64, got dtype {x.dtype}")
    if isinstance(p, bool) or p != 1:
        raise InvalidValueError(f"total_variation: p must be 1 (the anisotropic total variation), got {p!r}")


def total_variation_reference(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Pure-PyTorch total variation: the semantics the compiled kernels implement."""
    _check_args(x, p)

    def term(d: torch.Tensor) -> torch.Tensor:
        d = d.flatten(1)
        if d.numel() == 0:  # no pairs: 0, still attached to the autograd graph
            return d.sum(1)
        return d.abs().mean(1)

    return term(x[..., 1:] - x[..., :-1]) + term(x[..., 1:, :] - x[..., :-1, :])


def total_variation(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Per-image total variation of ``x`` [N, C, H, W]; returns shape [N] (see module docs).

    ``p`` is the exponent of the differences; only 1 is implemented. Runs the fused kernel
    (one pass forward, one gather pass backward) when the compiled library has one for
    ``x``'s device, otherwise the pure-PyTorch reference.
    """
    _check_args(x, p)
    if not compiled_for("total_variation", x):
        return total_variation_reference(x, p)
    return torch.ops.fastleak.total_variation(x)


if registered("total_variation"):

    @torch.library.register_fake("fastleak::total_variation")
    def _total_variation_fake(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty((x.shape[0],))

    @torch.library.register_fake("fastleak::total_variation_backward")
    def _total_variation_backward_fake(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(x.shape)
