"""Image priors of the attack objective: registered classes, each with its own parameters and state.

A prior is a dataclass subclass of ``Prior`` registered with ``@prior("name")``. Its fields are
its parameters (``weight`` first, shared by all: 0 disables it); a preset lists the priors it
uses by name with their parameters (``AttackConfig.priors``), and every attack gets fresh
instances, so state kept on ``self`` lives for one run. The objective adds ``weight * term`` of
every prior with a non-zero weight, in the order the configuration lists them.

A prior implements ``term(x, problem)``: the dummy images x [Q, B, C, H, W] (Q = problems x
restarts) and the ``Problem`` give its term [Q], or None while it has nothing to add. Optionally:

* ``tap()``: a ``Tap`` that the client simulation applies to the inputs of matching modules in
  its forward pass (for statistics only that pass sees, such as BatchNorm inputs); its values,
  summed over the matching layers and local steps, are ``problem.tapped(name)`` [Q].
* ``setup(problem)`` once before the first step and ``before_step(step, x, problem)`` before each
  (schedules, such as the group consensus); ``capturable(problem)`` False when the term changes
  its structure during the run, so a CUDA graph cannot replay it.
* ``state_dict()`` / ``load_state_dict(state)``: what a checkpoint keeps of its state, and
  ``keep(rows)``: keep the rows ``rows`` of any per-row state when a search drops the others.

A prior defined in a module of your own is used as ``"your.module.name"``: the module is imported
(from the current directory too) and must register ``name``.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from fastleak._checks import known_fields, typed_fields
from fastleak._registry import Registry
from fastleak.attacks import registration
from fastleak.errors import InvalidValueError
from fastleak.models import is_batchnorm
from fastleak.ops import total_variation

if TYPE_CHECKING:
    from fastleak.attacks.problem import Problem


@dataclass(frozen=True)
class Tap:
    """A measurement of the client simulation's forward pass: ``measure(module, input)`` -> a scalar,
    for every module where ``matches(module)`` holds."""

    matches: Callable[[nn.Module], bool]
    measure: Callable[[nn.Module, Tensor], Tensor]


@dataclass
class Prior:
    """Base of every prior; see the module docs. ``weight``: the term's weight in the objective."""

    weight: float = 0.0
    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        typed_fields(self.params(), type(self), f"prior {self.name}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise InvalidValueError(f"prior {self.name}: weight must be a finite number >= 0 (0 disables the "
                                    f"prior), got {self.weight!r}")
        self.check()

    def check(self) -> None:
        """Validate the parameters beyond their types; raise InvalidValueError naming the parameter."""

    def params(self) -> dict[str, Any]:
        """The parameters (the dataclass fields set on construction; ``init=False`` fields are state)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def tap(self) -> Tap | None:
        return None

    def setup(self, problem: Problem) -> None:
        """Called once, before the first step (and before a checkpoint's state is loaded)."""

    def before_step(self, step: int, x: Tensor, problem: Problem) -> None:
        """Called before every step with the current images."""

    def term(self, x: Tensor, problem: Problem) -> Tensor | None:
        raise NotImplementedError

    def capturable(self, problem: Problem) -> bool:
        return True

    def keep(self, rows: Tensor) -> None:
        """Keep only the rows ``rows`` of any per-row state (a search dropped the others)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


PRIORS: Registry[type[Prior]] = Registry("prior")


def prior(name: str) -> Callable[[type[Prior]], type[Prior]]:
    """Register the decorated ``Prior`` subclass as ``name`` (made a dataclass if it is not one)."""

    def register(cls: type[Prior]) -> type[Prior]:
        if not (isinstance(cls, type) and issubclass(cls, Prior)):
            raise InvalidValueError(f"prior {name!r} must be a subclass of fastleak.attacks.priors.Prior")
        if "__dataclass_fields__" not in cls.__dict__:
            cls = dataclass(cls)
        cls.name = name
        return PRIORS.register(name)(cls)

    return register


def prior_class(name: str) -> type[Prior]:
    """The registered prior ``name``; a dotted name not registered yet imports its module first."""
    if name not in PRIORS and "." in name:
        module, _, short = name.rpartition(".")
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, "")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InvalidValueError(f"prior {name!r}: module {module!r} cannot be imported ({exc})") from None
        if short not in PRIORS:
            raise InvalidValueError(f"prior {name!r}: module {module!r} registers no prior {short!r}; valid "
                                    f"names: {', '.join(PRIORS.names())}")
        return PRIORS.get(short)
    return PRIORS.get(name)


def build(name: str, params: Mapping[str, Any]) -> Prior:
    """A fresh instance of prior ``name`` with ``params``, unknown parameters named."""
    cls = prior_class(name)
    if not isinstance(params, Mapping):
        raise InvalidValueError(f"prior {name!r} takes a mapping of parameters, got {params!r}")
    known_fields(params, cls, f"prior {name}")
    return cls(**params)


def normalise_priors(priors: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every prior's complete, checked parameters (defaults filled in), in the given order."""
    if not isinstance(priors, Mapping):
        raise InvalidValueError(f"attack option priors must map prior names to parameters, got {priors!r}")
    return {name: build(name, params).params() for name, params in priors.items()}


def merge_priors(priors: Mapping[str, Mapping[str, Any]], changes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """``priors`` with each prior in ``changes`` updated parameter by parameter (new ones appended)."""
    out = {name: dict(params) for name, params in priors.items()}
    for name, params in changes.items():
        if not isinstance(params, Mapping):
            raise InvalidValueError(f"prior {name!r} takes a mapping of parameters, got {params!r}")
        out[name] = {**out.get(name, {}), **params}
    return out


def active(priors: Mapping[str, Mapping[str, Any]],
           search: Mapping[str, Sequence[float]] = {}) -> tuple[list[str], list[Prior]]:
    """The names and fresh instances of the priors with a non-zero weight, or a non-zero weight among
    their values in ``search``, in order."""
    built = [(name, build(name, params)) for name, params in priors.items()]
    used = [(name, p) for name, p in built if p.weight > 0 or any(w > 0 for w in search.get(name, ()))]
    return [name for name, _ in used], [p for _, p in used]


def _batchnorm_distance(module: nn.Module, x: Tensor) -> Tensor:
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False)
    distance = (mean - module.running_mean).norm() + (var - module.running_var).norm()
    tracked = getattr(module, "num_batches_tracked", None)
    # running statistics no batch has updated (an untrained model's 0 and 1) say nothing about the data
    return distance if tracked is None else distance * (tracked > 0).to(distance.dtype)


@prior("bn")
class BatchNormStatistics(Prior):
    """Distance of the dummy batch's BatchNorm input statistics (mean and biased variance over the batch
    and space) to the layers' running ones (Yin et al. 2021), summed over the layers, the local steps
    and the observed pairs. A layer whose running statistics no batch has updated yet
    (``num_batches_tracked`` 0, as in an untrained model) is left out: its 0 and 1 would pull the
    dummy batch away from the data."""

    def tap(self) -> Tap:
        return Tap(is_batchnorm, _batchnorm_distance)

    def term(self, x: Tensor, problem: Problem) -> Tensor | None:
        return problem.tapped(self.name)


@prior("tv")
class TotalVariation(Prior):
    """Anisotropic total variation (p=1) of each image, averaged over the batch."""

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        return total_variation(x.flatten(0, 1), p=1).view(x.shape[0], x.shape[1]).mean(1).to(x.dtype)


@prior("l2")
class MeanSquaredPixel(Prior):
    """The mean squared pixel value of each dummy batch."""

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        return x.pow(2).flatten(1).mean(1)


@prior("group")
class GroupConsistency(Prior):
    """GradInversion's group consistency (Yin et al. 2021): each restart's distance to its problem's
    consensus, the mean of the restarts registered to each other (``registration``: "affine" or
    "translation"). The consensus is recomputed every ``every`` steps from ``start`` (a fraction of
    the run) on; it needs at least two restarts."""

    every: int = 100
    start: float = 0.25
    registration: str = "affine"
    center: Tensor | None = dataclasses.field(default=None, init=False, repr=False)
    theta: Tensor | None = dataclasses.field(default=None, init=False, repr=False)

    def check(self) -> None:
        if self.every < 1:
            raise InvalidValueError(f"prior group: every must be a positive int, got {self.every!r}")
        if not 0 <= self.start <= 1:
            raise InvalidValueError(f"prior group: start must be a fraction of the run in [0, 1], got {self.start!r}")
        if self.registration not in ("affine", "translation"):
            raise InvalidValueError(f"prior group: registration must be 'affine' or 'translation', "
                                    f"got {self.registration!r}")

    def capturable(self, problem: Problem) -> bool:
        return problem.R < 2

    def update_consensus(self, x: Tensor, problem: Problem) -> None:
        """Register each problem's restarts to their mean and keep the consensus the term pulls to."""
        thetas, centers = [], []
        for p in range(problem.P):
            xp = x[p * problem.R:(p + 1) * problem.R].detach()
            theta = registration.register_to_mean(xp, translation_only=self.registration == "translation")
            thetas.append(theta)
            centers.append(registration.consensus(xp, theta))
        self.theta, self.center = torch.cat(thetas), torch.stack(centers)

    def before_step(self, step: int, x: Tensor, problem: Problem) -> None:
        if problem.R < 2:
            return
        first = int(self.start * problem.config.iterations)
        if step >= first and (step - first) % self.every == 0:
            self.update_consensus(x, problem)

    def term(self, x: Tensor, problem: Problem) -> Tensor | None:
        if self.center is None:
            return None
        r = problem.R
        return torch.cat([registration.consistency_loss(x[p * r:(p + 1) * r], self.center[p],
                                                        self.theta[p * r:(p + 1) * r]) for p in range(problem.P)])

    def keep(self, rows: Tensor) -> None:
        if self.theta is not None:
            self.theta = self.theta[rows]

    def state_dict(self) -> dict[str, Any]:
        return {"center": self.center, "theta": self.theta}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.center, self.theta = state["center"], state["theta"]


def _colour_opponents(images: Tensor) -> Tensor:
    """RGB images [N, 3, H, W] with their three double-opponent channels appended (R-G, R-B, G-B);
    other channel counts unchanged."""
    if images.shape[1] != 3:
        return images
    r, g, b = images.unbind(1)
    return torch.cat([images, torch.stack([r - g, r - b, g - b], 1)], 1)


@prior("tv_power")
class PowerTotalVariation(Prior):
    """Total variation with exponents (Geiping et al.'s and breaching's general form): the mean over the
    pixels, channels and images of (|dx| + eps)^inner + (|dy| + eps)^inner, raised to ``outer``; dx, dy
    the differences to the right and lower neighbour. inner 1, outer 1 is anisotropic TV; inner 2,
    outer 0.5 isotropic TV. ``opponents``: RGB images also pay for the variation of R-G, R-B and G-B
    (colour TV by double opponents)."""

    inner: float = 1.0
    outer: float = 1.0
    opponents: bool = False
    eps: float = 1e-8

    def check(self) -> None:
        for name in ("inner", "outer"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise InvalidValueError(f"prior tv_power: {name} must be a positive finite number, "
                                        f"got {getattr(self, name)!r}")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise InvalidValueError(f"prior tv_power: eps must be a finite number >= 0, got {self.eps!r}")

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        images = x.flatten(0, 1)
        if self.opponents:
            images = _colour_opponents(images)
        dx = images[..., :-1, 1:] - images[..., :-1, :-1]
        dy = images[..., 1:, :-1] - images[..., :-1, :-1]
        local = ((dx.abs() + self.eps).pow(self.inner) + (dy.abs() + self.eps).pow(self.inner)).pow(self.outer)
        return local.view(x.shape[0], -1).mean(1)


@prior("norm")
class PixelNorm(Prior):
    """The mean of |pixel|^p over each dummy batch, divided by p (``p`` = 2: half the ``l2`` prior)."""

    p: float = 2.0

    def check(self) -> None:
        if not (math.isfinite(self.p) and self.p > 0):
            raise InvalidValueError(f"prior norm: p must be a positive finite number, got {self.p!r}")

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        return x.abs().pow(self.p).flatten(1).mean(1) / self.p


# the priors that run the model forward register themselves on import
from fastleak.attacks import forward_priors  # noqa: E402,F401
