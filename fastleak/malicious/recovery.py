"""Recovery: the client's inputs from what it shared about a malicious model's bin layer.

``recover(observation, model, config)`` reads the shared tensors of the block's bin layer (a
FedSGD gradient, or a FedAvg update ``W_after - W_before``: the ratio of weight to bias
differences does not depend on the scale ``-lr``), turns them into one candidate input per bin
with ``fastleak.ops.imprint_recover``, and sorts the bins:

* ``empty``: ``|bias_diff| <= empty_tolerance * max |bias_diff|`` (no sample reached the bin).
  An empty bin's difference is exactly zero: its rows' sums add the same terms in the same order,
  and a sparse or trap row receives nothing. The default tolerance is therefore 0, since a lone
  sample the model already classifies confidently has a tiny but real bias difference (down to
  1e-7 of the largest at B = 256); under noise no bin is empty and the checks judge every one;
* ``mixed``: occupied, but the candidate fails one of ``config.checks`` (``fastleak.malicious.checks``):
  it cannot be one sample;
* ``single``: occupied and passes every check; its candidate is reported as a recovered input.

Before the checks, each candidate is re-scaled onto the data's pixel grid where that fits better
(``snap_to_grid``, ``fastleak.malicious.rescale``): a FedAvg update's bias change is rounded to a
few digits in float32, while the direction of the weight change, and so the sample, survives.

With trap weights several rows can hold the same sample; single candidates closer than
``duplicate_tolerance`` (RMS) to one kept earlier are reported once. An imprint block's bins are
disjoint intervals of the measurement, so no sample is in two of them.

Labels come from the existing label-count API (``fastleak.labels.recover``) on the same
observation and model; they are a multiset, not tied to the recovered inputs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation
from fastleak.malicious import checks as _checks
from fastleak.malicious.model import MaliciousModel
from fastleak.malicious.rescale import measurement_estimate, off_grid, snap_to_grid
from fastleak.ops import imprint_recover

log = logging.getLogger("fastleak.malicious")

STATUSES = ("empty", "single", "mixed")
SETTLED_GRID_STEPS = 0.1  # float32 rounding leaves a lone sample of a FedSGD gradient within 0.06 steps


@dataclass(frozen=True)
class RecoveryConfig:
    """How bins are judged (see the module and ``fastleak.malicious.checks``).

    ``pixel_range``/``pixel_levels`` describe the client's data: values in [0, 1] on a grid of
    255 steps for the 8-bit images of ``fastleak.data``; None turns the range or grid check off.
    ``snap_to_grid`` re-scales each bin's input onto that grid first, trying grid levels within
    ``snap_search`` steps (``fastleak.malicious.rescale``; needs ``pixel_levels``).
    ``labels`` is a ``fastleak.labels`` method name, or None to skip label recovery.
    """

    checks: tuple[str, ...] = ("interval", "activation", "range", "grid")
    empty_tolerance: float = 0.0
    interval_tolerance: float = 0.05
    pixel_range: tuple[float, float] | None = (0.0, 1.0)
    range_tolerance: float = 0.01
    pixel_levels: int | None = 255
    grid_tolerance: float = 0.25
    snap_to_grid: bool = True
    snap_search: int = 8
    duplicate_tolerance: float = 1e-4
    labels: str | None = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(self.checks))
        for name in self.checks:
            _checks.CHECKS.get(name)
        for name in ("empty_tolerance", "interval_tolerance", "range_tolerance", "grid_tolerance",
                     "duplicate_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.pixel_range is not None:
            lo, hi = self.pixel_range
            if not hi > lo:
                raise InvalidValueError(f"pixel_range must be (low, high) with high > low, got {self.pixel_range!r}")
        if self.pixel_levels is not None and (isinstance(self.pixel_levels, bool) or
                                              not isinstance(self.pixel_levels, int) or self.pixel_levels < 1):
            raise InvalidValueError(f"pixel_levels must be a positive int or None, got {self.pixel_levels!r}")
        if isinstance(self.snap_search, bool) or not isinstance(self.snap_search, int) or self.snap_search < 0:
            raise InvalidValueError(f"snap_search must be a non-negative int, got {self.snap_search!r}")


@dataclass(frozen=True)
class Recovery:
    """What the server recovered from one observation.

    ``images`` [M, *in_shape] are the inputs of the bins judged ``single`` (duplicates removed),
    ``bins`` [M] their bin indices. Per bin: ``status`` ("empty", "single" or "mixed"),
    ``failed_checks`` (names of the checks its candidate failed), ``bin_images`` [K, *in_shape]
    (every bin's candidate, after re-scaling onto the grid; zeros for a bin with zero bias
    difference) and ``bias_diff`` [K].
    ``labels``: the recovered label multiset (sorted), or None. ``seconds``: wall time from the
    start of the call to this result, labels included.
    """

    images: torch.Tensor
    bins: torch.Tensor
    status: tuple[str, ...]
    failed_checks: tuple[tuple[str, ...], ...]
    bin_images: torch.Tensor
    bias_diff: torch.Tensor
    labels: torch.Tensor | None
    seconds: float

    def count(self, status: str) -> int:
        """How many bins have ``status``."""
        if status not in STATUSES:
            raise InvalidValueError(f"status must be one of {STATUSES}, got {status!r}")
        return sum(s == status for s in self.status)


def bin_parameter_names(model: MaliciousModel) -> tuple[str, str]:
    """Names in ``model.named_parameters()`` of the block's bin-layer weight and bias."""
    if not isinstance(model, MaliciousModel):
        raise InvalidTypeError(f"model must be a MaliciousModel (fastleak.malicious.imprint_model or trap_model), "
                               f"got {type(model).__name__}")
    names = {id(p): n for n, p in model.named_parameters()}
    layer = model.block.bins
    return names[id(layer.weight)], names[id(layer.bias)]


