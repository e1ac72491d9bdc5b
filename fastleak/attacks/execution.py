"""How an attack runs and what it records, apart from what it computes (``AttackConfig``)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fastleak._checks import known_fields, positive_int, typed_fields


@dataclass(frozen=True)
class Execution:
    """Settings that change speed and bookkeeping, never the result beyond float rounding.

    device: where the attack runs (None: the model's device).
    cuda_graph: on a GPU, replay each Adam step's objective and gradients as one CUDA graph
    (``fastleak.attacks.graphs``); steps run eagerly where the capture fails or disagrees.
    lean_conv: simulate the model's ``nn.Conv2d`` layers with ``fastleak.attacks.lean_conv``,
    whose double backward skips a weight term the attack never uses (same values), where the
    simulation replicates the parameters (BatchNorm models, several model states).
    record_every: steps between the objective values kept in ``AttackResult.history`` (and passed
    to the callback); checkpoint_every: steps between checkpoints of a run given a checkpoint path.
    """

    device: str | None = None
    cuda_graph: bool = True
    lean_conv: bool = True
    record_every: int = 10
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        typed_fields(self.as_dict(), Execution, "attack")
        for name in ("record_every", "checkpoint_every"):
            positive_int(getattr(self, name), f"attack option {name}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Execution":
        known_fields(changes, Execution, "execution")
        return dataclasses.replace(self, **changes)

    def device_for(self, model: torch.nn.Module) -> torch.device:
        return torch.device(self.device) if self.device is not None else next(model.parameters()).device


FIELDS = tuple(f.name for f in dataclasses.fields(Execution))


def split_execution(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the attack options, the execution options) of a mapping that mixes both."""
    return ({k: v for k, v in options.items() if k not in FIELDS},
            {k: v for k, v in options.items() if k in FIELDS})
