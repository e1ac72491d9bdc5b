"""The defense registry: every defense, the stage of a round at which it acts, the protocols it applies to.

A defense acts at one of three stages of a federated round:

* ``Transform`` (``@register``): maps the tensors one client shares to new ones, independently per
  pair (``state`` is untouched): noise, clipping, sparsification, quantisation. ``apply(obs, name,
  **params)`` returns a new frozen ``Observation`` and appends ``{"name": ..., **params}`` to
  ``obs.meta["defenses"]`` (a tuple, in the order applied). Stochastic transforms take ``seed``
  (default 0): one CPU ``torch.Generator`` seeded with it draws the noise for pair 0, 1, ... and
  their tensors in order, so results are identical on any device.
* ``ClientStep`` (``@register_client``): a client-side computation that replaces the client's own
  step, e.g. DP-SGD's per-example clipping, which needs the model and the private batch.
* ``Aggregation`` (``@register_aggregation``): combines the observations of K clients into the one
  the server sees (secure aggregation).

Every entry declares the FL protocols it applies to (``PROTOCOLS``) and, when that is not all of
them, why; ``check_protocol`` is where callers ask. ``protect`` runs one round under a list of
defenses, each at its stage.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from fastleak._checks import integer
from fastleak._registry import Registry
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation, Pair

Tensors = tuple[torch.Tensor, ...]
ClientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Observation]  # (model, x, y) -> what a client shares
# The FL protocols (ExperimentSpec.mode) and the kind of observation each produces.
PROTOCOLS: dict[str, str] = {"fedsgd": "gradient", "fedavg": "update", "multi-pair": "gradient"}
STAGES = ("client", "shared", "aggregate")  # in the order a round meets them


@dataclass(frozen=True)
class Defense:
    """A registered defense: ``fn``, the ``protocols`` it applies to, and ``why`` it applies only to
    those (empty when it applies to all). ``use`` names the public function that runs it."""

    name: str
    fn: Callable[..., Any]
    protocols: tuple[str, ...] = tuple(PROTOCOLS)
    why: str = ""
    use: str = ""

    stage: ClassVar[str]
    acts: ClassVar[str]  # what it acts on, for error messages
    leading: ClassVar[tuple[str, ...]]  # the arguments of ``fn`` that the round supplies, before its parameters

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise InvalidValueError(f"defense {self.name!r}: protocols must be some of {', '.join(PROTOCOLS)}, got "
                                    f"{self.protocols!r}")

    def applies_to(self, protocol: str) -> bool:
        return protocol in self.protocols

    def check_protocol(self, protocol: str) -> None:
        """Raise InvalidValueError unless the defense applies to ``protocol`` (a key of ``PROTOCOLS``)."""
        if protocol not in PROTOCOLS:
            raise InvalidValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if not self.applies_to(protocol):
            raise InvalidValueError(f"defense {self.name!r} applies to {' and '.join(self.protocols)} only"
                                    f"{f' (it {self.why})' if self.why else ''}, not to mode {protocol!r}")

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters a user gives (the arguments of ``fn`` after ``leading``)."""
        return tuple(inspect.signature(self.fn).parameters)[len(self.leading):]

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise InvalidTypeError for a parameter ``fn`` does not take, or a required one missing."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise InvalidTypeError(f"defense {self.name!r} does not accept {', '.join(unknown)}; accepted: "
                                   f"{', '.join(self.parameters)}")
        try:
            inspect.signature(self.fn).bind(*self.leading, **params)
        except TypeError as exc:
            raise InvalidTypeError(f"defense {self.name!r}: {exc}") from None

    def apply(self, obs: Observation, params: Mapping[str, Any]) -> Observation:
        raise InvalidValueError(f"defense {self.name!r} {self.acts}, not on an observation; use {self.use}")

    def client(self, step: ClientFn, params: Mapping[str, Any]) -> ClientFn:
        """The client's step under this defense (unchanged by default)."""
        return step

    def aggregate(self, observations: list[Observation], params: Mapping[str, Any]) -> list[Observation]:
        """What the server receives from the clients' ``observations`` (each on its own by default)."""
        return observations


