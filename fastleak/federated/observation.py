"""What an honest-but-curious server observes from one client for one private batch."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import nn

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.models import final_linear, spec_of

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
            raise InvalidTypeError(f"Pair.state must be a mapping name -> tensor, got {type(self.state).__name__}")
        object.__setattr__(self, "shared", tuple(self.shared))
        if not all(isinstance(t, torch.Tensor) for t in self.shared):
            raise InvalidTypeError("Pair.shared must hold tensors only")


@dataclass(frozen=True)
class Protocol:
    """What every client of a round computes, public knowledge in FL: the kind of quantity shared,
    the loss and its reduction, the BatchNorm mode, the local training schedule, the trainable
    parameters shared, and the input and output sizes. An attack simulates it; observations
    attacked or aggregated together must follow one (``same_protocol``)."""

    kind: Kind
    param_names: tuple[str, ...]
    reduction: Reduction
    loss: str
    bn_train: bool
    local_steps: int
    local_lr: float | None
    local_batch_size: int | None
    local_epochs: int
    input_shape: tuple[int, ...] | None
    num_classes: int | None


    def schedule(self, num_samples: int) -> tuple[tuple[int, int], ...]:
        """The (start, stop) sample range of each local SGD step on a batch of ``num_samples``."""
        from fastleak.federated.client import local_schedule

        return local_schedule(num_samples, self.local_steps, self.local_batch_size, self.local_epochs)


PROTOCOL_FIELDS = tuple(f.name for f in dataclasses.fields(Protocol))


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
            raise InvalidValueError(f"Observation.kind must be 'gradient' or 'update', got {self.kind!r}")
        if self.reduction not in ("mean", "sum"):
            raise InvalidValueError(f"Observation.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        object.__setattr__(self, "pairs", tuple(self.pairs))
        object.__setattr__(self, "param_names", tuple(self.param_names))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if not self.pairs or not all(isinstance(p, Pair) for p in self.pairs):
            raise InvalidValueError("Observation.pairs must be a non-empty sequence of Pair")
        for i, pair in enumerate(self.pairs):
            if len(pair.shared) != len(self.param_names):
                raise InvalidValueError(f"Observation pair {i} shares {len(pair.shared)} tensors but param_names "
                                        f"lists {len(self.param_names)}")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise InvalidValueError(f"Observation.num_samples must be a positive int, got {self.num_samples!r}")

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)

    @property
    def protocol(self) -> Protocol:
        return Protocol(**{name: getattr(self, name) for name in PROTOCOL_FIELDS})

    def shared_dict(self, pair: int = 0) -> dict[str, torch.Tensor]:
        """The shared tensors of one pair, keyed by parameter name."""
        return dict(zip(self.param_names, self.pairs[pair].shared))

    def check_against(self, model: nn.Module, where: str = "observation") -> None:
        """Refuse an observation that does not fit ``model``, naming ``where`` and what was expected.

        ``param_names`` must be the model's trainable parameters in their order; every shared tensor
        must have its parameter's shape and finite values; every pair's state must hold the model's
        ``state_dict`` entries, with their shapes, and finite values.
        """
        if not isinstance(model, nn.Module):
            raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if tuple(params) != self.param_names:
            missing = [n for n in params if n not in self.param_names]
            extra = [n for n in self.param_names if n not in params]
            raise InvalidValueError(
                f"{where}.param_names does not match the model's trainable parameters: expected their "
                f"{len(params)} names in model order; missing {missing[:5]}, unexpected {extra[:5]}"
                + ("" if missing or extra else " (different order)"))
        model_state = model.state_dict()
        for i, pair in enumerate(self.pairs):
            for name, t in zip(self.param_names, pair.shared):
                _check_tensor(t, params[name], f"{where}.pairs[{i}].shared[{name!r}]")
            if set(pair.state) != set(model_state):
                missing = sorted(set(model_state) - set(pair.state))
                extra = sorted(set(pair.state) - set(model_state))
                raise InvalidValueError(f"{where}.pairs[{i}].state does not match the model's state_dict: "
                                        f"missing {missing[:5]}, unexpected {extra[:5]}")
            for name, t in pair.state.items():
                _check_tensor(t, model_state[name], f"{where}.pairs[{i}].state[{name!r}]")

    def input_shape_for(self, model: nn.Module) -> tuple[int, ...]:
        """The per-sample input shape: the recorded ``input_shape``, else the fastleak model's."""
        if self.input_shape is not None:
            return self.input_shape
        spec = spec_of(model)
        if spec is None:
            raise InvalidValueError("observation.input_shape is None and the model is not a fastleak model, "
                                    "so the input shape is unknown; set Observation.input_shape")
        return tuple(spec.in_shape)

    def num_classes_for(self, model: nn.Module) -> int:
        """The number of classes: the recorded ``num_classes``, else the outputs of the model's final nn.Linear."""
        if self.num_classes is not None:
            return int(self.num_classes)
        return final_linear(model).out_features

    def to(self, device: torch.device | str) -> "Observation":
        """The observation with every state and shared tensor on ``device``."""
        pairs = tuple(Pair(state={k: v.to(device) for k, v in p.state.items()},
                           shared=tuple(t.to(device) for t in p.shared)) for p in self.pairs)
        return dataclasses.replace(self, pairs=pairs)


def _check_tensor(tensor: torch.Tensor, reference: torch.Tensor, where: str) -> None:
    if tensor.shape != reference.shape:
        raise InvalidValueError(f"{where} has shape {tuple(tensor.shape)}, expected the model's "
                                f"{tuple(reference.shape)}")
    if not all_finite(tensor):
        raise InvalidValueError(f"{where} contains NaN or inf; expected finite values")


def same_protocol(observations: Sequence[Observation], why: str, also: Sequence[str] = ()) -> None:
    """Refuse observations whose ``Protocol`` (and the fields ``also``) differ from the first's, naming the
    field and ``why`` they must agree."""
    first = observations[0]
    for i, obs in enumerate(observations[1:], start=1):
        for name in PROTOCOL_FIELDS + tuple(also):
            if getattr(obs, name) != getattr(first, name):
                raise InvalidValueError(f"observations[{i}].{name} = {getattr(obs, name)!r} differs from "
                                        f"observations[0] ({getattr(first, name)!r}); {why}")


def observation_name(i: int, count: int) -> str:
    """How errors name observation ``i`` of ``count``: "observation" alone, else "observations[i]"."""
    return "observation" if count == 1 else f"observations[{i}]"


def check_observations(observations: Sequence[Any], model: nn.Module, needs: str,
                       also: Sequence[str] = ()) -> None:
    """Each of ``observations`` is an ``Observation`` that fits ``model`` (``Observation.check_against``),
    and all follow one protocol (``same_protocol`` with the fields ``also``); ``needs`` names the
    caller in the error ("attack_many needs observations of one protocol ...")."""
    for i, obs in enumerate(observations):
        where = observation_name(i, len(observations))
        if not isinstance(obs, Observation):
            raise InvalidTypeError(f"{where} must be a fastleak Observation, got {type(obs).__name__}")
        obs.check_against(model, where)
    same_protocol(observations, f"{needs} needs observations of one protocol and batch shape", also=also)
