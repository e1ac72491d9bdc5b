"""An imprint layer's bin inputs and, in the same pass, the statistics that certify each of them.

``imprint_certify(grad_weight, grad_bias, cumulative, measurement, low, high, levels)`` returns
:class:`CertifiedBins` ``(images, bias_diff, stats)``: ``images`` and ``bias_diff`` exactly as
``fastleak.ops.imprint_recover`` computes them, and per bin ``stats`` ``[..., K, 5]`` (in the
inputs' dtype), the columns named by ``STATS``:

* ``off_grid``: the largest distance of the bin's values to the grid ``low + i (high - low) /
  levels``, in grid steps, computed in the inputs' dtype and rounding half to even (0 when
  ``levels == 0``: no grid);
* ``low``, ``high``: the smallest and largest value (0 for D = 0);
* ``measured``: the dot product of the bin's input with its measurement, accumulated in float64;
  ``measurement`` ``[M, D]`` gives one measurement per group of ``K / M`` consecutive bins (bin
  ``k`` uses row ``k // (K / M)``); 0 when it is None;
* ``finite``: 1 when every value of the bin's input is finite, else 0; a bin with a value that is
  not finite gets NaN in every other column.

These are what ``fastleak.malicious.recovery`` needs to judge a bin (its grid, range and interval
checks) without reading the inputs again. The statistics have no gradient; ``images`` and
``bias_diff`` have ``imprint_recover``'s.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.ops._dispatch import compiled_for, registered
from fastleak.ops.imprint_recover import _check_args, imprint_recover_reference

STATS = ("off_grid", "low", "high", "measured", "finite")


class CertifiedBins(NamedTuple):
    images: torch.Tensor
    bias_diff: torch.Tensor
    stats: torch.Tensor


def _check_certify_args(grad_weight: torch.Tensor, measurement: torch.Tensor | None, low: float, high: float,
                        levels: int) -> None:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTypeError(f"imprint_certify: {name} must be a number, got {value!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise InvalidValueError(f"imprint_certify: levels must be an int >= 0 (0: no pixel grid), got {levels!r}")
    if levels and not high > low:
        raise InvalidValueError(f"imprint_certify: high must be greater than low for a pixel grid, got low {low} "
                                f"and high {high}")
    if measurement is None:
        return
    if not isinstance(measurement, torch.Tensor):
        raise InvalidTypeError(f"imprint_certify: measurement must be a torch.Tensor or None, got "
                               f"{type(measurement).__name__}")
    if measurement.dtype != grad_weight.dtype:
        raise InvalidTypeError(f"imprint_certify: measurement has dtype {measurement.dtype}, expected "
                               f"{grad_weight.dtype} (the dtype of grad_weight)")
    if measurement.device != grad_weight.device:
        raise InvalidValueError(f"imprint_certify: measurement is on {measurement.device}, expected "
                                f"{grad_weight.device} (the device of grad_weight)")
    k, d = grad_weight.shape[-2], grad_weight.shape[-1]
    if measurement.dim() != 2 or measurement.shape[1] != d or measurement.shape[0] < 1 or k % measurement.shape[0]:
        raise InvalidValueError(f"imprint_certify: measurement must have shape [M, D] with D = {d} and M dividing "
                                f"K = {k} (one measurement per group of K / M bins), got {tuple(measurement.shape)}")


def bin_stats_reference(images: torch.Tensor, measurement: torch.Tensor | None, low: float, high: float,
                        levels: int) -> torch.Tensor:
    """``stats`` [..., K, 5] of bin inputs ``images`` [..., K, D] (module docs), pure PyTorch."""
    k, d = images.shape[-2], images.shape[-1]
    lead = images.shape[:-1]
    finite = torch.isfinite(images).all(-1)
    if d == 0:
        zeros = images.new_zeros(lead)
        return torch.stack([zeros, zeros, zeros, zeros, finite.to(images.dtype)], -1)
    if levels:
        steps = (images - low) * (levels / (high - low))
        off = (steps - steps.round()).abs().amax(-1)
    else:
        off = images.new_zeros(lead)
    measured = images.new_zeros(lead, dtype=torch.float64)
    if measurement is not None:
        rows = measurement.to(torch.float64).repeat_interleave(k // measurement.shape[0], 0)
        measured = (images.to(torch.float64) * rows).sum(-1)
    stats = torch.stack([off, images.amin(-1), images.amax(-1), measured.to(images.dtype)], -1)
    stats = torch.where(finite[..., None], stats, torch.full_like(stats, float("nan")))
    return torch.cat([stats, finite.to(images.dtype)[..., None]], -1)


def imprint_certify_reference(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool = True,
                              measurement: torch.Tensor | None = None, low: float = 0.0, high: float = 1.0,
                              levels: int = 0) -> CertifiedBins:
    """Pure-PyTorch bins and statistics: the semantics the compiled kernels implement."""
    _check_args(grad_weight, grad_bias, cumulative, "imprint_certify")
    _check_certify_args(grad_weight, measurement, low, high, levels)
    images, bias_diff = imprint_recover_reference(grad_weight, grad_bias, cumulative)
    return CertifiedBins(images, bias_diff, bin_stats_reference(images, measurement, low, high, levels))


def imprint_certify(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool = True,
                    measurement: torch.Tensor | None = None, low: float = 0.0, high: float = 1.0,
                    levels: int = 0) -> CertifiedBins:
    """Bin inputs, bias differences and their statistics in one pass (module docs).

    Runs the fused kernel when the compiled library has one for the device, otherwise the
    pure-PyTorch reference.
    """
    _check_args(grad_weight, grad_bias, cumulative, "imprint_certify")
    _check_certify_args(grad_weight, measurement, low, high, levels)
    if not compiled_for("imprint_certify", grad_weight):
        return imprint_certify_reference(grad_weight, grad_bias, cumulative, measurement, low, high, levels)
    return CertifiedBins(*torch.ops.fastleak.imprint_certify(grad_weight, grad_bias, cumulative, measurement,
                                                             float(low), float(high), levels))


if registered("imprint_certify"):

    @torch.library.register_fake("fastleak::imprint_certify")
    def _imprint_certify_fake(grad_weight: torch.Tensor, grad_bias: torch.Tensor, cumulative: bool,
                              measurement: torch.Tensor | None, low: float, high: float,
                              levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (grad_weight.new_empty(grad_weight.shape), grad_bias.new_empty(grad_bias.shape),
                grad_bias.new_empty((*grad_bias.shape, len(STATS))))