def _bin_gradients(observation: Observation, model: MaliciousModel) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(observation, Observation):
        raise InvalidTypeError(f"observation must be an Observation, got {type(observation).__name__}")
    weight_name, bias_name = bin_parameter_names(model)
    for name in (weight_name, bias_name):
        if name not in observation.param_names:
            raise InvalidValueError(f"observation does not share {name!r}, the malicious block's bin layer; "
                                    "was it computed on this model?")
    observation.check_against(model)
    shared = observation.shared_dict()
    return shared[weight_name], shared[bias_name]


def _judge(images: torch.Tensor, bias_diff: torch.Tensor, model: MaliciousModel,
           config: RecoveryConfig) -> tuple[list[str], list[tuple[str, ...]]]:
    diff = bias_diff.detach().to(torch.float64)
    empty = diff.abs() <= config.empty_tolerance * diff.abs().max().clamp_min(1e-300)
    rows = torch.nonzero(~empty).flatten()
    flat = images.detach()[rows].to(torch.float64)
    results = {name: _checks.CHECKS.get(name)(flat, rows, model.block, diff, config).cpu() for name in config.checks}
    status: list[str] = ["empty"] * len(diff)
    failed: list[tuple[str, ...]] = [()] * len(diff)
    for i, k in enumerate(rows.tolist()):
        fails = tuple(name for name, ok in results.items() if not bool(ok[i]))
        status[k] = "mixed" if fails else "single"
        failed[k] = fails
    return status, failed


