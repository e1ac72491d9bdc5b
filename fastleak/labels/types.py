"""Result and configuration types of label recovery."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fastleak.errors import InvalidValueError

if TYPE_CHECKING:
    from fastleak.labels.public import PublicData


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

    The count posterior (methods ``posterior`` and ``presence_prior``, and ``auto``):
    ``public``: the server's labelled public data (``PublicData``; the ``public=`` argument of
    ``counts`` sets it); ``clients``: the label distributions the server expects of its clients
    ("iid", "dirichlet:A", "shards"; see ``public.draw_counts``), from which public batches are
    simulated in turn; ``prior``: "clients" (an equal mixture of those distributions), "public"
    (multinomial on the class frequencies), "uniform" (multinomial on equal frequencies) or
    "dirichlet:A" (Dirichlet-multinomial); the frequencies are the public data's, equal ones
    without public data; ``simulations``: public batches simulated per model state, protocol and
    batch size, to fit the noise model and to score the methods ``auto`` chooses from;
    ``level``: the probability mass of the reported per-class intervals; ``chains``/``sweeps``: the
    sampler's parallel chains and pairwise-Gibbs sweeps (one sweep = C steps).
    """

    num_dummies: int = 256
    dummy_seed: int = 0
    dummies: torch.Tensor | None = None
    dummy_distribution: str = "pink"
    trajectory_points: int | None = None
    combine: str = "median"
    public: "PublicData | None" = None
    prior: str = "clients"
    clients: tuple[str, ...] = ("iid", "dirichlet:0.5", "shards")
    simulations: int = 32
    level: float = 0.9
    chains: int = 16
    sweeps: int = 40

    def __post_init__(self) -> None:
        from fastleak.labels.posterior import make_prior
        from fastleak.labels.public import PublicData, check_clients

        if self.combine not in ("median", "mean"):
            raise InvalidValueError(f"LabelConfig.combine must be 'median' or 'mean', got {self.combine!r}")
        if self.public is not None and not isinstance(self.public, PublicData):
            raise InvalidValueError("LabelConfig.public must be a PublicData or None; counts(..., public=(x, y)) "
                                    "accepts a pair")
        object.__setattr__(self, "clients", tuple(self.clients))
        if not self.clients:
            raise InvalidValueError("LabelConfig.clients must name at least one client label distribution")
        check_clients(self.clients)
        make_prior(self.prior, torch.ones(2), self.clients)
        for name in ("simulations", "chains", "sweeps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"LabelConfig.{name} must be a positive int, got {value!r}")
        if not 0 < self.level < 1:
            raise InvalidValueError(f"LabelConfig.level must be in (0, 1), got {self.level!r}")
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
    are already whole counts; for the posterior its mean); ``counts``: the rounded counts (for the
    posterior its MAP), non-negative and summing to ``num_samples``; ``method``: the method that
    produced them; ``requested``: what the caller asked for (``"auto"`` or the method itself).

    Uncertainty (None where the method has none): ``interval`` [C, 2], per class a range that holds
    the true count with probability ``level``; ``probability`` [C], the probability that the
    reported count is exact; ``marginals`` [C, B + 1], P(n_c = m) (posterior methods only);
    ``uncertainty``: where they come from: "posterior" (the count posterior) or "simulation" (the
    method's errors on public batches simulated at the same model state).
    """

    estimates: torch.Tensor
    counts: torch.Tensor
    method: str
    requested: str
    num_samples: int
    interval: torch.Tensor | None = None
    probability: torch.Tensor | None = None
    marginals: torch.Tensor | None = None
    level: float = 0.9
    uncertainty: str | None = None

    @property
    def labels(self) -> torch.Tensor:
        """The recovered labels, sorted, one per sample."""
        classes = torch.arange(self.counts.numel(), device=self.counts.device)
        return torch.repeat_interleave(classes, self.counts)
