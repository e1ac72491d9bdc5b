"""Label-recovery methods, registered by decorator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from fastleak._registry import Registry
from fastleak.errors import InvalidValueError

if TYPE_CHECKING:
    from fastleak.labels.evidence import Evidence
    from fastleak.labels.types import LabelConfig

Estimator = Callable[["Evidence", "LabelConfig"], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """A registered method: ``estimate(evidence, config)`` returns float counts [P, C], one
    row per (model state, shared quantity) pair in the evidence."""

    name: str
    estimate: Estimator
    needs_bias: bool = False
    single_sample: bool = False
    unique_labels: bool = False


LABEL_METHODS: Registry[Method] = Registry("label method")


def register(name: str, *, needs_bias: bool = False, single_sample: bool = False,
             unique_labels: bool = False) -> Callable[[Estimator], Estimator]:
    """Register ``fn(evidence, config) -> [P, C] float estimates`` as method ``name``.

    ``needs_bias``: uses the final layer's bias gradient; ``single_sample``: batch size 1 only;
    ``unique_labels``: assumes no duplicate labels (batch size at most the class count).
    """
    if name == "auto":
        raise InvalidValueError("'auto' is reserved for the method chooser")

    def decorator(fn: Estimator) -> Estimator:
        LABEL_METHODS.register(name)(Method(name, fn, needs_bias, single_sample, unique_labels))
        return fn

    return decorator


def get(name: str) -> Method:
    if name not in LABEL_METHODS:
        valid = ", ".join(LABEL_METHODS.names() + ("auto",))
        raise InvalidValueError(f"method must be one of {valid}; got {name!r}")
    return LABEL_METHODS.get(name)


def names() -> tuple[str, ...]:
    return LABEL_METHODS.names()
