"""Several observations of the SAME private batch under different model states (multi-pair).

``multi_pair`` runs the client protocol (``fedsgd`` for kind "gradient", ``fedavg`` for kind
"update") ``pairs`` times on the same batch. Pair 0 is always the model as given, so
``multi_pair(..., pairs=1)`` equals the single observation. Between rounds the model state changes:

* ``between="sgd"``: the server applies a training step between rounds, as the global model
  evolves in FL. With ``other=None`` it applies the quantity the client just shared (the
  server-side update with this client alone): ``W <- W - server_lr * gradient`` (kind
  "gradient", default ``server_lr`` 0.1) or ``W <- W + server_lr * update`` (kind "update",
  default ``server_lr`` 1.0). With ``other=(x_other, y_other)`` it applies the same protocol's
  shared quantity on that other data instead (other clients' contribution). Buffers (BatchNorm
  running statistics) are kept.
* ``between="reinit"``: the server re-initialises the model for each round: pair ``i >= 1`` uses
  seed ``seed + i`` (default ``seed``: the model's build seed, or 0). Models made by
  ``fastleak.models.build`` are rebuilt with their own initialiser; other models call
  ``reset_parameters()`` on every submodule that owns parameters, under that seed.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from fastleak._checks import positive_int
from fastleak._registry import Registry
from fastleak.errors import InvalidValueError
from fastleak.federated.client import fedavg, fedsgd
from fastleak.federated.observation import Observation
from fastleak.models.registry import build, spec_of

OBSERVERS: Registry[Callable[..., Observation]] = Registry("observation kind")
OBSERVERS.register("gradient")(fedsgd)
OBSERVERS.register("update")(fedavg)

DEFAULT_SERVER_LR = {"gradient": 0.1, "update": 1.0}


@dataclasses.dataclass(frozen=True)
class _Round:
    model: nn.Module            # the server's working copy, changed in place
    index: int                  # the pair about to be observed (>= 1)
    last: Observation           # the observation of the previous pair
    observe: Callable[..., Observation]
    server_lr: float
    other: tuple[torch.Tensor, torch.Tensor] | None
    seed: int


BETWEEN: Registry[Callable[[_Round], None]] = Registry("between-rounds rule")


@BETWEEN.register("sgd")
def _sgd_step(r: _Round) -> None:
    driver = r.last if r.other is None else r.observe(r.model, *r.other)
    sign = -1.0 if driver.kind == "gradient" else 1.0
    params = dict(r.model.named_parameters())
    with torch.no_grad():
        for name, value in zip(driver.param_names, driver.pairs[0].shared):
            params[name].add_(value, alpha=sign * r.server_lr)


def _reinitialised_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    spec = spec_of(model)
    if spec is not None:
        return build(**{**spec.build_kwargs(), "seed": seed}).state_dict()
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in fresh.named_modules():
            if next(module.parameters(recurse=False), None) is None:
                continue
            if not hasattr(module, "reset_parameters"):
                raise InvalidValueError(f"between='reinit' cannot re-initialise submodule {name!r} "
                                        f"({type(module).__name__}): it has no reset_parameters()")
            module.reset_parameters()
    return fresh.state_dict()


@BETWEEN.register("reinit")
def _reinit(r: _Round) -> None:
    r.model.load_state_dict(_reinitialised_state(r.model, r.seed + r.index))


def multi_pair(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, pairs: int, between: str = "sgd",
               kind: str = "gradient", seed: int | None = None, server_lr: float | None = None,
               other: tuple[torch.Tensor, torch.Tensor] | None = None, **client_kw: Any) -> Observation:
    """Observe the batch ``(x, y)`` under ``pairs`` model states (see the module docstring).

    ``client_kw`` go to the client protocol (``loss``, ``reduction``; for kind "update" also
    ``local_steps``, ``lr``, ``batch_size``, ``epochs``). ``model`` is not modified. The result has
    one ``Pair`` per round and ``meta["multi_pair"]`` recording the rule and its settings.
    """
    count = positive_int(pairs, "pairs")
    rule = BETWEEN.get(between)
    observer = OBSERVERS.get(kind)
    if seed is None:
        spec = spec_of(model)
        seed = spec.seed if spec is not None else 0
    lr = DEFAULT_SERVER_LR[kind] if server_lr is None else float(server_lr)
    if lr <= 0:
        raise InvalidValueError(f"server_lr must be positive, got {server_lr!r}")

    def observe(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> Observation:
        return observer(m, xs, ys, **client_kw)

    work = copy.deepcopy(model)
    observations = [observe(work, x, y)]
    for i in range(1, count):
        rule(_Round(work, i, observations[-1], observe, lr, other, seed))
        observations.append(observe(work, x, y))
    first = observations[0]
    meta = {**first.meta, "multi_pair": {"between": between, "server_lr": lr, "seed": seed,
                                         "other_data": other is not None}}
    return dataclasses.replace(first, pairs=tuple(o.pairs[0] for o in observations), meta=meta)
