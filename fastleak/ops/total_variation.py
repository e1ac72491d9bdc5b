"""Anisotropic total variation of an image batch, one value per image.

For ``x`` of shape ``[N, C, H, W]`` and ``p`` 1 or 2::

    tv[n] = mean_{c, h, w < W-1} |x[n, c, h, w+1] - x[n, c, h, w]|^p
          + mean_{c, h < H-1, w} |x[n, c, h+1, w] - x[n, c, h, w]|^p

``p = 1`` is the anisotropic total variation (Geiping et al.'s prior: it favours piecewise-constant
images and keeps edges); ``p = 2`` the mean squared difference of neighbours (the "l2" variation
of DeepInversion-style priors, or Mahendran and Vedaldi's TV^beta with beta = 2, for which the
isotropic and anisotropic forms are the same), smooth everywhere and harder on edges.

A direction without neighbour pairs (``W == 1`` for the horizontal term, ``H == 1``
for the vertical one, or ``C == 0``) contributes 0 instead of the mean of nothing.
For ``p = 1`` the derivative of ``|d|`` at ``d == 0`` is taken as 0.

``x`` is float32 or float64, and the result has its dtype. Both paths are differentiable to
any order: the compiled op's gradient is one fused pass, itself differentiable through fused
passes.
"""
from __future__ import annotations

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
_EXPONENTS = (1, 2)


def _check_args(x: torch.Tensor, p: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"total_variation: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InvalidValueError(f"total_variation: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in _SUPPORTED_DTYPES:
        raise InvalidTypeError(f"total_variation: x must be float32 or float64, got dtype {x.dtype}")
    if isinstance(p, bool) or p not in _EXPONENTS:
        raise InvalidValueError(f"total_variation: p must be 1 (absolute differences) or 2 (squared differences), "
                                f"got {p!r}")


def total_variation_reference(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Pure-PyTorch total variation: the semantics the compiled kernels implement."""
    _check_args(x, p)

    def term(d: torch.Tensor) -> torch.Tensor:
        d = d.flatten(1)
        if d.numel() == 0:  # no pairs: 0, still attached to the autograd graph
            return d.sum(1)
        return (d.abs() if p == 1 else d.square()).mean(1)

    return term(x[..., 1:] - x[..., :-1]) + term(x[..., 1:, :] - x[..., :-1, :])


def total_variation(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Per-image total variation of ``x`` [N, C, H, W] with exponent ``p`` (1 or 2); returns shape [N]
    (see module docs).

    Runs the fused kernel (one pass forward, one gather pass backward) when the compiled library
    has one for ``x``'s device, otherwise the pure-PyTorch reference.
    """
    _check_args(x, p)
    if not compiled_for("total_variation", x):
        return total_variation_reference(x, p)
    return torch.ops.fastleak.total_variation(x, int(p))


if registered("total_variation"):

    @torch.library.register_fake("fastleak::total_variation")
    def _total_variation_fake(x: torch.Tensor, p: int = 1) -> torch.Tensor:
        return x.new_empty((x.shape[0],))

    @torch.library.register_fake("fastleak::total_variation_backward")
    def _total_variation_backward_fake(grad_out: torch.Tensor, x: torch.Tensor, p: int) -> torch.Tensor:
        return x.new_empty(x.shape)
