"""How much of a batch a server could read, in closed form, off the layers that read the input.

A layer that reads the input (``fastleak.inspection.layers``) has the weight gradient
``sum_i g_ik x_i`` and bias gradient ``sum_i g_ik`` in row ``k``, where ``g_ik`` is the loss's
gradient at row ``k``'s output for sample ``i`` (zero where the row's activation passes no gradient
for that sample). Their ratio is the sample ``x_i`` when one sample alone reaches the row. Two
rows ``k`` and ``l`` whose samples are nested (every sample reaching ``l`` reaches ``k``) and
have the same coefficients in both differ by the samples of ``k`` alone: the bins of an imprint
layer. A sample once read can be subtracted from every other row it reaches where its coefficient
is the one already known (rows with one downstream weight, as imprint and trap blocks have), which
can leave another sample alone there, and so on ("peeling").

``coefficients`` computes ``g`` for a batch of the client's own data: the model in eval mode, the
gradient of a seeded random projection of its output (any loss gives the same pattern of zeros).
``readable`` runs the peeling on it and says which samples a server reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastleak.inspection.layers import LinearLayer

COEFFICIENT_TOLERANCE = 1e-5  # relative; the same downstream weights give the same float sums


def coefficients(model: nn.Module, layers: list[LinearLayer], batch: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """``g`` [B, K] of each of ``layers`` for ``batch`` (module docs), float64 on the CPU."""
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            outputs[name] = output
        return record

    handles = [layer.module.register_forward_hook(hook(layer.name)) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            inputs = batch.detach().clone().requires_grad_(True)
            out = model(inputs)
            projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
            names = [layer.name for layer in layers if layer.name in outputs]
            grads = torch.autograd.grad((out * projection).sum(), [outputs[n] for n in names], allow_unused=True)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {n: (torch.zeros_like(outputs[n]) if g is None else g).detach().to("cpu", torch.float64).flatten(1)
            for n, g in zip(names, grads)}


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() <= COEFFICIENT_TOLERANCE * torch.maximum(a.abs(), b.abs())


def bins(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``g`` [B, K] and each row's difference with its largest nested row of the same
    coefficients, as (members bool [B, R], coefficients [B, R]) (module docs)."""
    reached = g != 0
    counts = reached.sum(0)
    overlap = reached.T.double() @ reached.double()                       # [K, K]: shared samples
    nested = (overlap == counts[None, :]) & (counts[None, :] < counts[:, None]) & (counts[None, :] > 0)
    rank = torch.where(nested, counts[None, :].double(), -1.0)
    best = rank.argmax(1)
    has = rank.max(1).values >= 0
    k = torch.nonzero(has).flatten()
    inner = best[k]
    shared = reached[:, inner]
    agree = (~shared | _same(g[:, k], g[:, inner])).all(0)
    k, inner = k[agree], inner[agree]
    difference = reached[:, k] & ~reached[:, inner]
    return torch.cat([reached, difference], 1), torch.cat([g, g[:, k]], 1)


def readable(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples of the batch of ``g`` [B, K] a server reads off the layer: (alone in a row or
    bin, bool [B]; after peeling, bool [B]) (module docs)."""
    members, coef = bins(g)
    b = len(g)
    alone = (members & (members.sum(0) == 1)[None, :]).any(1)
    known = torch.zeros(b, dtype=torch.bool)
    known_coef = torch.zeros(b, dtype=torch.float64)
    for _ in range(b):
        unknown = members & ~known[:, None]
        clash = members & known[:, None] & ~_same(coef, known_coef[:, None])
        decodable = (unknown.sum(0) == 1) & ~clash.any(0)
        if not bool(decodable.any()):
            break
        rows = torch.nonzero(decodable).flatten()
        samples = unknown[:, rows].double().argmax(0)
        fresh = ~known[samples]
        rows, samples = rows[fresh], samples[fresh]
        if len(samples) == 0:
            break
        known[samples] = True
        known_coef[samples] = coef[samples, rows]
    return alone, known


@dataclass(frozen=True)
class Exposure:
    """One layer on the client's data, over the batches drawn: ``alone`` and ``readable`` (means of
    the share of a batch alone in a row or bin, and read after peeling), ``live_rows`` (rows that
    some sample reaches), ``median_rate`` (the median over live rows of the share of a batch a row
    reaches) and ``batches`` drawn."""

    alone: float
    readable: float
    live_rows: int
    median_rate: float
    batches: int


def draw_batches(x: torch.Tensor, batch_size: int, draws: int, seed: int) -> list[torch.Tensor]:
    """``draws`` batches of ``batch_size`` drawn without replacement from ``x`` (all of ``x`` once when it
    holds no more than ``batch_size``)."""
    if len(x) <= batch_size:
        return [x]
    gen = torch.Generator().manual_seed(seed)
    return [x[torch.randperm(len(x), generator=gen)[:batch_size]] for _ in range(draws)]


def exposures(model: nn.Module, layers: list[LinearLayer], x: torch.Tensor, batch_size: int, draws: int,
              seed: int = 0) -> tuple[dict[str, Exposure], float]:
    """Each layer's ``Exposure`` over batches of ``x``, and the share of a batch read off any of them."""
    batches = draw_batches(x, batch_size, draws, seed)
    shares: dict[str, list[tuple[float, float]]] = {layer.name: [] for layer in layers}
    rates: dict[str, torch.Tensor] = {}
    union = []
    for i, batch in enumerate(batches):
        grads = coefficients(model, layers, batch, seed + i)
        read_any = torch.zeros(len(batch), dtype=torch.bool)
        for name, g in grads.items():
            alone, known = readable(g)
            read_any |= known
            shares[name].append((float(alone.double().mean()), float(known.double().mean())))
            rates[name] = rates.get(name, 0) + (g != 0).double().mean(0) / len(batches)
        union.append(float(read_any.double().mean()))
    out = {}
    for name, values in shares.items():
        if not values:
            continue
        live = rates[name][rates[name] > 0]
        out[name] = Exposure(alone=sum(v[0] for v in values) / len(values),
                             readable=sum(v[1] for v in values) / len(values), live_rows=len(live),
                             median_rate=float(live.median()) if len(live) else 0.0, batches=len(values))
    return out, sum(union) / len(union)
