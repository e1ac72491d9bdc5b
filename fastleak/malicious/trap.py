"""Trap weights (Boenisch et al., "When the Curious Abandon Honesty", EuroS&P 2023).

``bins = Linear(N, K)`` with ReLU, bias 0, each row drawn from N(0, 1/N) with its positive entries
scaled down by one factor ``s < 1``. On non-negative inputs (pixels) the negative entries then
dominate, so a row fires for few samples; a row fired by exactly one sample has the weight
gradient ``c_i x_i`` and bias gradient ``c_i``, and their ratio is the sample (no differencing:
every row is a bin by itself). The server picks ``s`` on its public data so that a row fires for
a share ``activation_rate`` of the samples on average; ``1 / B`` maximises the chance
``p (1 - p)^(B - 1)`` that a row holds exactly one sample of a batch of ``B``.

Rows fire on the sign of ``w . x`` alone, so their scale is free: entries of size ``1/sqrt(N)``
keep a FedAvg update of the weights many digits above their float32 spacing, while the updates
move the rows' pre-activations by far less than their spread, so a row keeps the samples it
fired.

``readout = Linear(K, N)`` with all weights ``1/K`` maps the rows back to the input's shape, as in
the imprint block, so that the original model runs after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.malicious.model import MaliciousModel, attach, check_public, input_shape


@dataclass(frozen=True)
class TrapConfig:
    """``rows`` (K >= 1 trap rows), the target ``activation_rate`` in (0, 0.5) and the ``seed`` of the
    weights."""

    rows: int
    activation_rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise InvalidValueError(f"rows must be a positive int, got {self.rows!r}")
        rate = self.activation_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 0.5:
            raise InvalidValueError(f"activation_rate must be a number in (0, 0.5), e.g. 1 / batch_size, got {rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidTypeError(f"seed must be an int, got {self.seed!r}")


class TrapBlock(nn.Module):
    """``x -> readout(relu(bins(x.flatten(1))))`` reshaped to ``in_shape``, ``bins`` holding trap weights."""

    cumulative = False

    def __init__(self, in_shape: tuple[int, ...], weights: torch.Tensor) -> None:
        super().__init__()
        rows, num_features = weights.shape
        self.in_shape = tuple(in_shape)
        self.bins = nn.Linear(num_features, rows)
        self.readout = nn.Linear(rows, num_features)
        with torch.no_grad():
            self.bins.weight.copy_(weights)
            self.bins.bias.zero_()
            self.readout.weight.fill_(1.0 / rows)
            self.readout.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bins(x.flatten(1)))
        return self.readout(h).unflatten(1, self.in_shape)

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """Which rows each sample of ``x`` [n, *in_shape] fires: bool [n, rows], computed as the client's
        forward pass computes the rows (float32, the layer itself)."""
        with torch.no_grad():
            return self.bins(x.flatten(1).to(self.bins.weight)) > 0


def trap_weights(public: torch.Tensor, config: TrapConfig) -> torch.Tensor:
    """Trap weights [rows, N] (float32) whose positive entries are scaled so that a row fires for a
    share ``config.activation_rate`` of ``public`` on average (bisection on the scale)."""
    flat = public.flatten(1).to(torch.float64)
    gen = torch.Generator().manual_seed(config.seed)
    w = torch.randn(config.rows, flat.shape[1], generator=gen, dtype=torch.float64).to(flat.device)
    w = w / math.sqrt(flat.shape[1])
    positive, negative = w.clamp_min(0), w.clamp_max(0)
    from_positive, from_negative = flat @ positive.T, flat @ negative.T

    def rate(scale: float) -> float:
        return (scale * from_positive + from_negative > 0).double().mean().item()

    lo, hi = 0.0, 1.0
    if rate(hi) < config.activation_rate:
        raise InvalidValueError(f"activation_rate={config.activation_rate} cannot be reached on public: unscaled "
                                f"trap rows fire for only {rate(hi):.3g} of it (are the inputs non-negative?)")
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) < config.activation_rate else (lo, mid)
    return (hi * positive + negative).to(torch.float32).cpu()


def trap_model(model: nn.Module, public: torch.Tensor, config: TrapConfig, *,
               in_shape: tuple[int, ...] | None = None) -> MaliciousModel:
    """``model`` with a trap-weight block in front, calibrated on the server's ``public`` data."""
    if not isinstance(config, TrapConfig):
        raise InvalidTypeError(f"config must be a TrapConfig, got {type(config).__name__}")
    shape = input_shape(model, in_shape)
    check_public(public, shape)
    block = TrapBlock(shape, trap_weights(public, config))
    param = next(model.parameters(), None)
    if param is not None:
        block = block.to(device=param.device)
    return attach(block, model, shape)


def rows_fired(block: TrapBlock, x: torch.Tensor) -> torch.Tensor:
    """Which rows each sample of ``x`` fires: bool [n, rows] (``TrapBlock.members``)."""
    return block.members(x)