def _single_inputs(images: torch.Tensor, status: list[str], rows_overlap: bool,
                   tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    bins = torch.tensor([k for k, s in enumerate(status) if s == "single"], dtype=torch.long)
    chosen = images[bins.to(images.device)]
    if not rows_overlap or len(bins) < 2:
        return chosen, bins
    keep: list[int] = []
    flat = chosen.to(torch.float64)
    for i in range(len(bins)):
        if not keep or ((flat[keep] - flat[i]).pow(2).mean(1).sqrt() > tolerance).all():
            keep.append(i)
    index = torch.tensor(keep, dtype=torch.long)
    return chosen[index.to(chosen.device)], bins[index]


def _snapped(images: torch.Tensor, bias_diff: torch.Tensor, model: MaliciousModel, config: RecoveryConfig,
             exact_bias: bool) -> torch.Tensor:
    low, high = config.pixel_range if config.pixel_range is not None else (0.0, 1.0)
    occupied = torch.nonzero(bias_diff != 0).flatten()
    flat = images[occupied].detach().to(torch.float64)
    off = off_grid(flat, config.pixel_levels, low, high)
    # with a gradient's bias, inputs already this close to the grid (its lone samples) stay as they are;
    # an update's rounded bias change can scale a dark image by 1% and still leave it this close
    unsettled = off > (SETTLED_GRID_STEPS if exact_bias else 0.0)
    occupied, flat, off = occupied[unsettled], flat[unsettled], off[unsettled]
    direction = flat * bias_diff[occupied].detach().to(torch.float64)[:, None]
    estimate = flat
    block = model.block
    if hasattr(block, "bin_intervals"):
        lower, upper = block.bin_intervals()
        by_measurement = measurement_estimate(direction, block.measurement, lower[occupied], upper[occupied])
        estimate = torch.where(torch.isfinite(by_measurement), by_measurement, flat)
    snapped = snap_to_grid(direction, estimate, config.pixel_levels, low, high, config.snap_search)
    # a bin whose candidate does not snap closer keeps its bias-scaled candidate
    keep = off_grid(snapped, config.pixel_levels, low, high) >= off
    out = images.clone()
    out[occupied] = torch.where(keep[:, None], flat, snapped).to(images.dtype)
    return out


def _recover_bins(images: torch.Tensor, bias_diff: torch.Tensor, observation: Observation, model: MaliciousModel,
                  config: RecoveryConfig, started: float) -> Recovery:
    if config.snap_to_grid and config.pixel_levels is not None:
        images = _snapped(images, bias_diff, model, config, exact_bias=observation.kind == "gradient")
    status, failed = _judge(images, bias_diff, model, config)
    rows_overlap = not hasattr(model.block, "bin_intervals")
    chosen, bins = _single_inputs(images, status, rows_overlap, config.duplicate_tolerance)
    labels = None
    if config.labels is not None:
        from fastleak import labels as label_api

        labels = label_api.recover(observation, model, config.labels)
    shape = model.in_shape
    result = Recovery(images=chosen.reshape(-1, *shape), bins=bins, status=tuple(status), failed_checks=tuple(failed),
                      bin_images=images.reshape(-1, *shape), bias_diff=bias_diff, labels=labels,
                      seconds=time.perf_counter() - started)
    log.info("malicious recovery: %d bins, %d single, %d mixed, %d empty; %d inputs recovered in %.3f s",
             len(status), result.count("single"), result.count("mixed"), result.count("empty"), len(chosen),
             result.seconds)
    return result


def recover(observation: Observation, model: MaliciousModel, config: RecoveryConfig | None = None) -> Recovery:
    """The inputs the server recovers from ``observation`` of its malicious ``model`` (module docs)."""
    return recover_many([observation], model, config)[0]


def recover_many(observations: Sequence[Observation], model: MaliciousModel,
                 config: RecoveryConfig | None = None) -> list[Recovery]:
    """``recover`` for several observations of one model: their bins go through one op call."""
    config = RecoveryConfig() if config is None else config
    if not isinstance(config, RecoveryConfig):
        raise InvalidTypeError(f"config must be a RecoveryConfig, got {type(config).__name__}")
    observations = list(observations)
    if not observations:
        raise InvalidValueError("observations must hold at least one Observation")
    started = time.perf_counter()
    grads = [_bin_gradients(obs, model) for obs in observations]
    weights = torch.stack([w for w, _ in grads])
    biases = torch.stack([b for _, b in grads])
    out = imprint_recover(weights, biases, model.block.cumulative)
    return [_recover_bins(out.images[i], out.bias_diff[i], obs, model, config, started)
            for i, obs in enumerate(observations)]
