"""The attack engine: batched restarts and batched independent attacks.

An attack walks one straight line: check the inputs, settle the labels
(``fastleak.attacks.label_modes``), build the problem of Q = P*R dummy batches
(``fastleak.attacks.problem``: P observations of one model, R restarts each, one vectorised
objective), run the optimiser (``fastleak.attacks.adam`` or ``fastleak.attacks.lbfgs_run``,
checkpointed by ``fastleak.attacks.checkpoint``) and return one ``AttackResult`` per observation.
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fastleak._checks import positive_int
from fastleak.attacks.adam import AdamRun
from fastleak.attacks.execution import Execution
from fastleak.attacks.label_modes import attack_labels
from fastleak.attacks.lbfgs_run import LBFGSRun
from fastleak.attacks.presets import AttackConfig, configure
from fastleak.attacks.problem import Problem
from fastleak.attacks.run import AttackResult, Callback
from fastleak.attacks.search import RESTARTS, default_restarts
from fastleak.errors import InvalidValueError
from fastleak.federated.observation import Observation, check_observations

RUNS = {"adam": AdamRun, "lbfgs": LBFGSRun}


def attack(obs: Observation, model: nn.Module, preset: str | AttackConfig = "inverting", *,
           labels: Tensor | str | None = None, label_public: Any = None, restarts: int | None = None,
           iterations: int | None = None, seed: int = 0,
           device: str | torch.device | None = None, callback: Callback | None = None,
           checkpoint: str | os.PathLike | None = None, priors: Mapping[str, Mapping[str, Any]] | None = None,
           execution: Execution | None = None, **overrides: Any) -> AttackResult:
    """Reconstruct the private batch behind ``obs`` (see ``attack_many``)."""
    fixed = labels if labels is None or isinstance(labels, str) else [labels]
    return attack_many([obs], model, preset, labels=fixed, label_public=label_public, restarts=restarts,
                       iterations=iterations, seed=seed, device=device, callback=callback, checkpoint=checkpoint,
                       priors=priors, execution=execution, **overrides)[0]


def attack_many(observations: Sequence[Observation], model: nn.Module, preset: str | AttackConfig = "inverting", *,
                labels: Sequence[Tensor] | str | None = None, label_public: Any = None, restarts: int | None = None,
                iterations: int | None = None,
                seed: int = 0, device: str | torch.device | None = None, callback: Callback | None = None,
                checkpoint: str | os.PathLike | None = None, priors: Mapping[str, Mapping[str, Any]] | None = None,
                execution: Execution | None = None, **overrides: Any) -> list[AttackResult]:
    """Run independent attacks on several observations of the same model, all restarts batched.

    preset: a name of ``PRESETS`` or an ``AttackConfig``; ``overrides`` replace its fields
    (``AttackConfig.replace``: ``tv=0.1`` sets the TV prior's weight) and ``priors`` changes its priors,
    parameter by parameter ({"tv": {"weight": 1e-4}}; a new name adds a prior, weight 0 disables one).
    restarts: random initialisations per candidate setting (None: one per candidate of the preset's
    search, ``fastleak.attacks.search``, or 4 without one), optimised together.
    execution: how it runs (``Execution``); its fields may also be given as keywords
    (``cuda_graph=False``), and ``device`` (default: the model's) overrides its device.
    labels: None uses the preset's rule ("recover": ``fastleak.labels.recover`` with the
    preset's ``label_method``; "optimize": soft labels optimised jointly); "optimize" or
    "recover" override it; a tensor per observation fixes the labels.
    label_public: the server's labelled public data for recovered labels, ``(images, labels)`` or a
    ``fastleak.labels.PublicData`` (``fastleak.labels.counts_many``'s ``public``).
    callback(step, losses [Q]) is called every ``record_every`` steps with device tensors.
    checkpoint: a file path; the run is checkpointed there every ``checkpoint_every`` steps
    and on KeyboardInterrupt, and resumed from it when it exists.
    A preset named in ``fastleak.closedform.METHODS`` runs that closed-form method instead.
    """
    from fastleak import closedform

    if isinstance(preset, str) and preset in closedform.METHODS:
        restarts = RESTARTS if restarts is None else restarts
        return closedform.run(preset, observations, model, labels=labels, restarts=restarts, iterations=iterations,
                              seed=seed, device=device, callback=callback, priors=priors, execution=execution,
                              **overrides)
    if not observations:
        raise InvalidValueError("observations must be a non-empty sequence")
    config, execution = configure(preset, iterations, priors=priors, execution=execution, **overrides)
    restarts = default_restarts(config.search) if restarts is None else restarts
    positive_int(restarts, "restarts")
    if device is not None:
        execution = execution.replace(device=str(device))
    check_observations(observations, model, "attack_many", also=("num_samples", "num_pairs"))
    device = execution.device_for(model)
    model = copy.deepcopy(model).to(device)

    chosen = attack_labels(observations, model, config, labels, public=label_public)
    # the run optimises soft labels only when asked to; given or recovered labels are fixed
    config = config.replace(labels="optimize" if chosen.mode == "optimize" else "recover")
    problem = Problem(model, [obs.to(device) for obs in observations], config, restarts, chosen.fixed, seed, device,
                      execution)
    start = time.perf_counter()
    run = RUNS[config.optimizer](problem)
    steps_run = run.optimise(checkpoint, callback)
    return run.results(time.perf_counter() - start, steps_run, chosen.method)
