"""An honest Flower client that follows a ``TrainingRecipe``: the protocol an auditing server assumes.

``client_app(model, batches, recipe)`` gives a ``ClientApp`` whose client on SuperNode
``partition-id`` = k holds the private batch ``batches[k]``. Everything it needs is pickled with
the app, so it runs in Ray's worker processes of ``flwr.simulation.run_simulation``.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import client_loss, validate_batch
from fastleak.integrations.flower.recipe import TrainingRecipe, train_locally
from fastleak.integrations.flower.weights import get_weights, set_weights


class RecipeClient(NumPyClient):
    """Holds ``model`` and one private batch ``(x, y)``; ``fit`` loads the server's weights, trains
    with ``train_locally`` and returns ``get_weights(model)``, ``len(x)`` and ``metrics``."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: TrainingRecipe,
                 metrics: Mapping[str, Any] | None = None) -> None:
        if not isinstance(recipe, TrainingRecipe):
            raise InvalidTypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
        validate_batch(model, x, y)
        recipe.schedule(x.shape[0])
        self.model, self.x, self.y, self.recipe = model, x, y, recipe
        self.metrics = dict(metrics or {})

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_weights(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        set_weights(self.model, parameters)
        train_locally(self.model, self.x, self.y, self.recipe)
        return get_weights(self.model), int(self.x.shape[0]), dict(self.metrics)

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict]:
        set_weights(self.model, parameters)
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.x)
            loss = client_loss(logits, self.y, self.recipe.loss, self.recipe.reduction)
        accuracy = (logits.argmax(1) == self.y).float().mean()
        return float(loss), int(self.x.shape[0]), {"accuracy": float(accuracy)}


def _client_fn(model: nn.Module, batches: tuple[tuple[torch.Tensor, torch.Tensor], ...], recipe: TrainingRecipe,
               torch_threads: int | None, context: Context):
    partition = int(context.node_config["partition-id"])
    if partition >= len(batches):
        raise InvalidValueError(f"SuperNode partition-id {partition} has no batch: client_app was given "
                                f"{len(batches)} batch(es); run the simulation with num_supernodes={len(batches)}")
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    x, y = batches[partition]
    return RecipeClient(copy.deepcopy(model), x, y, recipe, metrics={"partition_id": partition}).to_client()


def client_app(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], recipe: TrainingRecipe, *,
               torch_threads: int | None = 1) -> ClientApp:
    """A ``ClientApp`` of ``RecipeClient`` s: partition k holds ``batches[k]`` and reports
    ``{"partition_id": k}`` as its fit metrics. Each client process uses ``torch_threads``
    intra-op threads (None leaves torch's default)."""
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batches = tuple((x, y) for x, y in batches)
    if not batches:
        raise InvalidValueError("batches must hold one (x, y) batch per client, got none")
    if not isinstance(recipe, TrainingRecipe):
        raise InvalidTypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
    for k, (x, y) in enumerate(batches):
        try:
            validate_batch(model, x, y)
            recipe.schedule(x.shape[0])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"batches[{k}]: {exc}") from None
    return ClientApp(client_fn=functools.partial(_client_fn, model, batches, recipe, torch_threads))
