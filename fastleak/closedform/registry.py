"""The registry of closed-form methods and the one path every method's run takes.

A closed-form method reads the private batch off the shared gradient by linear algebra: no dummy
data to optimise, nothing to restart. It is a function registered with ``@method("name")``::

    @method("name")
    def name(targets: list[Target], labels: list[Tensor], *, option=default, ...) -> list[Reconstruction]

``targets`` are the attacked observations, each with the model at its state and its gradient;
``labels`` one label tensor per observation (recovered with the run's ``label_method``, or given).
The keyword-only parameters are the method's options (``fastleak.attack(..., option=value)``,
``--option key=value`` on the command line). A method that optimises (``feature_inversion``) is
registered with ``iterative=True`` and also receives ``restarts``, ``iterations`` and ``seed``.

``run`` checks the observations, settles the labels, times the method and returns one
``fastleak.attacks.AttackResult`` per observation, so reports, metrics and the command line treat it
like an optimisation attack. ``restart_losses`` holds each returned batch's gradient residual:
the distance between the gradient the reconstruction produces and the observed one, over the
observed one's norm (~0 when the reconstruction explains the gradient). Resuming is trivial: a
closed-form answer has no state between steps, so no checkpoint is written and a second call
recomputes the same answer.
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from fastleak._registry import Registry
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation, check_observations, observation_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One attacked observation: ``model`` a copy at the observation's state, in the clients' BatchNorm mode
    (eval mode without BatchNorm), on the attack's device; ``gradients`` the shared gradient by parameter
    name (an update of one full-batch local step is turned back into its gradient)."""

    observation: Observation
    model: nn.Module
    gradients: dict[str, Tensor]

    @property
    def num_samples(self) -> int:
        return self.observation.num_samples

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.observation.input_shape_for(self.model)


@dataclass(frozen=True)
class Reconstruction:
    """What a method returns for one observation: ``images`` [R, B, C, H, W] (R = 1 for a closed-form
    answer, restarts for an iterative method), unclamped; ``labels`` [B]; an iterative method's own
    objective ``history`` [T, R] at ``history_steps`` and its ``iterations``."""

    images: Tensor
    labels: Tensor
    history: Tensor | None = None
    history_steps: tuple[int, ...] = ()
    iterations: int = 0


@dataclass(frozen=True)
class ClosedFormConfig:
    """The method and the options a result was computed with (``AttackResult.config``)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label_method: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "closed_form": True, "label_method": self.label_method, **dict(self.options)}


@dataclass(frozen=True)
class Method:
    """A registered method: its function, its options' defaults and whether it optimises."""

    name: str
    fn: Callable[..., list[Reconstruction]]
    options: Mapping[str, Any]
    iterative: bool

    def checked_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The method's options with ``overrides`` applied, each of its default's type."""
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise InvalidValueError(f"unknown option(s) {unknown} of closed-form method {self.name!r}; valid options: "
                                    f"{', '.join(sorted(self.options)) or 'none'} (and label_method)")
        out = dict(self.options)
        for key, value in overrides.items():
            out[key] = _typed(value, self.options[key], f"{self.name} option {key}")
        return out


def _typed(value: Any, default: Any, name: str) -> Any:
    """``value`` checked against ``default``'s type (an int is accepted for a float; None defaults take anything)."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise InvalidTypeError(f"{name} must be of type {type(default).__name__}, got {value!r}")
    return value


METHODS: Registry[Method] = Registry("closed-form method")


def method(name: str, *, iterative: bool = False) -> Callable[[Callable], Callable]:
    """Register ``fn(targets, labels, *, options...)`` as closed-form method ``name`` (module docs)."""

    def register(fn: Callable) -> Callable:
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        if iterative:
            options = {k: v for k, v in options.items() if k not in ITERATIVE_ARGUMENTS}
        METHODS.register(name)(Method(name, fn, options, iterative))
        return fn

    return register


ITERATIVE_ARGUMENTS = ("restarts", "iterations", "seed", "callback")


def names() -> tuple[str, ...]:
    return METHODS.names()


def gradient_of(obs: Observation, where: str, name: str) -> tuple[Tensor, ...]:
    """The shared gradient of ``obs``'s first pair: as shared (FedSGD), or from an update of one local step
    on the whole batch (W_after - W_before = -lr * gradient)."""
    shared = obs.pairs[0].shared
    if obs.kind == "gradient":
        return shared
    schedule = obs.protocol.schedule(obs.num_samples)
    if len(schedule) == 1 and schedule[0] == (0, obs.num_samples) and obs.local_lr:
        return tuple(-t / obs.local_lr for t in shared)
    raise InvalidValueError(f"{where}: closed-form method {name!r} reads a gradient (FedSGD, or FedAvg with one local "
                            f"step on the whole batch); this update ran {len(schedule)} local step(s) on "
                            "mini-batches")


