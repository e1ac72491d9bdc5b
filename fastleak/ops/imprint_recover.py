"""The inputs of an imprint layer's bins, recovered from its weight and bias gradients in one pass.

An imprint layer (``fastleak.malicious``) is a linear layer ``h = relu(W x + b)`` whose ``K`` rows
bin the inputs. Its gradients ``grad_weight`` ``[..., K, D]`` and ``grad_bias`` ``[..., K]`` (any
leading dimensions, e.g. several observations) are sums over the samples that activate each row:
``grad_weight[k] = sum_i c_i x_i`` and ``grad_bias[k] = sum_i c_i`` over those samples ``i``.

With ``cumulative=True`` (the "Robbing the Fed" layout) row ``k`` is active for every sample whose
measurement exceeds the row's threshold, so bin ``k`` is the difference of rows ``k`` and ``k + 1``
(the last bin is row ``K - 1`` alone); with ``cumulative=False`` (trap weights) every row is a bin
by itself. For every bin the op returns :class:`BinInputs` ``(images, bias_diff)``:

* ``bias_diff`` ``[..., K]``: the bin's bias-gradient difference ``sum_i c_i`` over the samples in
  the bin; zero for an empty bin;
* ``images`` ``[..., K, D]``: the bin's weight-gradient difference divided by ``bias_diff``: the
  sample itself when the bin holds exactly one, a weighted combination of its samples when it holds
  several, and zeros where ``bias_diff == 0``.

Everything is computed in the inputs' dtype (float32 or float64, both the same), so the compiled
kernels match the reference bit for bit. Deciding which bins are empty or mixed is left to the
caller (``fastleak.malicious.recovery``), which thresholds ``bias_diff`` at its noise level.

Gradients: the op is a smooth function of its inputs wherever ``bias_diff != 0`` (images =
difference / bias_diff); an empty bin's zeros have zero gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


class BinInputs(NamedTuple):
    images: torch.Tensor
    bias_diff: torch.Tensor


def _check_args(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool,
                op: str = "imprint_recover") -> None:
    for name, t in (("grad_weight", grad_weight), ("grad_bias", grad_bias)):
        if not isinstance(t, torch.Tensor):
            raise InvalidTypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if grad_weight.dim() < 2:
        raise InvalidValueError(f"{op}: grad_weight must be at least 2-D [..., K, D], "
                                f"got shape {tuple(grad_weight.shape)}")
    for name, t in (("grad_weight", grad_weight), ("grad_bias", grad_bias)):
        if t.dtype not in _SUPPORTED_DTYPES:
            raise InvalidTypeError(f"{op}: {name} must be float32 or float64, got dtype {t.dtype}")
    if grad_bias.dtype != grad_weight.dtype:
        raise InvalidTypeError(f"{op}: grad_bias has dtype {grad_bias.dtype}, expected {grad_weight.dtype} "
                               "(the dtype of grad_weight)")
    if grad_bias.device != grad_weight.device:
        raise InvalidValueError(f"{op}: grad_bias is on {grad_bias.device}, expected {grad_weight.device} "
                                "(the device of grad_weight)")
    if grad_bias.shape != grad_weight.shape[:-1]:
        raise InvalidValueError(f"{op}: grad_bias must have shape [..., K] = {tuple(grad_weight.shape[:-1])} "
                                f"(grad_weight's shape without D), got {tuple(grad_bias.shape)}")
    if not isinstance(cumulative, bool):
        raise InvalidTypeError(f"{op}: cumulative must be a bool, got {type(cumulative).__name__}")


def _next_rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Row k + 1 at position k along ``dim``, zeros after the last row."""
    shifted = t.narrow(dim, 1, t.shape[dim] - 1) if t.shape[dim] else t
    pad_shape = list(t.shape)
    pad_shape[dim] = t.shape[dim] - shifted.shape[dim]
    return torch.cat([shifted, t.new_zeros(pad_shape)], dim)


def imprint_recover_reference(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool = True) -> BinInputs:
    """Pure-PyTorch bin inputs: the semantics the compiled kernels implement."""
    _check_args(grad_weight, grad_bias, cumulative)
    if cumulative:
        weight_diff = grad_weight - _next_rows(grad_weight, -2)
        bias_diff = grad_bias - _next_rows(grad_bias, -1)
    else:
        weight_diff, bias_diff = grad_weight, grad_bias.clone()
    occupied = bias_diff != 0
    safe = torch.where(occupied, bias_diff, torch.ones_like(bias_diff))
    images = torch.where(occupied.unsqueeze(-1), weight_diff / safe.unsqueeze(-1), torch.zeros_like(weight_diff))
    return BinInputs(images=images, bias_diff=bias_diff)


def imprint_recover(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool = True) -> BinInputs:
    """Per-bin inputs and bias differences of an imprint layer's gradients (see module docs).

    Runs the fused kernel when the compiled library has one for the device, otherwise the
    pure-PyTorch reference.
    """
    _check_args(grad_weight, grad_bias, cumulative)
    if not compiled_for("imprint_recover", grad_weight):
        return imprint_recover_reference(grad_weight, grad_bias, cumulative)
    return BinInputs(*torch.ops.fastleak.imprint_recover(grad_weight, grad_bias, cumulative))


if registered("imprint_recover"):

    @torch.library.register_fake("fastleak::imprint_recover")
    def _imprint_recover_fake(grad_weight: torch.Tensor, grad_bias: torch.Tensor,
                              cumulative: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return grad_weight.new_empty(grad_weight.shape), grad_bias.new_empty(grad_bias.shape)
