"""Priors that run the model forward on the dummy images: the classifier's input features matched to
those the gradient gives away, and the client's task loss.

Each runs one forward pass of its own per dummy batch (vmapped over the Q dummy batches as the
client simulation is, or one after another where the simulation does so), at the first observed
pair's model state in the client's BatchNorm mode; it needs fixed labels (given or recovered).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from fastleak.attacks.priors import Prior, prior
from fastleak.errors import InvalidValueError

if TYPE_CHECKING:
    from fastleak.attacks.problem import Problem


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last ``nn.Linear`` with a bias (its name and module)."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.bias is not None]
    if not found:
        raise InvalidValueError("the features prior needs a model whose last layer is an nn.Linear with a bias")
    return found[-1]


@contextlib.contextmanager
def _train_mode(model: nn.Module, training: bool) -> Iterator[None]:
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


def forward(problem: Problem, x: Tensor) -> tuple[Tensor, Tensor]:
    """The classifier's inputs [Q, B, F] and the logits [Q, B, classes] of every dummy batch of ``x``
    [Q, B, C, H, W], at the first pair's model state of its observation."""
    sim = problem.sims[0]
    model = sim.model
    _, linear = classifier(model)
    seen: list[Tensor] = []
    handle = linear.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))

    def run(params: dict[str, Tensor], buffers: dict[str, Tensor], xq: Tensor) -> tuple[Tensor, Tensor]:
        seen.clear()
        logits = functional_call(model, (params, buffers), (xq,))
        return seen[-1], logits

    try:
        with _train_mode(model, sim.protocol.bn_train):
            if sim.shared_state:
                return vmap(run, in_dims=(None, None, 0), randomness="different")(sim.params, sim.buffers, x)
            buffers = {n: b.clone() for n, b in sim.buffers.items()}  # train-mode BatchNorm updates them
            if sim.vmap_batches and x.shape[0] > 1:
                return vmap(run, randomness="different")(sim.params, buffers, x)
            rows = [run({n: p[q] for n, p in sim.params.items()}, {n: b[q] for n, b in buffers.items()}, x[q])
                    for q in range(x.shape[0])]
            return torch.stack([f for f, _ in rows]), torch.stack([z for _, z in rows])
    finally:
        handle.remove()


def _fixed_labels(problem: Problem, name: str) -> Tensor:
    if problem.hard_labels is None:
        raise InvalidValueError(f"prior {name} needs fixed labels (given or recovered), not labels='optimize'")
    return problem.hard_labels


@prior("features")
class ClassifierFeatures(Prior):
    """The mean squared distance of each dummy image's classifier input to the one the gradient gives
    for its label: the row of the last layer's weight gradient over its bias gradient (exact for a
    label that one image holds alone; breaching's ``features`` regulariser)."""

    def setup(self, problem: Problem) -> None:
        _fixed_labels(problem, self.name)
        name, _ = classifier(problem.sims[0].model)
        names = list(problem.sims[0].names)
        if f"{name}.weight" not in names or f"{name}.bias" not in names:
            raise InvalidValueError(f"prior features: the observation does not share {name}.weight and {name}.bias")
        self._index = names.index(f"{name}.weight"), names.index(f"{name}.bias")

    def target(self, problem: Problem) -> Tensor:
        """The features each dummy image's label asks for [Q, B, F] (0 where its bias gradient is 0)."""
        weight, bias = (problem.targets[0][i] for i in self._index)
        labels = _fixed_labels(problem, self.name)
        rows = torch.gather(weight, 1, labels[..., None].expand(-1, -1, weight.shape[-1]))
        scale = torch.gather(bias, 1, labels)
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        return torch.where(scale[..., None] == 0, torch.zeros_like(rows), rows / safe[..., None])

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        features, _ = forward(problem, x)
        return (features - self.target(problem).to(features.dtype)).pow(2).flatten(1).mean(1)


@prior("task")
class TaskLoss(Prior):
    """The client's cross-entropy of each dummy batch under its labels, averaged over the batch (Wei et
    al. 2020 add the task loss to the gradient distance)."""

    def setup(self, problem: Problem) -> None:
        _fixed_labels(problem, self.name)

    def term(self, x: Tensor, problem: Problem) -> Tensor:
        _, logits = forward(problem, x)
        labels = _fixed_labels(problem, self.name)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape).mean(1)
