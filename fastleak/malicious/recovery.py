"""Recovery: the client's inputs from what it shared about a malicious model's bin layer.

``recover(observation, model, config)`` reads the shared tensors of the block's bin layer (a
FedSGD gradient, or a FedAvg update ``W_after - W_before``: the ratio of weight to bias
differences does not depend on the scale ``-lr``), turns them into one candidate input per bin
with ``fastleak.ops.imprint_certify``, which computes in the same pass the statistics the checks
need, and sorts the bins:

* ``empty``: ``|bias_diff| <= empty_tolerance * max |bias_diff|`` (no sample reached the bin).
  An empty bin's difference is exactly zero: its rows' sums add the same terms in the same order,
  and a sparse or trap row receives nothing. The default tolerance is therefore 0, since a lone
  sample the model already classifies confidently has a tiny but real bias difference (down to
  1e-7 of the largest at B = 256); under noise no bin is empty and the checks judge every one;
* ``mixed``: occupied, but the candidate fails one of ``config.checks`` (``fastleak.malicious.checks``):
  it cannot be one sample;
* ``single``: occupied and passes every check; its candidate is reported as a recovered input;
* ``peeled``: a mixed bin left with one sample once the samples recovered elsewhere are subtracted
  from it, which then passes every check (below).

A certified input is reported on the pixel grid (rounded to it when ``pixel_levels`` is set): the
checks ensure it lies within ``grid_tolerance`` steps of it, below half a step, so rounding gives
the sample's own values.

Peeling (``config.peel``, FedSGD gradients of blocks whose samples reach several bins: imprint
blocks with several measurements, trap rows): a sample ``x_i`` read from a bin has coefficient
``c_i`` (that bin's bias difference), the same in every row it reaches, since every row of these
blocks has the same downstream weights. The server finds those rows from ``x_i`` itself (the
block's ``members``), subtracts ``c_i x_i`` and ``c_i`` from each, and judges the bins left
anew, until no bin changes. A FedAvg update's coefficients differ from row to row (the readout
moves between local steps), so updates are not peeled.

Before the checks, an update's candidates are re-scaled onto the data's pixel grid where that
fits better (``snap_to_grid``, ``fastleak.malicious.rescale``): its bias change is rounded to a
few digits in float32, while the direction of the weight change, and so the sample, survives. A
gradient's bias difference is exact, so its candidates are taken as they are.

Only the bin layer's two shared tensors are read: their names and shapes are checked against the
model, and their finiteness where the recovery reads them (a bin whose candidate is not finite
makes the observation unusable).

With trap weights or several measurements a sample reaches several bins; a certified bin among
the ones an earlier certified sample reaches holds that sample again and is reported once.

Labels come from the existing label-count API (``fastleak.labels.recover``) on the same
observation and model; they are a multiset, not tied to the recovered inputs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation
from fastleak.malicious import checks as _checks
from fastleak.malicious.imprint import copy_of
from fastleak.malicious.model import MaliciousModel
from fastleak.malicious.rescale import ambiguous, measurement_estimate, off_grid, snap_to_grid
from fastleak.malicious.resolution import Lattice, error_bound, lattice, sparsity_floor, update_rounding
from fastleak.ops.imprint_certify import bin_stats_reference, imprint_certify

log = logging.getLogger("fastleak.malicious")

STATUSES = ("empty", "single", "mixed", "peeled")
EMPTY, SINGLE, MIXED, PEELED = range(len(STATUSES))
SETTLED_GRID_STEPS = 0.1  # float32 rounding leaves a lone sample of a FedSGD gradient within 0.06 steps


@dataclass(frozen=True)
class RecoveryConfig:
    """How bins are judged (see the module and ``fastleak.malicious.checks``).

    ``pixel_range``/``pixel_levels`` describe the client's data: values in [0, 1] on a grid of
    255 steps for the 8-bit images of ``fastleak.data``; None turns the range or grid check off.
    ``snap_to_grid`` re-scales each bin's input of an update onto that grid first, trying grid
    levels within ``snap_search`` steps (``fastleak.malicious.rescale``; needs ``pixel_levels``).
    ``peel`` subtracts recovered samples from the other bins they reach (module docs).
    ``labels`` is a ``fastleak.labels`` method name, or None to skip label recovery.
    """

    checks: tuple[str, ...] = ("interval", "activation", "range", "grid", "resolution")
    empty_tolerance: float = 0.0
    interval_tolerance: float = 0.05
    pixel_range: tuple[float, float] | None = (0.0, 1.0)
    range_tolerance: float = 0.01
    pixel_levels: int | None = 255
    grid_tolerance: float = 0.25
    snap_to_grid: bool = True
    snap_search: int = 8
    peel: bool = True
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

    @property
    def grid(self) -> tuple[float, float, int]:
        """(low, high, levels) of the pixel grid; levels 0 without one."""
        low, high = self.pixel_range if self.pixel_range is not None else (0.0, 1.0)
        return float(low), float(high), self.pixel_levels or 0


@dataclass(frozen=True)
class Recovery:
    """What the server recovered from one observation.

    ``images`` [M, *in_shape] are the inputs of the bins judged ``single`` or ``peeled`` (a sample
    reaching several bins once), on the pixel grid, ``bins`` [M] their bin indices. Per bin:
    ``status`` (one of ``STATUSES``), ``failed_checks`` (names of the checks its candidate failed
    before any peeling), ``bin_images`` [K, *in_shape] (every bin's last candidate: after
    re-scaling onto the grid, and after subtracting the samples peeled from it; zeros for a bin
    with zero bias difference) and ``bias_diff`` [K].
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


