"""Per-row statistics of a last-layer (fully connected) weight gradient, in one pass.

``grad_w`` is ``[C, D]`` (C classes, D features) or a stack ``[P, C, D]``, float32 or float64.
For every row (the gradient of one class's weight vector) the op returns :class:`FCRowStats`
``(sum, min)``, each of shape ``[C]`` or ``[P, C]`` and of the dtype of ``grad_w``:

* ``sum``: sum over D (accumulated in float64 on CPU, in the input dtype on CUDA);
* ``min``: NaN if the row holds a NaN (as ``torch.amin``).

``D == 0`` is rejected: the minimum of an empty row is undefined.

Gradients: ``sum`` broadcasts its gradient over the row; ``min`` sends its gradient to the
entries equal to the minimum, split evenly among ties (as ``torch.amin``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


class FCRowStats(NamedTuple):
    sum: torch.Tensor
    min: torch.Tensor


def _check_args(grad_w: torch.Tensor) -> None:
    if not isinstance(grad_w, torch.Tensor):
        raise InvalidTypeError(f"fc_row_stats: grad_w must be a torch.Tensor, got {type(grad_w).__name__}")
    if grad_w.dim() not in (2, 3):
        raise InvalidValueError("fc_row_stats: grad_w must be 2-D [C, D] or 3-D [P, C, D], "
                                f"got shape {tuple(grad_w.shape)}")
    if grad_w.dtype not in _SUPPORTED_DTYPES:
        raise InvalidTypeError(f"fc_row_stats: grad_w must be float32 or float64, got dtype {grad_w.dtype}")
    if grad_w.shape[-1] == 0:
        raise InvalidValueError("fc_row_stats: grad_w must have a non-empty last dimension D "
                                f"(the minimum of an empty row is undefined), got shape {tuple(grad_w.shape)}")


def fc_row_stats_reference(grad_w: torch.Tensor) -> FCRowStats:
    """Pure-PyTorch row statistics: the semantics the compiled kernels implement."""
    _check_args(grad_w)
    return FCRowStats(sum=grad_w.to(torch.float64).sum(-1).to(grad_w.dtype), min=grad_w.amin(-1))


def fc_row_stats(grad_w: torch.Tensor) -> FCRowStats:
    """Row sum and minimum of ``grad_w`` [C, D] or [P, C, D] (see module docs).

    Runs the fused one-pass kernel when the compiled library has one for the device,
    otherwise the pure-PyTorch reference.
    """
    _check_args(grad_w)
    if not compiled_for("fc_row_stats", grad_w):
        return fc_row_stats_reference(grad_w)
    return FCRowStats(*torch.ops.fastleak.fc_row_stats(grad_w))


if registered("fc_row_stats"):

    @torch.library.register_fake("fastleak::fc_row_stats")
    def _fc_row_stats_fake(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = g.shape[:-1]
        return g.new_empty(shape), g.new_empty(shape)
