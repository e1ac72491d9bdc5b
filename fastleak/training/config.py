"""The complete, serialisable description of one training run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from fastleak._checks import known_fields, positive_int
from fastleak.errors import InvalidValueError

# Fields that may change when a run is resumed: it can be extended, and save other rounds.
RESUMABLE_CHANGES = ("rounds", "save_rounds")


def _number(value: Any, name: str, valid: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        raise InvalidValueError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Simulated FedAvg on the train split of a dataset, evaluated on its test split after every round.

    Every round, each of ``clients`` clients starts from the global model, takes ``local_steps``
    SGD steps (learning rate ``lr * lr_decay**(round - 1)``, ``momentum``) on mini-batches of
    ``local_batch_size`` images of its own shard, and the server averages the clients' states weighted by their shard sizes (BatchNorm
    running statistics included). ``clients=1`` is plain centralised SGD: one client holds the
    whole train split, and a round is ``local_steps`` SGD steps.

    shift: translate every training image by a random (dy, dx) in [-shift, shift]^2 pixels,
    zero-filled (data augmentation; 0: none).
    The defaults train the DLG LeNet (sigmoid) on the shipped MNIST digits to about 96% held-out
    accuracy; the ConvNet wants a smaller ``lr`` (0.05) and a few rounds.
    partition: "iid" (shuffled, equal shards) or "dirichlet" (per class, shares drawn from
    Dirichlet(``alpha``): smaller alpha, more skewed clients).
    save_rounds: the rounds whose global state is written (round 0 = the initial model);
    None: every round.
    eval_samples: evaluate on this many test images (a fixed, seeded subset); None: all of them.
    """

    model: str = "lenet"
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    data_root: str | None = None
    rounds: int = 100
    clients: int = 5
    local_steps: int = 40
    local_batch_size: int = 32
    lr: float = 0.5
    lr_decay: float = 1.0
    momentum: float = 0.0
    shift: int = 1
    partition: str = "iid"
    alpha: float = 0.5
    save_rounds: tuple[int, ...] | None = None
    eval_samples: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("rounds", "clients", "local_steps", "local_batch_size"):
            positive_int(getattr(self, name), name)
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise InvalidValueError(f"shift must be a non-negative int (pixels), got {self.shift!r}")
        if self.eval_samples is not None:
            positive_int(self.eval_samples, "eval_samples")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidValueError(f"seed must be a non-negative int, got {self.seed!r}")
        _number(self.lr, "lr", lambda v: v > 0, "a positive number")
        _number(self.lr_decay, "lr_decay (the learning rate's factor per round)", lambda v: 0 < v <= 1,
                "in (0, 1]")
        _number(self.momentum, "momentum", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _number(self.alpha, "alpha (the Dirichlet concentration)", lambda v: v > 0, "positive")
        if self.save_rounds is not None:
            rounds = tuple(self.save_rounds)
            if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rounds):
                raise InvalidValueError(f"save_rounds must hold non-negative round numbers, got {self.save_rounds!r}")
            object.__setattr__(self, "save_rounds", tuple(sorted(set(rounds))))
        if not isinstance(self.model_options, dict):
            raise InvalidValueError(f"model_options must be a dict of fastleak.models.build options, "
                                    f"got {self.model_options!r}")

    def lr_of(self, round_number: int) -> float:
        return self.lr * self.lr_decay ** (round_number - 1)

    def saves(self, round_number: int) -> bool:
        return self.save_rounds is None or round_number in self.save_rounds

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["save_rounds"] = None if self.save_rounds is None else list(self.save_rounds)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known_fields(values, cls, "training")
        values = dict(values)
        if values.get("save_rounds") is not None:
            values["save_rounds"] = tuple(values["save_rounds"])
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.as_dict(), **changes})

    def differences(self, other: "TrainConfig") -> list[str]:
        """The fields that differ from ``other``, other than those a resumed run may change."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k]]