def _targets(observations: Sequence[Observation], model: nn.Module, device: torch.device,
             name: str) -> list[Target]:
    check_observations(observations, model, "a closed-form attack", also=("num_samples",))
    out = []
    for i, obs in enumerate(observations):
        where = observation_name(i, len(observations))
        grads = gradient_of(obs, where, name)
        at_state = copy.deepcopy(model)
        at_state.load_state_dict(obs.pairs[0].state)
        at_state = at_state.to(device).train(obs.bn_train)
        on_device = all(t.device == device for pair in obs.pairs for t in (*pair.shared, *pair.state.values()))
        out.append(Target(obs if on_device else obs.to(device), at_state,
                          {n: g.to(device) for n, g in zip(obs.param_names, grads)}))
    return out


def _labels(observations: Sequence[Observation], model: nn.Module, labels: Any, label_method: str,
            name: str) -> tuple[list[Tensor], str]:
    from fastleak.attacks.label_modes import attack_labels

    if isinstance(labels, str) and labels == "optimize":
        raise InvalidValueError(f"labels='optimize': closed-form method {name!r} does not optimise labels; pass "
                                "'recover', None or label tensors")
    chosen = attack_labels(observations, model, _label_config(label_method), labels)
    return chosen.fixed, chosen.method or label_method


@functools.lru_cache(maxsize=16)
def _label_config(label_method: str):
    """The attack configuration ``attack_labels`` reads its label rule from (a configuration checks all its fields
    when made, so each method's is made once)."""
    from fastleak.attacks.presets import AttackConfig

    return AttackConfig(label_method=label_method)


def gradient_residual(target: Target, images: Tensor, labels: Tensor) -> Tensor:
    """‖gradient of (images, labels) − observed gradient‖ / ‖observed gradient‖ for each batch of
    ``images`` [R, B, C, H, W] (the protocol's loss and reduction, the model in its BatchNorm mode)."""
    from fastleak.federated.client import client_gradients

    obs, model = target.observation, target.model
    params = dict(model.named_parameters())
    params = {n: params[n] for n in obs.param_names}
    observed = [target.gradients[n] for n in obs.param_names]
    def norm(tensors) -> Tensor:  # each tensor's norm in its dtype (a pairwise sum), combined in float64
        return torch.stack([t.norm().double() for t in tensors]).norm()

    scale = norm(observed).clamp_min(1e-300)
    out = []
    with torch.enable_grad():
        for x in images:
            grads = client_gradients(model, params, x.to(observed[0].dtype), labels.to(observed[0].device),
                                     loss=obs.loss, reduction=obs.reduction)
            out.append(norm(g.detach().sub_(t) for g, t in zip(grads, observed)) / scale)
    return torch.stack(out)


def run(name: str, observations: Sequence[Observation], model: nn.Module, *, labels: Any = None, restarts: int = 1,
        iterations: int | None = None, seed: int = 0, device: str | torch.device | None = None,
        callback: Callable | None = None, priors: Mapping[str, Mapping[str, Any]] | None = None,
        execution: Any = None, label_method: str = "auto", **options: Any):
    """Closed-form method ``name`` on every observation (module docs); returns one ``AttackResult`` each.
    ``restarts``, ``iterations``, ``seed`` and ``callback`` reach iterative methods only; ``priors`` are not
    used by any closed-form method and are refused."""
    from fastleak.attacks.execution import Execution, split_execution
    from fastleak.attacks.run import AttackResult

    spec = METHODS.get(name)
    if not observations:
        raise InvalidValueError("observations must be a non-empty sequence")
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if priors:
        raise InvalidValueError(f"priors: closed-form method {name!r} takes no priors (its options: "
                                f"{', '.join(sorted(spec.options)) or 'none'})")
    options, settings = split_execution(options)
    execution = (execution or Execution()).replace(**settings)
    if device is not None:
        execution = execution.replace(device=str(device))
    opts = spec.checked_options(options)
    dev = execution.device_for(model)
    targets = _targets(observations, model, dev, name)
    fixed, found_with = _labels([t.observation for t in targets], targets[0].model, labels, label_method, name)
    fixed = [y.to(dev) for y in fixed]
    if spec.iterative:
        opts = {**opts, "restarts": restarts, "iterations": iterations, "seed": seed, "callback": callback}
    start = time.perf_counter()
    found = spec.fn(targets, fixed, **opts)
    wall = time.perf_counter() - start
    config = ClosedFormConfig(name, {k: v for k, v in opts.items() if k != "callback"}, label_method)
    results = []
    for target, rec in zip(targets, found):
        images = rec.images.detach().clamp(0, 1)
        residual = gradient_residual(target, images, rec.labels).cpu()
        residual = torch.where(torch.isfinite(residual), residual, torch.full_like(residual, math.inf))
        best = int(torch.argmin(residual))
        # a closed-form answer's one recorded value is its residual (floored so that a log-scale plot shows an exact 0)
        history = rec.history.cpu() if rec.history is not None else residual[None].clamp_min(1e-30)
        steps = rec.history_steps if rec.history is not None else (0,)
        log.info("%s: gradient residual %.3g", name, float(residual[best]))
        results.append(AttackResult(
            images=images[best].float().cpu(), labels=rec.labels.cpu(), restart_images=images.float().cpu(),
            restart_losses=residual.float(), best_restart=best, history=history.float(),
            history_steps=tuple(steps), wall_time=wall, iterations=rec.iterations,
            iterations_per_second=rec.iterations / wall if rec.iterations and wall > 0 else 0.0,
            config=config, label_method=found_with, resets=0))
    return results