@dataclass(frozen=True)
class Transform(Defense):
    """``fn(tensors, **params)``, or ``fn(tensors, generator, **params)`` when ``stochastic``."""

    stochastic: bool = False

    stage = "shared"
    acts = "transforms what one client shares"

    @property
    def leading(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("tensors", "generator") if self.stochastic else ("tensors",)

    @property
    def parameters(self) -> tuple[str, ...]:
        return super().parameters + (("seed",) if self.stochastic else ())

    def check_params(self, params: Mapping[str, Any]) -> None:
        params = dict(params)
        if self.stochastic:
            integer(params.pop("seed", 0), "seed")
        super().check_params(params)

    def apply(self, obs: Observation, params: Mapping[str, Any]) -> Observation:
        if not isinstance(obs, Observation):
            raise InvalidTypeError(f"obs must be an Observation, got {type(obs).__name__}")
        kinds = {PROTOCOLS[p] for p in self.protocols}
        if obs.kind not in kinds:
            raise InvalidValueError(f"defense {self.name!r} applies to {' and '.join(sorted(kinds))} observations "
                                    f"only{f' (it {self.why})' if self.why else ''}, got kind {obs.kind!r}")
        self.check_params(params)
        params = dict(params)
        seed = params.pop("seed", 0) if self.stochastic else None
        if self.stochastic:
            generator = torch.Generator().manual_seed(seed)
            pairs = tuple(Pair(p.state, self.fn(p.shared, generator, **params)) for p in obs.pairs)
            record = {"name": self.name, **params, "seed": seed}
        else:
            pairs = tuple(Pair(p.state, self.fn(p.shared, **params)) for p in obs.pairs)
            record = {"name": self.name, **params}
        return dataclasses.replace(obs, pairs=pairs, meta=defense_meta(obs.meta, record))

    def client(self, step: ClientFn, params: Mapping[str, Any]) -> ClientFn:
        return lambda model, x, y: self.apply(step(model, x, y), params)


@dataclass(frozen=True)
class ClientStep(Defense):
    """``fn(model, x, y, **params) -> Observation``, run by the client instead of its own step."""

    stage = "client"
    acts = "replaces the client's own computation on its private batch"
    leading = ("model", "x", "y")

    def client(self, step: ClientFn, params: Mapping[str, Any]) -> ClientFn:
        return lambda model, x, y: self.fn(model, x, y, **params)


@dataclass(frozen=True)
class Aggregation(Defense):
    """``fn(observations, **params) -> Observation``: what the server sees of K clients."""

    stage = "aggregate"
    acts = "combines the observations of several clients"
    leading = ("observations",)

    def aggregate(self, observations: list[Observation], params: Mapping[str, Any]) -> list[Observation]:
        return [self.fn(observations, **params)]


DEFENSES: Registry[Defense] = Registry("defense")


def _registrar(kind: type[Defense], name: str, **fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        DEFENSES.register(name)(kind(name, fn, **fields))
        return fn

    return decorator


def register(name: str, *, stochastic: bool = False, protocols: Sequence[str] = tuple(PROTOCOLS), why: str = ""):
    """Register a ``Transform`` of the shared tensors: ``fn(tensors, [generator,] **params) -> tensors``."""
    return _registrar(Transform, name, stochastic=stochastic, protocols=tuple(protocols), why=why,
                      use=f"fastleak.defenses.apply(obs, {name!r}, ...)")


def register_client(name: str, *, use: str, protocols: Sequence[str] = tuple(PROTOCOLS), why: str = ""):
    """Register a ``ClientStep``: ``fn(model, x, y, **params) -> Observation``; ``use`` names its public call."""
    return _registrar(ClientStep, name, protocols=tuple(protocols), why=why, use=use)


def register_aggregation(name: str, *, use: str, protocols: Sequence[str] = tuple(PROTOCOLS), why: str = ""):
    """Register an ``Aggregation``: ``fn(observations, **params) -> Observation``; ``use`` names its public call."""
    return _registrar(Aggregation, name, protocols=tuple(protocols), why=why, use=use)


def names(*stages: str) -> tuple[str, ...]:
    """The registered names, sorted; with ``stages``, only those acting at one of them (``STAGES``)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise InvalidValueError(f"stages must be some of {', '.join(STAGES)}, got {unknown}")
    return tuple(n for n in DEFENSES.names() if not stages or DEFENSES.get(n).stage in stages)


def get(name: str) -> Defense:
    return DEFENSES.get(name)


def defense_meta(obs_meta: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``obs_meta`` with ``record`` appended to its "defenses" tuple."""
    meta = dict(obs_meta)
    meta["defenses"] = tuple(meta.get("defenses", ())) + (record,)
    return meta


def apply(obs: Observation, name: str, **params: Any) -> Observation:
    """Apply the registered transform ``name`` with ``params`` to every pair of ``obs`` (module docs);
    a client-side or aggregation defense raises an error naming the function that runs it."""
    return DEFENSES.get(name).apply(obs, params)


def check(protocol: str, defenses: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[Defense, dict[str, Any]]]:
    """The entries of ``defenses`` ((name, params) pairs) in the order a round meets them (``STAGES``;
    transforms in the order given), after checking that each applies to ``protocol``, takes its
    params, and that at most one replaces the client's step."""
    chosen = sorted(((DEFENSES.get(name), dict(params)) for name, params in defenses),
                    key=lambda entry: STAGES.index(entry[0].stage))
    for defense, params in chosen:
        defense.check_protocol(protocol)
        defense.check_params(params)
    replacing = [d.name for d, _ in chosen if d.stage == "client"]
    if len(replacing) > 1:
        raise InvalidValueError(f"defenses {', '.join(replacing)} each replace the client's step; choose one")
    return chosen


def protect(step: ClientFn, model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], protocol: str,
            defenses: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> Observation:
    """What the server sees of one round: every client runs ``step(model, x, y)`` (the ``protocol``'s
    computation) on its batch of ``batches`` under ``defenses`` ((name, params) pairs, ``check``ed),
    each acting at its stage: a ``ClientStep`` replaces ``step``, the ``Transform``s protect what
    each client shares, an ``Aggregation`` combines the clients. Several clients need an
    aggregation; one client's observation is returned as it is."""
    chosen = check(protocol, defenses)
    for defense, params in chosen:
        step = defense.client(step, params)
    observations = [step(model, x, y) for x, y in batches]
    for defense, params in chosen:
        observations = defense.aggregate(observations, params)
    if len(observations) != 1:
        raise InvalidValueError(f"{len(observations)} clients need an aggregation defense "
                                f"({', '.join(names('aggregate'))}) to make one observation")
    return observations[0]
