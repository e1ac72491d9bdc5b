"""What an honest-but-curious server observes from one client for one private batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import torch

Kind = Literal["gradient", "update"]
Reduction = Literal["mean", "sum"]


@dataclass(frozen=True)
class Pair:
    """One model state and the quantity the client shared when starting from it.

    ``state`` is the full ``state_dict`` (parameters and buffers) the client received.
    ``shared`` holds one tensor per trainable parameter, in ``Observation.param_names``
    order: the parameter gradients (kind "gradient") or W_after - W_before (kind "update").
    """

    state: Mapping[str, torch.Tensor]
    shared: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Observation:
    """Everything the server sees for one client batch: one or more pairs of the SAME batch.

    Fields describing the client's computation (loss, reduction, BatchNorm mode, local
    training schedule) are public protocol knowledge in FL and are what an attack must
    simulate to match the shared quantities.
    """

    kind: Kind
    pairs: tuple[Pair, ...]
    param_names: tuple[str, ...]
    num_samples: int
    reduction: Reduction = "mean"
    loss: str = "ce"
    bn_train: bool = False
    local_steps: int = 1
    local_lr: float | None = None
    local_batch_size: int | None = None
    local_epochs: int = 1
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)
