"""Simulate a client on real data, recover its labels, attack, and evaluate the reconstruction."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fastleak import data, defenses, models
from fastleak.attacks import AttackResult, attack
from fastleak.experiments.spec import ExperimentSpec
from fastleak.federated import Observation, fedavg, fedsgd, multi_pair
from fastleak.metrics.images import Evaluation, evaluate

log = logging.getLogger(__name__)

_CLIENTS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor, ExperimentSpec], Observation]] = {}


def _client(mode: str):
    def register(fn):
        _CLIENTS[mode] = fn
        return fn
    return register


@_client("fedsgd")
def _fedsgd(model, x, y, spec):
    return fedsgd(model, x, y)


@_client("fedavg")
def _fedavg(model, x, y, spec):
    return fedavg(model, x, y, local_steps=spec.local_steps, lr=spec.local_lr, batch_size=spec.local_batch_size)


@_client("multi-pair")
def _multi(model, x, y, spec):
    return multi_pair(model, x, y, pairs=spec.pairs, between="reinit", seed=spec.seed)


@dataclass(frozen=True)
class Scenario:
    """A simulated client: its model, private batch (ground truth) and what the server observed."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    observation: Observation


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    result: AttackResult
    evaluation: Evaluation


def simulate(spec: ExperimentSpec) -> Scenario:
    meta = data.info(spec.dataset, root=spec.data_root, split=spec.split)
    x, y = data.load(spec.dataset, spec.batch, seed=spec.seed, labels=spec.labels, root=spec.data_root,
                     split=spec.split)
    model = models.build(spec.model, meta.num_classes, in_shape=meta.shape, seed=spec.seed, **spec.model_options)
    if spec.state_dict is not None:
        models.load_state(model, spec.state_dict)
        if spec.split == "train":
            log.warning("the private batch comes from the train split, which the model in %s may have been "
                        "trained on", spec.state_dict)
    model.train(spec.client_bn == "train")
    obs = _CLIENTS[spec.mode](model, x, y, spec)
    if spec.defense:
        obs = defenses.apply(obs, spec.defense, **spec.defense_params)
    return Scenario(model=model, images=x, labels=y, observation=obs)


def run(spec: ExperimentSpec, *, callback=None, checkpoint=None) -> Outcome:
    """Simulate, attack and evaluate; ``callback``/``checkpoint`` are passed to the attack."""
    scenario = simulate(spec)
    labels = {"recover": "recover", "optimize": "optimize", "true": scenario.labels}[spec.attack_labels]
    options = {"label_method": spec.label_method, **spec.attack_options}
    result = attack(scenario.observation, scenario.model, spec.preset,
                    labels=labels, restarts=spec.restarts, iterations=spec.iterations,
                    seed=spec.seed, device=spec.device, callback=callback, checkpoint=checkpoint, **options)
    evaluation = evaluate(result.images, scenario.images, result.labels, scenario.labels,
                          num_classes=data.num_classes(spec.dataset, root=spec.data_root))
    log.info("attack %s on %s/%s B=%d: PSNR %.2f dB, SSIM %.3f, LnAcc %.2f", spec.preset, spec.model, spec.dataset,
             spec.batch, evaluation.psnr, evaluation.ssim, evaluation.labels.ln_acc if evaluation.labels else -1)
    return Outcome(scenario=scenario, result=result, evaluation=evaluation)
