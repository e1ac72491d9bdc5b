"""The malicious server's ready-made plans: ``build(name, model, public, batch_size, **options)``.

A preset turns the model the server would honestly send into its malicious model, sized for the
client's batch (the protocol tells the server its batch size):

* ``imprint``: an imprint block with ``bins = 2 * batch_size`` sparse bins on mean brightness, so a
  sample is alone in its bin with probability ``(1 - 1/K)^(B - 1) ~ exp(-1/2) = 0.61``. Sparse rows
  keep that through FedAvg's local steps; ``structure="cumulative"`` gives the paper's layout,
  exact for FedSGD only (``benchmarks/bench_imprint.py``). Options: the fields of ``ImprintConfig``.
* ``imprint_pca``: the same ``2 * batch_size`` sparse bins split into 4 groups, each on one of the
  4 principal directions of the public data (QBI-style quantile edges along each), read with
  peeling: a FedSGD server reads nearly the whole batch where one direction gives its singletons
  (``benchmarks/RESULTS.md``). FedAvg updates are not peeled, so there each group's singletons are
  what is read. Options: the fields of ``ImprintConfig``.
* ``trap``: ``rows = 2 * batch_size`` trap rows that fire for ``1 / batch_size`` of the public
  data. Options: the fields of ``TrapConfig``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from fastleak._checks import positive_int
from fastleak._registry import Registry
from fastleak.errors import InvalidValueError
from fastleak.malicious.imprint import ImprintConfig, imprint_model
from fastleak.malicious.model import MaliciousModel
from fastleak.malicious.trap import TrapConfig, trap_model

PresetFn = Callable[..., MaliciousModel]
PRESETS: Registry[PresetFn] = Registry("malicious preset")


def preset(name: str) -> Callable[[PresetFn], PresetFn]:
    """Register ``fn(model, public, batch_size, in_shape, **options) -> MaliciousModel`` under ``name``."""
    return PRESETS.register(name)


def names() -> tuple[str, ...]:
    return PRESETS.names()


def _config(cls: type, defaults: dict[str, Any], options: dict[str, Any], name: str):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InvalidValueError(f"the {name!r} preset has no option {', '.join(unknown)}; its options are "
                                f"{', '.join(sorted(fields))}")
    return cls(**{**defaults, **options})


@preset("imprint")
def _imprint(model: nn.Module, public: torch.Tensor, batch_size: int, in_shape, **options: Any) -> MaliciousModel:
    config = _config(ImprintConfig, {"bins": 2 * batch_size, "structure": "sparse"}, options, "imprint")
    return imprint_model(model, public, config, in_shape=in_shape)


@preset("imprint_pca")
def _imprint_pca(model: nn.Module, public: torch.Tensor, batch_size: int, in_shape, **options: Any) -> MaliciousModel:
    bins = max(8, -(-2 * batch_size // 4) * 4)   # 2B rounded up to a multiple of the 4 directions
    config = _config(ImprintConfig, {"bins": bins, "structure": "sparse", "measurement": "pca", "measurements": 4},
                     options, "imprint_pca")
    return imprint_model(model, public, config, in_shape=in_shape)


@preset("trap")
def _trap(model: nn.Module, public: torch.Tensor, batch_size: int, in_shape, **options: Any) -> MaliciousModel:
    config = _config(TrapConfig, {"rows": 2 * batch_size, "activation_rate": min(1 / batch_size, 0.25)}, options,
                     "trap")
    return trap_model(model, public, config, in_shape=in_shape)


def build(name: str, model: nn.Module, public: torch.Tensor, batch_size: int, *,
          in_shape: tuple[int, ...] | None = None, **options: Any) -> MaliciousModel:
    """The malicious model of preset ``name`` for clients with batches of ``batch_size`` (module docs);
    ``options`` override the preset's config fields, e.g. ``bins=64``."""
    fn = PRESETS.get(name)
    return fn(model, public, positive_int(batch_size, "batch_size"), in_shape, **options)
