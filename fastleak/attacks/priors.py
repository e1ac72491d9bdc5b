"""Image priors of the attack objective, registered by name and batched over all dummy batches.

A prior is one function ``term(x, problem)`` of the dummy images x [Q, B, C, H, W] (Q = problems x
restarts) and the ``Problem`` (its client simulators, its group consensus) that returns its term [Q],
or None while it has nothing to add. ``@prior("name")`` registers it; its weight is the
``AttackConfig`` field of the same name, and the objective adds ``weight * term`` for every prior
whose weight is non-zero, in registration order.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fastleak.attacks import registration
from fastleak.errors import InvalidValueError
from fastleak.ops import total_variation

if TYPE_CHECKING:
    from fastleak.attacks.presets import AttackConfig
    from fastleak.attacks.problem import Problem

Prior = Callable[[Tensor, "Problem"], "Tensor | None"]
PRIORS: dict[str, Prior] = {}


def prior(name: str) -> Callable[[Prior], Prior]:
    """Register the decorated term as prior ``name``, weighted by ``AttackConfig.<name>``."""

    def register(term: Prior) -> Prior:
        if name in PRIORS:
            raise InvalidValueError(f"prior {name!r} is already registered")
        PRIORS[name] = term
        return term

    return register


def weighted_priors(config: AttackConfig) -> tuple[tuple[float, Prior], ...]:
    """(weight, term) of every prior whose weight in ``config`` is non-zero, in registration order."""
    return tuple((getattr(config, name), term) for name, term in PRIORS.items() if getattr(config, name) > 0)


@prior("bn")
def batchnorm_statistics(x: Tensor, problem: Problem) -> Tensor | None:
    """Distance of the dummy batch's BatchNorm input statistics to the running ones (Yin et al. 2021),
    summed over the observed pairs; the simulators computed it with the shared quantities."""
    losses = [sim.bn_loss for sim in problem.sims if sim.bn_loss is not None]
    return sum(losses[1:], losses[0]) if losses else None


@prior("tv")
def anisotropic_total_variation(x: Tensor, problem: Problem) -> Tensor:
    """Total variation (p=1) of each image, averaged over the batch."""
    return total_variation(x.flatten(0, 1), p=1).view(x.shape[0], x.shape[1]).mean(1).to(x.dtype)


@prior("l2")
def mean_squared_pixel(x: Tensor, problem: Problem) -> Tensor:
    return x.pow(2).flatten(1).mean(1)


@prior("group")
def group_consistency(x: Tensor, problem: Problem) -> Tensor | None:
    """Each restart's distance to its problem's registered consensus (``Problem.update_consensus``)."""
    if problem.center is None:
        return None
    r = problem.R
    return torch.cat([registration.consistency_loss(x[p * r:(p + 1) * r], problem.center[p],
                                                    problem.theta[p * r:(p + 1) * r]) for p in range(problem.P)])
