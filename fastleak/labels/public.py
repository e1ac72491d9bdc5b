"""The server's labelled public data, and client batches simulated from it at an observed model state.

The server of an FL deployment usually holds some labelled data of the task (a held-out split, a
public dataset). At the model state a client received, that data shows what a batch with known
labels leaves in the final layer: ``conditional`` turns it into class-conditional statistics, and
``simulate`` runs the client's own protocol (FedSGD, or FedAvg's local steps) on public batches
whose label counts are known, to fit the noise of the count posterior and to score the methods
that ``auto`` chooses from.

``PublicData(images, labels)`` holds the data and a cache of what was computed from it per model
state; pass one object to many calls to compute those statistics once. ``public=(x, y)`` is
accepted wherever a ``PublicData`` is.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import Observation, fedavg, fedsgd

log = logging.getLogger("fastleak.labels")

# Client label distributions that simulated batches are drawn from (LabelConfig.clients).
CLIENT_KINDS = ("iid", "dirichlet", "shards")


@dataclass(frozen=True, eq=False)
class PublicData:
    """Labelled images of the task that the server holds: ``images`` [M, *input_shape] (float, in
    the clients' preprocessing) and ``labels`` [M] (class ids). What is derived from them at a model
    state is cached on the object (``cache``), so one object passed to many calls computes it once."""

    images: torch.Tensor
    labels: torch.Tensor
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            got = f"dtype {x.dtype}, shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidTypeError(f"public images must be a floating-point tensor [M, *input_shape], got {got}")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16,
                                                                                torch.uint8, torch.int8):
            got = f"dtype {y.dtype}, shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise InvalidTypeError(f"public labels must be an integer tensor [M] of class ids, got {got}")
        if len(y) != len(x):
            raise InvalidValueError(f"public has {len(x)} images but {len(y)} labels")
        if len(x) < 2:
            raise InvalidValueError(f"public must hold at least 2 labelled images, got {len(x)}")
        if not all_finite(x):
            raise InvalidValueError("public images contain NaN or inf")
        object.__setattr__(self, "labels", y.long())

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.labels.cpu(), minlength=num_classes)[:num_classes]

    def frequencies(self, num_classes: int) -> torch.Tensor:
        """Class frequencies [C] (float64), smoothed by half an image per class so that no class has
        probability zero."""
        counts = self.class_counts(num_classes).double() + 0.5
        return counts / counts.sum()


def as_public(public: Any, num_classes: int, input_shape: Sequence[int] | None) -> PublicData:
    """``public`` as PublicData, checked against the model's classes and the observations' input shape."""
    if isinstance(public, PublicData):
        data = public
    elif isinstance(public, (tuple, list)) and len(public) == 2:
        data = PublicData(public[0], public[1])
    else:
        raise InvalidTypeError(f"public must be a PublicData or a pair (images, labels), got {type(public).__name__}")
    if input_shape is not None and tuple(data.images.shape[1:]) != tuple(input_shape):
        raise InvalidValueError(f"public images have shape {tuple(data.images.shape[1:])} per sample, but the "
                                f"observations' input_shape is {tuple(input_shape)}")
    lo, hi = int(data.labels.min()), int(data.labels.max())
    if lo < 0 or hi >= num_classes:
        raise InvalidValueError(f"public labels must be class ids in [0, {num_classes}) for this model, got values "
                                f"in [{lo}, {hi}]")
    counts = data.class_counts(num_classes)
    missing = (counts == 0).nonzero().squeeze(1).tolist()
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise InvalidValueError(f"public has no image of {len(missing)} of the model's {num_classes} classes "
                                f"({shown}); the class-conditional statistics need every class")
    return data


def load_public(spec: str, *, root=None, images: int = 1000, size: int | None = None) -> PublicData:
    """``spec`` "NAME[:SPLIT]" (split "train" by default) as PublicData: up to ``images`` images of
    that split of ``fastleak.data`` dataset NAME (read from ``root`` as ``fastleak.data.load`` does,
    resized to ``size``), in a fixed order with their natural labels."""
    from fastleak import data

    name, _, split = spec.partition(":")
    split = split or "train"
    if split not in ("train", "test"):
        raise InvalidValueError(f"public data {spec!r}: the split must be train or test")
    source = data.open_split(name, root=root, split=split)
    return PublicData(*data.load(name, min(len(source.labels), images), seed=0, root=root, split=split, size=size))


def default_public(dataset: str, split: str) -> str:
    """The server's public data by default: the other split of the clients' dataset."""
    return f"{dataset}:{'train' if split == 'test' else 'test'}"


def server_public(given: str | None, dataset: str, split: str, *, num_classes: int,
                  input_shape: Sequence[int] | None, root=None, images: int = 1000) -> tuple[PublicData | None, str]:
    """The server's public data for recovered labels, and a line that says which. ``given``
    "NAME[:SPLIT]" must load and fit the model (``num_classes``, ``input_shape``): its error is
    raised (``DatasetError`` where it cannot be read). "none" is none. None takes the other split of
    ``dataset`` (``default_public``) and leaves it out, saying why, where it cannot be read or does
    not fit (a small split without every class, another image size)."""
    from fastleak import data

    if given == "none":
        return None, "public data: none"
    spec = given or default_public(dataset, split)
    try:
        public = as_public(load_public(spec, root=root, images=images, size=input_shape[-1] if input_shape else None),
                           num_classes, input_shape)
    except (data.DatasetError, ValueError) as exc:
        if given is not None:
            raise
        return None, f"public data: none (the default, {spec}, cannot be used: {str(exc).splitlines()[0]})"
    name, _, part = spec.partition(":")
    return public, f"public data: {public.num_images} images of the {part or 'train'} split of {name}"


def draw_counts(kind: str, num_samples: int, frequencies: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label counts [C] (long) of one simulated client batch of ``num_samples``:

    - ``iid``: a multinomial draw on the public class frequencies;
    - ``dirichlet:A``: class proportions drawn from Dirichlet(A·C·frequencies), then a multinomial
      draw (the non-IID partition of Hsu et al. 2019; A = 0.5 is the usual benchmark);
    - ``shards``: k classes (k uniform in 1..min(C, B), drawn by frequency) sharing the batch
      equally (pathological non-IID, McMahan et al. 2017).
    """
    c = frequencies.numel()
    name, _, arg = kind.partition(":")
    if name == "iid":
        probs = frequencies
    elif name == "dirichlet":
        # torch draws gamma variates from its global generator only; numpy's takes a seed from ``gen``.
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
        shape = (float(arg) * c * frequencies.double()).clamp_min(1e-3).cpu().numpy()
        probs = torch.from_numpy(np.random.default_rng(seed).dirichlet(shape))
    elif name == "shards":
        k = int(torch.randint(1, min(c, num_samples) + 1, (1,), generator=gen))
        classes = torch.multinomial(frequencies, k, replacement=False, generator=gen)
        counts = torch.zeros(c, dtype=torch.long)
        counts[classes] = num_samples // k
        counts[classes[:num_samples % k]] += 1
        return counts
    else:
        raise InvalidValueError(f"client label distribution must be one of {', '.join(CLIENT_KINDS)}, got {kind!r}")
    labels = torch.multinomial(probs.double().clamp_min(0), num_samples, replacement=True, generator=gen)
    return torch.bincount(labels, minlength=c)


def check_clients(kinds: Sequence[str]) -> None:
    for kind in kinds:
        name, _, arg = kind.partition(":")
        if name not in CLIENT_KINDS or (name == "dirichlet") != bool(arg):
            raise InvalidValueError("LabelConfig.clients entries must be 'iid', 'dirichlet:A' or 'shards', got "
                                    f"{kind!r}")
        if name == "dirichlet":
            try:
                ok = float(arg) > 0 and math.isfinite(float(arg))
            except ValueError:
                ok = False
            if not ok:
                raise InvalidValueError(f"LabelConfig.clients: 'dirichlet:A' needs A > 0, got {kind!r}")


def pick_images(data: PublicData, counts: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Public images with the label counts ``counts`` [C]: distinct images of each class while they
    last (drawn at random), then repeats."""
    picks = []
    labels = data.labels.cpu()
    for c, n in enumerate(counts.tolist()):
        if n == 0:
            continue
        members = (labels == c).nonzero().squeeze(1)
        order = members[torch.randperm(len(members), generator=gen)]
        picks.append(order[torch.arange(n) % len(order)])
    index = torch.cat(picks)
    index = index[torch.randperm(len(index), generator=gen)]
    return data.images[index.to(data.images.device)], data.labels[index.to(data.labels.device)]


def protocol_key(obs: Observation) -> tuple:
    """What a simulated client must repeat of the observed one: kind, reduction, loss, BatchNorm
    mode and, for updates, the local schedule and learning rate."""
    if obs.kind == "gradient":
        return ("gradient", obs.reduction, obs.loss, obs.bn_train)
    return ("update", obs.reduction, obs.loss, obs.bn_train, obs.local_steps, obs.local_lr, obs.local_batch_size,
            obs.local_epochs)


def client_copy(model: nn.Module, state: dict[str, torch.Tensor], bn_train: bool) -> nn.Module:
    """A private copy of ``model`` at ``state`` in the client's BatchNorm mode."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone.train(bn_train)


def simulate(model: nn.Module, obs: Observation, pair: int, data: PublicData, num_samples: int,
             counts: torch.Tensor, gen: torch.Generator) -> Observation:
    """The observation a client following ``obs``'s protocol from ``obs.pairs[pair].state`` would
    share for a public batch with label counts ``counts``."""
    clone = client_copy(model, dict(obs.pairs[pair].state), obs.bn_train)
    x, y = pick_images(data, counts, gen)
    param = next(clone.parameters())
    x, y = x.to(param), y.to(param.device)
    if obs.kind == "gradient":
        return fedsgd(clone, x, y, loss=obs.loss, reduction=obs.reduction)
    return fedavg(clone, x, y, local_steps=obs.local_steps, lr=obs.local_lr, batch_size=obs.local_batch_size,
                  epochs=obs.local_epochs, loss=obs.loss, reduction=obs.reduction)
