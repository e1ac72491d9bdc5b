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

    def __post_init__(self) -> None:
        if not isinstance(self.state, Mapping):
            raise TypeError(f"Pair.state must be a mapping name -> tensor, got {type(self.state).__name__}")
        object.__setattr__(self, "shared", tuple(self.shared))
        if not all(isinstance(t, torch.Tensor) for t in self.shared):
            raise TypeError("Pair.shared must hold tensors only")


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

    def __post_init__(self) -> None:
        if self.kind not in ("gradient", "update"):
            raise ValueError(f"Observation.kind must be 'gradient' or 'update', got {self.kind!r}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"Observation.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        object.__setattr__(self, "pairs", tuple(self.pairs))
        object.__setattr__(self, "param_names", tuple(self.param_names))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if not self.pairs or not all(isinstance(p, Pair) for p in self.pairs):
            raise ValueError("Observation.pairs must be a non-empty sequence of Pair")
        for i, pair in enumerate(self.pairs):
            if len(pair.shared) != len(self.param_names):
                raise ValueError(f"Observation pair {i} shares {len(pair.shared)} tensors but param_names "
                                 f"lists {len(self.param_names)}")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ValueError(f"Observation.num_samples must be a positive int, got {self.num_samples!r}")

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)

    def shared_dict(self, pair: int = 0) -> dict[str, torch.Tensor]:
        """The shared tensors of one pair, keyed by parameter name."""
        return dict(zip(self.param_names, self.pairs[pair].shared))
