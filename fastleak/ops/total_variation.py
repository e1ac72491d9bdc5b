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


_compiled_devices: dict[str, bool] = {}


def _use_compiled(x: torch.Tensor) -> bool:
    """Whether the compiled library is loaded and has a kernel of this op for the device."""
    if not (_ext.compiled_ops_available() and _REGISTERED):
        return False
    device = x.device.type
    if device not in _compiled_devices:
        _compiled_devices[device] = torch._C._dispatch_has_kernel_for_dispatch_key(_OP, device.upper())
    return _compiled_devices[device]


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

    # The autograd of both ops is registered in C++ (csrc/ops/total_variation.cpp).