def _bin_tensors(observation: Observation, model: MaliciousModel) -> tuple[torch.Tensor, torch.Tensor, tuple[str, str]]:
    if not isinstance(observation, Observation):
        raise InvalidTypeError(f"observation must be an Observation, got {type(observation).__name__}")
    names = bin_parameter_names(model)
    layer = model.block.bins
    shared = []
    for name, param in zip(names, (layer.weight, layer.bias)):
        if name not in observation.param_names:
            raise InvalidValueError(f"observation does not share {name!r}, the malicious block's bin layer; "
                                    "was it computed on this model?")
        t = observation.pairs[0].shared[observation.param_names.index(name)]
        where = f"observation.pairs[0].shared[{name!r}]"
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise InvalidValueError(f"{where} must be a floating-point tensor, got "
                                    + (str(t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__))
        if tuple(t.shape) != tuple(param.shape):
            raise InvalidValueError(f"{where} has shape {tuple(t.shape)}, expected {tuple(param.shape)} (the model's "
                                    "parameter); was it computed on this model?")
        shared.append(t)
    return shared[0], shared[1], names


@lru_cache(maxsize=None)
def _failed_names(mask: int, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for i, n in enumerate(names) if mask >> i & 1)


def _measurement_rows(block, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
    if not hasattr(block, "bin_intervals"):
        return None
    directions = block.directions
    per_group = block.bins.out_features // len(directions)
    return directions.to(like)[(rows // per_group).to(directions.device)]


def _certify(rows_w: torch.Tensor, rows_b: torch.Tensor, rows: torch.Tensor, block,
             config: RecoveryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates [T, D] and float64 statistics [T, 5] of some bins given their weight rows [T, D] and
    bias differences [T] (re-scaled or peeled bins): ``imprint_certify`` with each bin's own
    measurement."""
    low, high, levels = config.grid
    measurement = _measurement_rows(block, rows, rows_w)
    images, _, stats = imprint_certify(rows_w, rows_b.to(rows_w.dtype), False, measurement, low, high, levels)
    return images, stats.to(torch.float64)


def _judge(candidates: _checks.Candidates, model: MaliciousModel, config: RecoveryConfig) -> torch.Tensor:
    """A bitmask [M] per candidate of the checks (in ``config.checks`` order) it fails; the checks in
    ``checks.LAST`` run only on candidates that passed every other."""
    failed = torch.zeros(len(candidates.rows), dtype=torch.int64)
    late = [(i, n) for i, n in enumerate(config.checks) if n in _checks.LAST]
    for i, name in enumerate(config.checks):
        if name not in _checks.LAST:
            ok = _checks.CHECKS.get(name)(candidates, model.block, config).cpu()
            failed |= (~ok).to(torch.int64) << i
    for i, name in late:
        passing = torch.nonzero(failed == 0).flatten()
        if len(passing):
            subset = _checks.Candidates(candidates.rows[passing], candidates.images[passing],
                                        candidates.stats[passing], candidates.error_bound[passing],
                                        candidates.bias_diff)
            ok = _checks.CHECKS.get(name)(subset, model.block, config).cpu()
            failed[passing] |= (~ok).to(torch.int64) << i
    return failed


def _on_grid(images: torch.Tensor, config: RecoveryConfig) -> torch.Tensor:
    """``images`` rounded to the pixel grid, in their dtype (the grid's values ``low + i / scale``
    computed as the data's own are: one rounded division)."""
    low, high, levels = config.grid
    if not levels:
        return images
    scale = levels / (high - low)
    return ((images - low) * scale).round() / scale + low


def _snapped(images: torch.Tensor, bias_diff: torch.Tensor, rows: torch.Tensor, model: MaliciousModel,
             config: RecoveryConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of ``rows`` whose candidate a re-scaling puts closer to the grid, their new candidates,
    and whether another scale tried fits the grid about as well (``rescale.ambiguous``)."""
    low, high, levels = config.grid
    flat = images[rows].to(torch.float64)
    off = off_grid(flat, levels, low, high)
    direction = flat * bias_diff[rows].to(torch.float64)[:, None]
    estimate = flat
    block = model.block
    if hasattr(block, "bin_intervals"):
        lower, upper = block.bin_intervals()
        by_measurement = measurement_estimate(direction, _measurement_rows(block, rows, direction),
                                              lower[rows.to(lower.device)].to(direction.device),
                                              upper[rows.to(upper.device)].to(direction.device))
        estimate = torch.where(torch.isfinite(by_measurement), by_measurement, flat)
    snapped, other = snap_to_grid(direction, estimate, levels, low, high, config.snap_search)
    now = off_grid(snapped, levels, low, high)
    better = now < off
    return rows[better], snapped[better], ambiguous(now[better], other[better], config.grid_tolerance)


@dataclass(frozen=True)
class _Resolution:
    """What bounds the error of the bins' inputs: the lattices of the shared weight and bias tensors,
    and for an update, each bin row's float rounding of its weight and bias change ([K] each)."""

    weights: Lattice | None = None
    bias: Lattice | None = None
    weight_rounding: torch.Tensor | None = None
    bias_rounding: torch.Tensor | None = None
    floor: float | None = None   # a sparsifying defense's magnitude floor on the bins' weight changes
    unbounded: bool = False      # nothing bounds the error: no candidate's values are known


def _resolution(weight: torch.Tensor, bias: torch.Tensor, observation: Observation, model: MaliciousModel,
                config: RecoveryConfig) -> _Resolution:
    if model.block.cumulative and observation.kind == "update":
        # after the first local step the readout's columns differ, so neighbouring rows no longer cancel:
        # a cumulative bin of an update mixes its samples with those above it, whatever its values
        return _Resolution(unbounded=True)
    if "resolution" not in config.checks or not config.pixel_levels:
        return _Resolution()
    # cumulative rows are sums over the bins above and share their samples' faintest pixels, so equal
    # smallest magnitudes across them are no sign of a floor
    groups = len(model.block.directions) if hasattr(model.block, "directions") else 1
    floor = None if model.block.cumulative else sparsity_floor(weight, bias.reshape(-1) != 0, groups)
    if observation.kind != "update":
        return _Resolution(lattice(weight), lattice(bias), floor=floor)
    names = bin_parameter_names(model)
    state = observation.pairs[0].state
    before = [state[n] if n in state else p.detach() for n, p in zip(names, (model.block.bins.weight,
                                                                           model.block.bins.bias))]
    steps = observation.local_steps * observation.local_epochs
    rounding_w, rounding_b = update_rounding(before[0], steps), update_rounding(before[1], steps)
    # the update's own float lattice is already in the rounding; a coarser one is a quantiser's
    weights, bias = lattice(weight), lattice(bias)
    weights = weights if weights is not None and weights.step > 2 * float(rounding_w.max()) / steps else None
    bias = bias if bias is not None and bias.step > 2 * float(rounding_b.max()) / steps else None
    return _Resolution(weights, bias, rounding_w, rounding_b, floor)


def _error_bound(resolution: _Resolution, rows: torch.Tensor, bias_diff: torch.Tensor, stats: torch.Tensor,
                 config: RecoveryConfig, scaled_by_grid: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """The largest error, in grid steps, of the candidates of bins ``rows`` (``resolution.error_bound``,
    plus an update's rounding). The candidates ``scaled_by_grid`` (re-scaled onto the grid, their
    weight change divided by ``scale`` [M] instead of the bias difference) take their scale from their
    brightest weight entry, so the weights' error counts twice (each value's own, and the scale's)
    and the bias's not at all."""
    if resolution.unbounded:
        return torch.full_like(bias_diff, torch.inf, dtype=torch.float64)
    low, high, levels = config.grid
    largest = torch.maximum(stats[:, _checks.LOW].abs(), stats[:, _checks.HIGH].abs())
    steps = levels / (high - low) if levels else 1.0
    bound = error_bound(resolution.weights, resolution.bias, bias_diff, largest, steps)
    divisor = bias_diff.to(torch.float64).abs()
    if resolution.weight_rounding is not None:
        weights = resolution.weight_rounding[rows] * steps
        bound = bound + weights / divisor + largest * resolution.bias_rounding[rows] * steps / divisor
    if scaled_by_grid is not None and bool(scaled_by_grid.any()):
        by_grid = 2 * error_bound(resolution.weights, None, bias_diff, largest, steps)
        if resolution.weight_rounding is not None:
            by_grid = by_grid + 2 * resolution.weight_rounding[rows] * steps / scale.abs()
        bound = torch.where(scaled_by_grid, by_grid, bound)
        divisor = torch.where(scaled_by_grid, scale.abs(), divisor)
    if resolution.floor is not None:   # zero pixels may be values up to the floor, blacked out
        dark = stats[:, _checks.LOW].to(torch.float64) <= low
        bound = torch.where(dark, torch.maximum(bound, resolution.floor * steps / divisor), bound)
    return bound


@dataclass
class _Accepted:
    """The samples accepted so far: their inputs (``keys``: bytes of inputs on the grid, ``near``: inputs
    without a grid) and the bins they were read from (``claimed``)."""

    keys: set
    near: list
    claimed: torch.Tensor


def _reach(model: MaliciousModel, images: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """The bins [n, K] the samples ``images`` [n, D] reach, read from ``bins`` [n]: the block's
    ``members``, within the copy of their own bin for a block separated per client."""
    block = model.block
    members = block.members(images.reshape(-1, *model.in_shape).to(block.bins.weight.device)).cpu()
    if getattr(block, "copies", 1) > 1:
        every = torch.arange(members.shape[1])
        members &= copy_of(block, every)[None, :] == copy_of(block, bins)[:, None]
    return members


def _distinct(bins: list[int], images: torch.Tensor, accepted: _Accepted, model: MaliciousModel,
              config: RecoveryConfig) -> list[int]:
    """The bins of ``bins`` whose input is a sample not read yet, in order; updates ``accepted``.

    Trap rows and the bins of several measurements share samples, so one sample can be certified in
    several bins; and a bin certified single may hold samples of negligible coefficient besides it,
    which later peeling can leave as a near copy. A certified input must therefore reach its own bin
    and no bin an accepted sample was read from (that bin would hold both), and differ from every accepted
    input (certified inputs lie on the grid, so the same sample gives the same values; without a grid,
    inputs within ``duplicate_tolerance`` RMS are the same). Without checks (every occupied bin taken
    as it is) only the last rule applies."""
    if not bins:
        return []
    index = torch.tensor(bins)
    judged = bool(config.checks)
    members = _reach(model, images[index], index) if judged else None
    consistent = (members[torch.arange(len(bins)), index] & ~(members & accepted.claimed).any(1)).tolist() \
        if judged else [True] * len(bins)
    on_grid = images[index].detach().cpu().numpy() if config.pixel_levels is not None else None
    kept = []
    for i, k in enumerate(bins):
        if not consistent[i]:
            continue
        if on_grid is not None:
            key = on_grid[i].tobytes()
            if key in accepted.keys:
                continue
            accepted.keys.add(key)
        else:
            image = images[k].detach().to(torch.float64)
            if accepted.near and bool(((torch.stack(accepted.near) - image).pow(2).mean(1).sqrt()
                                       <= config.duplicate_tolerance).any()):
                continue
            accepted.near.append(image)
        accepted.claimed[k] = True
        kept.append(k)
    return kept


def _peel(weight: torch.Tensor, bias_diff: torch.Tensor, status: torch.Tensor, images: torch.Tensor,
          accepted: list[int], seen: _Accepted, model: MaliciousModel, config: RecoveryConfig, resolution) -> None:
    """Subtract the samples of the ``accepted`` bins from the mixed bins they reach and certify what is
    left, round after round (module docs); updates ``status``, ``images`` and ``accepted`` in place."""
    block = model.block
    mixed = torch.nonzero(status == MIXED).flatten()
    position = torch.full((len(status),), -1, dtype=torch.long)
    position[mixed] = torch.arange(len(mixed))
    residual_w = weight[mixed.to(weight.device)].to("cpu", torch.float64)    # the mixed bins' rows
    residual_b = bias_diff.to("cpu", torch.float64).clone()
    fresh = list(accepted)
    while fresh:
        index = torch.tensor(fresh)
        samples = images[index].to(torch.float64)
        reach = _reach(model, samples, index) & (status == MIXED)[None, :]      # [fresh, K]
        sample, row = torch.nonzero(reach, as_tuple=True)                       # each (sample, mixed bin it reaches)
        if not len(row):
            break
        coef = residual_b[index][sample]
        residual_w.index_add_(0, position[row], samples[sample] * coef[:, None], alpha=-1)
        residual_b.index_add_(0, row, coef, alpha=-1)
        rows = row.unique()
        rows = rows[residual_b[rows] != 0]
        b = residual_b[rows]
        candidate, stats = _certify(residual_w[position[rows]], b, rows, block, config)
        cands = _checks.Candidates(rows, candidate, stats, _error_bound(resolution, rows, b, stats, config), residual_b)
        new = rows[_judge(cands, model, config) == 0]
        images[rows] = candidate.to(images.dtype)
        images[new] = _on_grid(images[new], config)
        fresh = _distinct(new.tolist(), images, seen, model, config)
        status[torch.tensor(fresh, dtype=torch.long)] = PEELED
        accepted.extend(fresh)


def _recover_bins(weight: torch.Tensor, images: torch.Tensor, bias_diff: torch.Tensor, stats: torch.Tensor,
                  observation: Observation, model: MaliciousModel, config: RecoveryConfig, resolution,
                  started: float) -> Recovery:
    block = model.block
    diff = bias_diff.detach()
    empty = diff.abs() <= config.empty_tolerance * diff.abs().max().clamp_min(1e-300)
    rows = torch.nonzero(~empty).flatten()
    stats = stats.detach()[rows].to(torch.float64)
    images = images.detach()
    scaled_by_grid = torch.zeros(len(rows), dtype=torch.bool)
    uncertain = torch.zeros(len(rows), dtype=torch.bool)
    scale = diff[rows].to(torch.float64).clone()
    if config.snap_to_grid and config.pixel_levels is not None and observation.kind == "update" and len(rows):
        unsettled = rows[stats[:, _checks.OFF_GRID] > 0]
        moved, snapped, ambiguous = _snapped(images, diff, unsettled, model, config)
        if len(moved):
            candidate, stats_moved = _certify(snapped, torch.ones(len(moved), dtype=snapped.dtype), moved, block, config)
            position = torch.searchsorted(rows, moved)
            # the weight change over the new input: the scale the re-scaling chose
            scale[position] *= (images[moved].to(torch.float64).abs().amax(1)
                                / candidate.to(torch.float64).abs().amax(1).clamp_min(1e-300))
            images = images.clone()
            images[moved] = candidate.to(images.dtype)
            stats[position] = stats_moved
            scaled_by_grid[position] = True
            uncertain[position] = ambiguous
    bound = _error_bound(resolution, rows, diff[rows], stats, config, scaled_by_grid, scale)
    bound = torch.where(uncertain, torch.inf, bound)   # two scales put it on the grid: its values are not known
    candidates = _checks.Candidates(rows, images[rows], stats, bound, diff)
    failed_mask = _judge(candidates, model, config)
    status = torch.full((len(diff),), EMPTY, dtype=torch.int64)
    status[rows] = torch.where(failed_mask == 0, SINGLE, MIXED)
    failed = torch.zeros(len(diff), dtype=torch.int64)
    failed[rows] = failed_mask
    single = rows[failed_mask == 0]
    accepted = single.tolist()
    if not hasattr(block, "bin_intervals") or len(block.directions) > 1:   # a sample reaches several bins (copies)
        images = images.clone()
        images[single] = _on_grid(images[single], config)
        seen = _Accepted(set(), [], torch.zeros(len(diff), dtype=torch.bool))
        accepted = _distinct(accepted, images, seen, model, config)
        if config.peel and observation.kind == "gradient" and bool((status == MIXED).any()):
            _peel(weight, diff, status, images, accepted, seen, model, config, resolution)
        chosen_images = images[torch.tensor(accepted, dtype=torch.long).to(images.device)]
    else:
        # one bin per sample, but a sample within float rounding of an edge can pass both neighbours' gates
        chosen_images = _on_grid(images[single], config)
        keys = chosen_images.detach().cpu().numpy()
        first = {}
        for i in range(len(keys)):
            first.setdefault(keys[i].tobytes(), i)
        if len(first) < len(keys):
            kept = torch.tensor(sorted(first.values()), dtype=torch.long)
            chosen_images, accepted = chosen_images[kept.to(chosen_images.device)], [accepted[i] for i in kept.tolist()]
    chosen = torch.tensor(accepted, dtype=torch.long)
    labels = None
    if config.labels is not None:
        from fastleak import labels as label_api

        labels = label_api.recover(observation, model, config.labels)
    shape = model.in_shape
    status_names = tuple(STATUSES[s] for s in status.tolist())
    result = Recovery(images=chosen_images.reshape(-1, *shape), bins=chosen,
                      status=status_names,
                      failed_checks=tuple(_failed_names(m, config.checks) for m in failed.tolist()),
                      bin_images=images.reshape(-1, *shape), bias_diff=bias_diff, labels=labels,
                      seconds=time.perf_counter() - started)
    log.info("malicious recovery: %d bins, %d single, %d peeled, %d mixed, %d empty; %d inputs recovered in %.3f s",
             len(status_names), result.count("single"), result.count("peeled"), result.count("mixed"),
             result.count("empty"), len(chosen), result.seconds)
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
    shared = [_bin_tensors(obs, model) for obs in observations]
    if len(shared) == 1:
        weights, biases = shared[0][0][None], shared[0][1].to(shared[0][0].dtype)[None]
    else:
        weights = torch.stack([w for w, _, _ in shared])
        biases = torch.stack([b.to(w.dtype) for w, b, _ in shared])
    block = model.block
    measurement = block.directions.to(weights) if hasattr(block, "bin_intervals") else None
    low, high, levels = config.grid
    images, bias_diff, stats = imprint_certify(weights, biases, block.cumulative, measurement, low, high, levels)
    out = []
    for i, obs in enumerate(observations):
        names = shared[i][2]
        if not all_finite(bias_diff[i]):
            raise InvalidValueError(f"observation.pairs[0].shared[{names[1]!r}] contains NaN or inf")
        occupied = bias_diff[i] != 0
        if not bool((stats[i, :, _checks.FINITE][occupied] > 0).all()):
            raise InvalidValueError(f"observation.pairs[0].shared[{names[0]!r}] contains NaN or inf")
        resolution = _resolution(weights[i], biases[i], obs, model, config)
        out.append(_recover_bins(weights[i], images[i], bias_diff[i], stats[i], obs, model, config, resolution, started))
    return out
