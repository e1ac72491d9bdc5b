"""A simulated FL round on real data: the model the server sends, the clients' batches, what the server sees."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fastleak import data, defenses, models
from fastleak._registry import Registry
from fastleak.data import DatasetError
from fastleak.experiments.spec import ExperimentSpec
from fastleak.federated import Observation, fedavg, fedsgd, multi_pair

log = logging.getLogger(__name__)

ClientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, ExperimentSpec], Observation]
CLIENTS: Registry[ClientFn] = Registry("client mode")
PUBLIC_SAMPLES = 5000  # at most this many images of the other split make the malicious server's public data


@CLIENTS.register("fedsgd")
def _fedsgd(model, x, y, spec):
    return fedsgd(model, x, y)


@CLIENTS.register("fedavg")
def _fedavg(model, x, y, spec):
    return fedavg(model, x, y, local_steps=spec.local_steps, lr=spec.local_lr, batch_size=spec.local_batch_size)


@CLIENTS.register("multi-pair")
def _multi(model, x, y, spec):
    return multi_pair(model, x, y, pairs=spec.pairs, between="reinit", seed=spec.seed)


@dataclass(frozen=True)
class Scenario:
    """A simulated round: the model the clients received, their private batches (ground truth,
    ``clients * batch`` samples in client order) and what the server observed."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    observation: Observation


def public_data(spec: ExperimentSpec) -> torch.Tensor:
    """The malicious server's own data: up to ``PUBLIC_SAMPLES`` images of the split the clients do
    not draw from (the train split for clients on the test split), never the clients' images."""
    other = "train" if spec.split == "test" else "test"
    try:
        source = data.open_split(spec.dataset, root=spec.data_root, split=other)
    except DatasetError as exc:
        raise DatasetError(f"the malicious server fits its block on public data, the {other!r} split of "
                           f"{spec.dataset!r}, which cannot be read: {exc}. Use a dataset with both splits, e.g. "
                           "mnist, or one on disk (data_root)") from None
    x, _ = data.load(spec.dataset, min(len(source.labels), PUBLIC_SAMPLES), seed=spec.seed, root=spec.data_root,
                     split=other)
    return x


def _server_model(spec: ExperimentSpec, model: nn.Module) -> nn.Module:
    if spec.threat == "honest":
        return model
    from fastleak.malicious import presets

    # Under secure aggregation the server reads the sum of every client's batch, and sizes its block for all of them.
    return presets.build(spec.preset, model, public_data(spec), spec.batch * spec.clients, **spec.attack_options)


def _observe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: ExperimentSpec) -> Observation:
    """Every client computes on its own batch under the spec's defenses; what the server sees."""
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Observation:
        return CLIENTS.get(spec.mode)(model, x, y, spec)

    batches = [(x[start:start + spec.batch], y[start:start + spec.batch]) for start in range(0, len(x), spec.batch)]
    return defenses.protect(step, model, batches, spec.mode, spec.defenses())


def simulate(spec: ExperimentSpec) -> Scenario:
    meta = data.info(spec.dataset, root=spec.data_root, split=spec.split)
    x, y = data.load(spec.dataset, spec.batch * spec.clients, seed=spec.seed, labels=spec.labels,
                     root=spec.data_root, split=spec.split)
    model = models.build(spec.model, meta.num_classes, in_shape=meta.shape, seed=spec.seed, **spec.model_options)
    if spec.state_dict is not None:
        models.load_state(model, spec.state_dict)
        if spec.split == "train":
            log.warning("the private batch comes from the train split, which the model in %s may have been "
                        "trained on", spec.state_dict)
    model = _server_model(spec, model)
    model.train(spec.client_bn == "train")
    return Scenario(model=model, images=x, labels=y, observation=_observe(model, x, y, spec))
