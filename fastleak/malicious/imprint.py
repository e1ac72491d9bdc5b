"""The imprint block of "Robbing the Fed" (Fowl et al., ICLR 2022).

``bins = Linear(N, K)``: every row computes the same measurement ``m(x) = w . x`` of the
flattened input (``fastleak.malicious.measurements``) against the bin edges
``t_0 < t_1 < ... < t_K``; bin ``k`` is the interval ``(t_k, t_{k+1}]``. ``readout = Linear(K, N)``
with all weights ``1/K`` maps the rows back to the input's shape, so that the original model runs
after the block, and the loss's gradient with respect to any row's output is the same for one
sample: ``c_i``. Two structures:

* "cumulative" (the paper's): row ``k`` is ``relu(m(x) - t_k)``, active for every sample above
  ``t_k`` (``t_K = inf``). Its gradients are ``sum c_i x_i`` and ``sum c_i`` over those samples, so
  the difference of rows ``k`` and ``k + 1`` over their bias difference is the sample itself when
  it is alone in bin ``k``.
* "sparse" (the hard-tanh rows of breaching's ``SparseImprintBlock``): row ``k`` is
  ``min(relu(m(x) - t_k), t_{k+1} - t_k)``, which passes a gradient only for the samples inside
  bin ``k``, so each row is a bin by itself and needs no differencing.

Through FedAvg's local steps, only a bin's own samples reach a sparse row, so a sample alone in
its bin stays alone as long as the rows' small updates move no neighbour into its bin (the
rounding of the float32 update is handled by ``fastleak.malicious.rescale``). A cumulative row
also carries every sample above it; after the first step the readout's columns, and with them the
samples' coefficients, differ from row to row, so neighbouring rows no longer cancel and the
recovered inputs are mixed with the samples above (measured in ``benchmarks/bench_imprint.py``).

``fastleak.ops.imprint_recover`` turns either into one candidate input per bin.

The edges are fitted on the server's own public data: the inner edges ``t_1 .. t_{K-1}`` are the
``k/K`` quantiles of its measurements, so each bin holds a share ``1/K`` of the public data; the
outer edges lie a full measurement range beyond it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fastleak._checks import positive_int
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.malicious import measurements
from fastleak.malicious.model import MaliciousModel, attach, check_public, input_shape

STRUCTURES = ("cumulative", "sparse")


@dataclass(frozen=True)
class ImprintConfig:
    """The server's choices: ``bins`` (K >= 2 rows), the ``measurement`` (a name in
    ``measurements.names()``), its ``seed`` (for random projections) and the ``structure``:
    "cumulative" (ReLU rows, the paper's layout) or "sparse" (hard-tanh rows, one per bin)."""

    bins: int
    measurement: str = "mean"
    seed: int = 0
    structure: str = "cumulative"

    def __post_init__(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise InvalidValueError(f"bins must be an int >= 2 (an imprint layer needs two rows to difference), "
                                    f"got {self.bins!r}")
        measurements.MEASUREMENTS.get(self.measurement)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidTypeError(f"seed must be an int, got {self.seed!r}")
        if self.structure not in STRUCTURES:
            raise InvalidValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")


class ImprintBlock(nn.Module):
    """``x -> readout(act(bins(x.flatten(1))))`` reshaped to ``in_shape`` (see module docs).

    ``edges`` [K + 1] are the bin boundaries: bin k is ``(edges[k], edges[k + 1]]`` (the
    cumulative block's last edge is inf).
    """

    def __init__(self, in_shape: tuple[int, ...], measurement: torch.Tensor, edges: torch.Tensor,
                 structure: str = "cumulative") -> None:
        super().__init__()
        num_features, bins = math.prod(in_shape), len(edges) - 1
        self.in_shape = tuple(in_shape)
        self.cumulative = structure == "cumulative"
        self.bins = nn.Linear(num_features, bins)
        self.readout = nn.Linear(bins, num_features)
        with torch.no_grad():
            self.bins.weight.copy_(measurement.to(torch.float32).expand(bins, num_features))
            self.bins.bias.copy_(-edges[:-1].to(torch.float32))
            self.readout.weight.fill_(1.0 / bins)
            self.readout.bias.zero_()
        # The sparse rows saturate at their bin's width (a hard-tanh with a per-row top).
        self.register_buffer("widths", (edges[1:] - edges[:-1]).to(torch.float32), persistent=False)
        # The server's secret, kept in float64 for the checks of the recovery.
        self.register_buffer("measurement", measurement.to(torch.float64).clone(), persistent=False)
        self.register_buffer("edges", edges.to(torch.float64).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.bins(x.flatten(1))
        h = torch.relu(pre) if self.cumulative else torch.minimum(torch.relu(pre), self.widths)
        return self.readout(h).unflatten(1, self.in_shape)

    def bin_of(self, x: torch.Tensor) -> torch.Tensor:
        """The bin index of each sample of ``x`` [n, *in_shape] from its measurement (-1: in no bin)."""
        m = x.flatten(1).to(self.measurement) @ self.measurement
        index = torch.searchsorted(self.edges, m, side="left") - 1
        return torch.where((index >= 0) & (index < len(self.edges) - 1), index, -1)

    def bin_intervals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper measurement bounds of every bin, [K] each."""
        return self.edges[:-1], self.edges[1:]


def fit_edges(public: torch.Tensor, measurement: torch.Tensor, bins: int, structure: str = "cumulative") -> torch.Tensor:
    """Bin edges [bins + 1] (float64) at the quantiles of the measurement on ``public`` [M, ...]: the
    inner edges at the k/bins quantiles (tied quantiles are moved a thousandth of a bin apart), the
    outer ones a full measurement range beyond the public data (the cumulative block's upper edge
    is inf: its last row has no upper bound)."""
    positive_int(bins, "bins")
    m = public.flatten(1).to(torch.float64) @ measurement.to(public.device)
    lo, hi = m.min(), m.max()
    if not bool(hi > lo):
        raise InvalidValueError("public must hold samples with at least two different measurements to fit bins, "
                                f"got {len(m)} sample(s) all measuring {lo.item():.6g}")
    quantiles = torch.quantile(m, torch.arange(1, bins, dtype=torch.float64, device=m.device) / bins).cpu()
    # Public samples that measure the same (e.g. identical images) make quantiles tie: keep the
    # edges strictly increasing, a tiny bin apart, so that every bin has a width.
    gap = float(hi - lo) / (1000 * bins)
    for k in range(1, len(quantiles)):
        quantiles[k] = max(quantiles[k], quantiles[k - 1] + gap)
    top = torch.tensor(math.inf, dtype=torch.float64) if structure == "cumulative" else (hi + (hi - lo)).cpu()
    return torch.cat([(lo - (hi - lo)).reshape(1).cpu(), quantiles, top.reshape(1)])


def imprint_model(model: nn.Module, public: torch.Tensor, config: ImprintConfig, *,
                  in_shape: tuple[int, ...] | None = None) -> MaliciousModel:
    """``model`` with an imprint block in front, its bins fitted on the server's ``public`` data.

    ``model`` is any classifier (a copy is taken); ``in_shape`` defaults to the shape a
    ``fastleak.models.build`` model was built for.
    """
    if not isinstance(config, ImprintConfig):
        raise InvalidTypeError(f"config must be an ImprintConfig, got {type(config).__name__}")
    shape = input_shape(model, in_shape)
    check_public(public, shape)
    weights = measurements.weights(config.measurement, math.prod(shape), config.seed)
    edges = fit_edges(public, weights, config.bins, config.structure)
    block = ImprintBlock(shape, weights, edges, config.structure)
    param = next(model.parameters(), None)
    if param is not None:
        block = block.to(device=param.device)
    return attach(block, model, shape)
