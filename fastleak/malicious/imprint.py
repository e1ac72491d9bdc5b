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

``fastleak.ops.imprint_certify`` turns either into one candidate input per bin.

The edges are fitted on the server's own public data: the inner edges ``t_1 .. t_{K-1}`` are the
``k/K`` quantiles of its measurements, so each bin holds a share ``1/K`` of the public data; the
outer edges lie a full measurement range beyond it (QBI's quantile biases, Nowak et al. 2024).

Several measurements (``ImprintConfig.measurements``, sparse rows): the K rows are split into M
groups, each with ``K / M`` bins of its own direction (e.g. the public data's principal
directions, ``measurements``). Every sample then sits in one bin of every group; one alone in
any of them is read there and subtracted from its bins in the others, which can leave another
sample alone (peeling, ``fastleak.malicious.recovery``). With the same K rows, three such groups
let a FedSGD server read nearly every sample where one group reads its singletons
(``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import copy
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
    ``measurements.names()``), how many ``measurements`` (directions, each with ``bins /
    measurements`` bins of its own; sparse bins only), its ``seed`` (for random projections), the
    ``structure``: "cumulative" (ReLU rows, the paper's layout) or "sparse" (hard-tanh rows, one
    per bin), and ``clients``: copies of all those bins, one per client (``separate``), for a
    server that separates the clients of a secure aggregation (``clients * bins`` rows)."""

    bins: int
    measurement: str = "mean"
    seed: int = 0
    structure: str = "cumulative"
    measurements: int = 1
    clients: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise InvalidValueError(f"bins must be an int >= 2 (an imprint layer needs two rows to difference), "
                                    f"got {self.bins!r}")
        measurements.MEASUREMENTS.get(self.measurement)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidTypeError(f"seed must be an int, got {self.seed!r}")
        if self.structure not in STRUCTURES:
            raise InvalidValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        count = self.measurements
        if isinstance(count, bool) or not isinstance(count, int) or count < 1 or self.bins % count \
                or self.bins // count < 2:
            raise InvalidValueError(f"measurements must be a positive int dividing bins={self.bins} into groups of at "
                                    f"least 2 bins, got {count!r}")
        if isinstance(self.clients, bool) or not isinstance(self.clients, int) or self.clients < 1:
            raise InvalidValueError(f"clients must be a positive int (copies of the bins, one per client), got "
                                    f"{self.clients!r}")
        if (count > 1 or self.clients > 1) and self.structure != "sparse":
            raise InvalidValueError("several measurements or clients need structure='sparse' (each row a bin of its "
                                    f"own), got structure={self.structure!r}")


class ImprintBlock(nn.Module):
    """``x -> readout(act(bins(x.flatten(1))))`` reshaped to ``in_shape`` (see module docs).

    ``measurement`` is one direction [N] or several [M, N]; ``edges`` [K + 1] (or [M, K / M + 1],
    one row per direction) are the bin boundaries: bin k is ``(edges[k], edges[k + 1]]`` (the
    cumulative block's last edge is inf). With several directions, rows ``g K / M`` to
    ``(g + 1) K / M - 1`` are direction g's bins. ``copies`` > 1: the directions come in that many
    consecutive copies, one per client of a separated secure aggregation (``separate``).
    """

    def __init__(self, in_shape: tuple[int, ...], measurement: torch.Tensor, edges: torch.Tensor,
                 structure: str = "cumulative", copies: int = 1) -> None:
        super().__init__()
        self.copies = copies
        directions = measurement.reshape(-1, measurement.shape[-1])
        group_edges = edges.reshape(len(directions), -1)
        num_features, per_group = math.prod(in_shape), group_edges.shape[1] - 1
        bins = per_group * len(directions)
        self.in_shape = tuple(in_shape)
        self.cumulative = structure == "cumulative"
        self.bins = nn.Linear(num_features, bins)
        self.readout = nn.Linear(bins, num_features)
        with torch.no_grad():
            self.bins.weight.copy_(directions.to(torch.float32).repeat_interleave(per_group, 0))
            self.bins.bias.copy_(-group_edges[:, :-1].reshape(-1).to(torch.float32))
            self.readout.weight.fill_(1.0 / bins)
            self.readout.bias.zero_()
        # The sparse rows saturate at their bin's width (a hard-tanh with a per-row top).
        self.register_buffer("widths", (group_edges[:, 1:] - group_edges[:, :-1]).reshape(-1).to(torch.float32),
                             persistent=False)
        # The server's secret, kept in float64 for the checks of the recovery.
        self.register_buffer("measurement", measurement.to(torch.float64).clone(), persistent=False)
        self.register_buffer("edges", edges.to(torch.float64).clone(), persistent=False)

    @property
    def directions(self) -> torch.Tensor:
        """The measured directions [M, N]."""
        return self.measurement.reshape(-1, self.measurement.shape[-1])

    @property
    def group_edges(self) -> torch.Tensor:
        """The edges of each direction's bins [M, K / M + 1]."""
        return self.edges.reshape(len(self.directions), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.bins(x.flatten(1))
        h = torch.relu(pre) if self.cumulative else torch.minimum(torch.relu(pre), self.widths)
        return self.readout(h).unflatten(1, self.in_shape)

    def bin_of(self, x: torch.Tensor) -> torch.Tensor:
        """The bin index of each sample of ``x`` [n, *in_shape] from its measurement (-1: in no bin):
        [n] for one direction, [n, M] (indices among all K bins) for several."""
        m = x.flatten(1).to(self.measurement) @ self.directions.T            # [n, M]
        edges = self.group_edges
        per_group = edges.shape[1] - 1
        index = torch.stack([torch.searchsorted(edges[g], m[:, g].contiguous(), side="left") - 1
                             for g in range(len(edges))], 1)
        index = torch.where((index >= 0) & (index < per_group), index + per_group * torch.arange(len(edges),
                            device=index.device), -1)
        return index[:, 0] if self.measurement.dim() == 1 else index

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """Which bins each sample of ``x`` [n, *in_shape] reaches: bool [n, K]. Sparse rows as the client's
        forward pass gates them (float32, the layer itself: a gradient passes where ``0 < pre < width``);
        a cumulative block's bins (row differences) from the measurement."""
        if not self.cumulative:
            # every row of a group holds the group's direction: one dot product per group and sample,
            # plus each row's bias, as the client's float32 layer adds them
            weight = self.bins.weight.detach()
            per_group = self.bins.out_features // len(self.directions)
            with torch.no_grad():
                measured = x.flatten(1).to(weight) @ weight[::per_group].T           # [n, M]
                pre = measured.repeat_interleave(per_group, 1) + self.bins.bias.detach()
            return (pre > 0) & (pre < self.widths)
        index = self.bin_of(x).reshape(len(x), -1)
        out = torch.zeros(len(x), self.bins.out_features + 1, dtype=torch.bool, device=index.device)
        out.scatter_(1, torch.where(index < 0, self.bins.out_features, index), True)
        return out[:, :-1]

    def bin_intervals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper measurement bounds of every bin, [K] each."""
        edges = self.group_edges
        return edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1)


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
    directions = measurements.directions(config.measurement, math.prod(shape), config.measurements, config.seed,
                                         public)
    per_group = config.bins // config.measurements
    edges = torch.stack([fit_edges(public, d, per_group, config.structure) for d in directions])
    if config.clients > 1:
        directions, edges = directions.repeat(config.clients, 1), edges.repeat(config.clients, 1)
    elif config.measurements == 1:
        directions, edges = directions[0], edges[0]
    block = ImprintBlock(shape, directions, edges, config.structure, config.clients)
    param = next(model.parameters(), None)
    if param is not None:
        block = block.to(device=param.device)
    return attach(block, model, shape)


def separate(model: MaliciousModel) -> list[MaliciousModel]:
    """One model per client for a server that separates the clients of a secure aggregation (in the
    spirit of LOKI, Zhao et al. 2023): the block of ``model`` holds one copy of its bins per client
    (``ImprintConfig.clients``), and client j's model keeps copy j alone, its other rows switched
    off (weights 0, bias -1: never active, no gradient). The sum the aggregation reveals then holds
    every client's samples in its own copy, as if each client had been attacked alone, and each
    recovered input comes with its client (``copy_of`` its bin). ``model`` itself, with every copy,
    is what the server recovers with."""
    if not isinstance(model, MaliciousModel) or not isinstance(model.block, ImprintBlock):
        raise InvalidTypeError(f"model must be a MaliciousModel with an imprint block, got {type(model).__name__}")
    block = model.block
    per_copy = block.bins.out_features // block.copies
    out = []
    for j in range(block.copies):
        own = copy.deepcopy(model)
        off = torch.ones(block.bins.out_features, dtype=torch.bool)
        off[j * per_copy:(j + 1) * per_copy] = False
        with torch.no_grad():
            own.block.bins.weight[off] = 0
            own.block.bins.bias[off] = -1
        out.append(own)
    return out


def copy_of(block: nn.Module, bins: torch.Tensor) -> torch.Tensor:
    """The copy (client, for a separated block) of each bin index in ``bins``; zeros for one copy."""
    return torch.as_tensor(bins) // (block.bins.out_features // getattr(block, "copies", 1))
