"""``inspect(model, x=None)``: is the model a client received built to leak its batch, and why.

Every ``nn.Linear`` of the model is examined (``fastleak.inspection.layers``) by the registered
signals (``@signal("name")``), each returning ``Evidence`` or None:

* ``parallel_rows`` (any layer of at least ``LADDER_FEATURES`` inputs): at least ``LADDER_ROWS`` rows
  share one direction and hold as many distinct thresholds: the bins of an imprint layer
  (``structure.direction_groups``);
* ``trap_rows`` (layers that read the input, at least ``TRAP_ROWS`` rows): the rows lean negative
  together as trap weights do, mean over spread of their response to a constant input below
  ``-TRAP_LEAN`` at a spread under ``TRAP_SPREAD``, or their positive entries are shrunk with their
  signs kept, a shrink below ``-TRAP_SHRINK`` at a balance within ``TRAP_BALANCE``
  (``structure.lean``);
* ``readable_rows`` (layers that read the input; needs the client's data ``x``): the share of a
  batch of ``batch_size`` that a server reads off the layer in closed form, alone in a row or bin
  or after peeling (``fastleak.inspection.exposure``); alarming from ``READABLE_ALARM`` when the
  layer's live rows reach no more than ``SPARSE_RATE`` of a batch (median): rows built to fire
  rarely.

The verdict is malicious when any evidence is alarming. ``recoverable_fraction`` is the share of
a batch read off any layer (None without ``x``). Honest fully connected layers that read the
input leak too: a rarely active unit isolates the sample that activates it (an MLP on MNIST gives
away a quarter of a batch of 32 and nearly all of a batch of 8 this way, at initialisation and
trained), but their live rows reach a fifth to a half of a batch (median), which is why the data
signal alarms only for sparse rows (measured in ``benchmarks/RESULTS.md``, "Inspecting a received
model").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fastleak._checks import all_finite, positive_int
from fastleak._registry import Registry
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.inspection import structure
from fastleak.inspection.exposure import Exposure, exposures
from fastleak.inspection.layers import LinearLayer, linear_layers

log = logging.getLogger("fastleak.inspection")

LADDER_ROWS = 2
LADDER_FEATURES = 8
TRAP_ROWS = 8
TRAP_LEAN = 2.5
TRAP_SPREAD = 1.25
TRAP_SHRINK = 8.0
TRAP_BALANCE = 4.0
READABLE_ALARM = 0.2
SPARSE_RATE = 0.1
KINDS = ("imprint", "trap", "sparse rows")


@dataclass(frozen=True)
class Evidence:
    """What one signal found in one layer: ``alarming`` (enough alone for a malicious verdict),
    the ``kind`` of structure it points to (one of ``KINDS``, or None), a ``score`` (the signal's
    own statistic) and a one-line ``summary``."""

    signal: str
    layer: str
    alarming: bool
    kind: str | None
    score: float
    summary: str


@dataclass(frozen=True)
class Verdict:
    """``malicious``, its ``kind`` (the alarming evidence's, imprint first; None when honest), every
    piece of ``evidence``, ``recoverable_fraction`` (share of a batch of ``batch_size`` a server reads
    in closed form off the layers that read the input; None without the client's data) and the
    fully connected ``layers`` examined."""

    malicious: bool
    kind: str | None
    evidence: tuple[Evidence, ...]
    recoverable_fraction: float | None
    batch_size: int
    layers: tuple[str, ...]

    def summary(self) -> str:
        """One line: the verdict and its main reason."""
        share = ("" if self.recoverable_fraction is None else
                 f"; about {self.recoverable_fraction:.0%} of a batch of {self.batch_size} readable in closed form")
        if self.malicious:
            first = next(e for e in self.evidence if e.alarming)
            return f"MALICIOUS ({self.kind}): {first.layer}: {first.summary}" + \
                ("" if first.signal == "readable_rows" else share)
        what = f"{len(self.layers)} fully connected layer(s) examined" if self.layers else \
            "no fully connected layer to examine"
        return f"honest: no imprint, trap-weight or sparse-row structure found ({what}){share}"


@dataclass(frozen=True)
class Context:
    """What a signal sees besides its layer: ``exposure`` of each layer that reads the input (None
    without data) and the ``batch_size`` it was measured for."""

    exposure: dict[str, Exposure] | None
    batch_size: int


SignalFn = Callable[[LinearLayer, Context], "Evidence | None"]
SIGNALS: Registry[SignalFn] = Registry("inspection signal")


def signal(name: str) -> Callable[[SignalFn], SignalFn]:
    """Register ``fn(layer, context) -> Evidence | None`` under ``name``."""
    return SIGNALS.register(name)


@signal("parallel_rows")
def _parallel_rows(layer: LinearLayer, context: Context) -> Evidence | None:
    if layer.module.in_features < LADDER_FEATURES:
        return None
    groups = [g for g in structure.direction_groups(layer.module.weight, layer.module.bias, LADDER_ROWS)
              if g.thresholds >= LADDER_ROWS]
    if not groups:
        return None
    rows = sum(len(g.rows) for g in groups)
    text = (f"{rows} of {layer.module.out_features} rows measure {len(groups)} direction(s) of "
            f"{'the input' if layer.reads_input else 'their input'} against "
            f"{sum(g.thresholds for g in groups)} distinct thresholds (imprint bins)")
    return Evidence("parallel_rows", layer.name, True, "imprint", float(rows), text)


@signal("trap_rows")
def _trap_rows(layer: LinearLayer, context: Context) -> Evidence | None:
    if not layer.reads_input or layer.module.out_features < TRAP_ROWS:
        return None
    lean = structure.lean(layer.module.weight)
    if lean.rows < TRAP_ROWS:
        return None
    if lean.ratio < -TRAP_LEAN and lean.spread < TRAP_SPREAD:
        return Evidence("trap_rows", layer.name, True, "trap", lean.ratio,
                        f"its {lean.rows} rows lean negative together (mean response to a constant input "
                        f"{lean.mean:.1f} row norms, spread {lean.spread:.2f}: trap weights that fire rarely on "
                        "pixels)")
    if lean.shrink < -TRAP_SHRINK and abs(lean.balance) < TRAP_BALANCE:
        return Evidence("trap_rows", layer.name, True, "trap", lean.shrink,
                        f"its {lean.rows} rows hold smaller positive than negative entries with their signs "
                        f"balanced (shrink t = {lean.shrink:.1f}, balance z = {lean.balance:.1f}: trap weights, "
                        "positive entries scaled down so that rows fire rarely on pixels)")
    return None


@signal("readable_rows")
def _readable_rows(layer: LinearLayer, context: Context) -> Evidence | None:
    if context.exposure is None or layer.name not in context.exposure:
        return None
    e = context.exposure[layer.name]
    alarming = e.readable >= READABLE_ALARM and e.median_rate <= SPARSE_RATE
    text = (f"reads your input: {e.readable:.0%} of a batch of {context.batch_size} readable in closed form "
            f"({e.alone:.0%} alone in a row or bin); a live row reaches {e.median_rate:.1%} of a batch (median of "
            f"{e.live_rows})")
    return Evidence("readable_rows", layer.name, alarming, "sparse rows" if alarming else None, e.readable, text)


def _in_shape(model: nn.Module, x: torch.Tensor | None, in_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    from fastleak.models import spec_of

    if x is not None:
        return tuple(x.shape[1:])
    if in_shape is not None:
        return tuple(in_shape)
    if isinstance(getattr(model, "in_shape", None), tuple):
        return model.in_shape
    spec = spec_of(model)
    if spec is not None and spec.in_shape is not None:
        return tuple(spec.in_shape)
    raise InvalidValueError("in_shape is needed for a model not built by fastleak.models.build when no data is "
                            "given, e.g. in_shape=(3, 32, 32)")


def inspect(model: nn.Module, x: torch.Tensor | None = None, *, batch_size: int = 64,
            in_shape: tuple[int, ...] | None = None, draws: int = 8, seed: int = 0) -> Verdict:
    """Whether ``model`` carries an imprint, trap-weight or similar structure (module docs).

    ``x`` [n, *in_shape] is the client's own data (optional): with it, the share of a batch of
    ``batch_size`` a server could read is estimated over ``draws`` batches drawn from ``x`` (one
    batch of all of ``x`` when it holds no more). The model is left as it was (its training mode
    included).
    """
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if x is not None and (not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or not len(x)):
        raise InvalidValueError("x must be a floating-point tensor [n, *in_shape] of the client's data with n >= 1, "
                                "got " + (f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor)
                                          else type(x).__name__))
    if x is not None and not all_finite(x):
        raise InvalidValueError("x contains NaN or inf")
    batch_size = positive_int(batch_size, "batch_size")
    draws = positive_int(draws, "draws")
    shape = _in_shape(model, x, in_shape)
    layers = linear_layers(model, shape)
    exposure, readable = None, None
    reading = [layer for layer in layers if layer.reads_input]
    if x is not None:
        param = next(model.parameters(), None)
        data = x.detach().to(param.device if param is not None else x.device)
        exposure, readable = exposures(model, reading, data, batch_size, draws, seed) if reading else ({}, 0.0)
    context = Context(exposure, min(batch_size, len(x)) if x is not None else batch_size)
    evidence = [e for layer in layers for name in SIGNALS.names()
                if (e := SIGNALS.get(name)(layer, context)) is not None]
    evidence.sort(key=lambda e: (not e.alarming, KINDS.index(e.kind) if e.kind in KINDS else len(KINDS)))
    alarming = {e.kind for e in evidence if e.alarming}
    kind = next((k for k in KINDS if k in alarming), None)
    verdict = Verdict(malicious=bool(alarming), kind=kind, evidence=tuple(evidence), recoverable_fraction=readable,
                      batch_size=context.batch_size, layers=tuple(layer.name for layer in layers))
    log.info("inspect: %s", verdict.summary())
    return verdict
