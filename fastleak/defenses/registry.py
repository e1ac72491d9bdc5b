"""The defense registry and ``apply``: transforms of the tensors a client shares.

A defense registered here maps the shared tensors of one pair to new ones, independently per
pair (``state`` is untouched). ``apply`` returns a new frozen ``Observation`` and appends
``{"name": ..., **params}`` to ``obs.meta["defenses"]`` (a tuple, in the order applied).
Stochastic defenses take ``seed`` (default 0): one CPU ``torch.Generator`` seeded with it draws
the noise for pair 0, 1, ... and their tensors in order, so results are identical on any device.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from fastleak._registry import Registry
from fastleak.errors import InvalidTypeError
from fastleak.federated.observation import Observation, Pair

Tensors = tuple[torch.Tensor, ...]
DefenseFn = Callable[..., Tensors]


@dataclass(frozen=True)
class Defense:
    name: str
    fn: DefenseFn              # fn(tensors, **params) or, if stochastic, fn(tensors, generator, **params)
    stochastic: bool


DEFENSES: Registry[Defense] = Registry("defense")


def register(name: str, *, stochastic: bool = False) -> Callable[[DefenseFn], DefenseFn]:
    def decorator(fn: DefenseFn) -> DefenseFn:
        DEFENSES.register(name)(Defense(name, fn, stochastic))
        return fn

    return decorator


def names() -> tuple[str, ...]:
    return DEFENSES.names()


def defense_meta(obs_meta: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``obs_meta`` with ``record`` appended to its "defenses" tuple."""
    meta = dict(obs_meta)
    meta["defenses"] = tuple(meta.get("defenses", ())) + (record,)
    return meta


def apply(obs: Observation, name: str, **params: Any) -> Observation:
    """Apply registered defense ``name`` with ``params`` to every pair of ``obs``; see the module doc."""
    if not isinstance(obs, Observation):
        raise InvalidTypeError(f"obs must be an Observation, got {type(obs).__name__}")
    defense = DEFENSES.get(name)
    signature = inspect.signature(defense.fn)
    accepted = [p for p in list(signature.parameters)[2 if defense.stochastic else 1:]]
    seed = params.pop("seed", 0) if defense.stochastic else None
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidTypeError(f"defense {name!r} does not accept {', '.join(unknown)}; accepted: "
                               f"{', '.join(accepted + (['seed'] if defense.stochastic else []))}")
    try:
        signature.bind(*([None, None] if defense.stochastic else [None]), **params)
    except TypeError as exc:
        raise InvalidTypeError(f"defense {name!r}: {exc}") from None
    if defense.stochastic:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidTypeError(f"seed must be an int, got {seed!r}")
        generator = torch.Generator().manual_seed(seed)
        pairs = tuple(Pair(p.state, defense.fn(p.shared, generator, **params)) for p in obs.pairs)
        record = {"name": name, **params, "seed": seed}
    else:
        pairs = tuple(Pair(p.state, defense.fn(p.shared, **params)) for p in obs.pairs)
        record = {"name": name, **params}
    return dataclasses.replace(obs, pairs=pairs, meta=defense_meta(obs.meta, record))
