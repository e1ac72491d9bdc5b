"""Result and configuration types of label recovery."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastleak.errors import InvalidValueError


@dataclass(frozen=True)
class LabelConfig:
    """Knobs of the methods that simulate the client's model on inputs of their own.

    ``dummies``: the attacker's own inputs (e.g. public images of the domain) for the
    softmax/feature statistics of ``geng``, ``geng_bias`` and ``geng_shift``; when None,
    ``num_dummies`` random inputs of ``Observation.input_shape`` are drawn with ``dummy_seed``
    from ``dummy_distribution``: "pink" (noise with the 1/f spectrum of natural images, pixels
    in [0, 1] like fastleak.data images), "uniform" (U(0, 1) pixels) or "normal" (N(0, 1), for
    normalised inputs). Their scale should match the client's preprocessing: the feature sums
    enter Geng's estimate. The mean softmax over the dummies is a Monte Carlo estimate that is
    multiplied by the batch size, so large batches need many dummies.
    ``trajectory_points``: model states, evenly spaced between the start and the end of a
    local-training run, at which statistics of an update are averaged; None picks
    ``min(local_steps, 5)`` for updates (gradients always use their one state).
    ``combine``: how the count estimates of an observation's pairs are merged: "median"
    (element-wise; robust to a pair whose model state gives a poor estimate) or "mean".
    """

    num_dummies: int = 256
    dummy_seed: int = 0
    dummies: torch.Tensor | None = None
    dummy_distribution: str = "pink"
    trajectory_points: int | None = None
    combine: str = "median"

    def __post_init__(self) -> None:
        if self.combine not in ("median", "mean"):
            raise InvalidValueError(f"LabelConfig.combine must be 'median' or 'mean', got {self.combine!r}")
        if self.num_dummies < 1:
            raise InvalidValueError(f"LabelConfig.num_dummies must be >= 1, got {self.num_dummies}")
        if self.trajectory_points is not None and self.trajectory_points < 1:
            raise InvalidValueError(f"LabelConfig.trajectory_points must be >= 1 or None, got {self.trajectory_points}")
        if self.dummies is not None and (not isinstance(self.dummies, torch.Tensor) or self.dummies.dim() < 2):
            raise InvalidValueError("LabelConfig.dummies must be a tensor [K, *input_shape] or None")


@dataclass(frozen=True)
class LabelCounts:
    """Recovered label multiset of one observation.

    ``estimates``: float count per class before rounding (for the greedy sign rules these
    are already whole counts); ``counts``: the rounded counts, non-negative and summing to
    ``num_samples``; ``method``: the method that produced them; ``requested``: what the
    caller asked for (``"auto"`` or the method itself).
    """

    estimates: torch.Tensor
    counts: torch.Tensor
    method: str
    requested: str
    num_samples: int

    @property
    def labels(self) -> torch.Tensor:
        """The recovered labels, sorted, one per sample."""
        classes = torch.arange(self.counts.numel(), device=self.counts.device)
        return torch.repeat_interleave(classes, self.counts)
