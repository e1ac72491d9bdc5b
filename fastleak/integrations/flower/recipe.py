"""The clients' local training protocol, known to the server, and a client loop that follows it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import LOSSES, client_loss, local_schedule, validate_batch
from fastleak._checks import positive_int
from fastleak.federated.losses import check_reduction


@dataclass(frozen=True)
class TrainingRecipe:
    """How every client trains in a round: plain SGD ``W <- W - lr * grad`` (no momentum, no weight
    decay) for ``epochs * local_steps`` steps on consecutive mini-batches of ``batch_size`` samples
    (None: the whole local dataset) in sample order, as ``fastleak.federated.local_schedule``
    describes; the ``loss`` (``fastleak.federated.LOSSES``) with ``reduction`` over each mini-batch;
    BatchNorm in train mode (batch statistics) when ``bn_train``.

    This is the protocol an auditing server assumes; it fills the local-training fields of the
    recorded ``Observation`` s.
    """

    local_steps: int = 1
    lr: float = 0.01
    batch_size: int | None = None
    epochs: int = 1
    loss: str = "ce"
    reduction: str = "mean"
    bn_train: bool = True

    def __post_init__(self) -> None:
        positive_int(self.local_steps, "TrainingRecipe.local_steps")
        positive_int(self.epochs, "TrainingRecipe.epochs")
        if self.batch_size is not None:
            positive_int(self.batch_size, "TrainingRecipe.batch_size")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) \
                or self.lr <= 0:
            raise InvalidValueError(f"TrainingRecipe.lr must be a positive finite number, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        LOSSES.get(self.loss)
        check_reduction(self.reduction)
        if not isinstance(self.bn_train, bool):
            raise InvalidTypeError(f"TrainingRecipe.bn_train must be a bool, got {self.bn_train!r}")

    def schedule(self, num_samples: int) -> tuple[tuple[int, int], ...]:
        """The (start, stop) sample range of every local step for a client with ``num_samples`` samples."""
        return local_schedule(num_samples, self.local_steps, self.batch_size, self.epochs)

    def observation_fields(self) -> dict[str, Any]:
        """The ``Observation`` fields this recipe determines."""
        return {"loss": self.loss, "reduction": self.reduction, "bn_train": self.bn_train,
                "local_steps": self.local_steps, "local_lr": self.lr, "local_batch_size": self.batch_size,
                "local_epochs": self.epochs}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_locally(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: TrainingRecipe) -> None:
    """Train ``model`` in place on the private batch ``(x, y)`` exactly as ``recipe`` prescribes,
    with ``torch.optim.SGD`` (BatchNorm running statistics are updated as in any training loop)."""
    if not isinstance(recipe, TrainingRecipe):
        raise InvalidTypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
    validate_batch(model, x, y)
    schedule = recipe.schedule(x.shape[0])
    model.train(recipe.bn_train)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    for start, stop in schedule:
        optimizer.zero_grad(set_to_none=True)
        client_loss(model(x[start:stop]), y[start:stop], recipe.loss, recipe.reduction).backward()
        optimizer.step()
