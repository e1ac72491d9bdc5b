"""The count posterior on observations, fitted to the observed model state with the server's public data.

``posterior``: prior × presence × class-conditional evidence (``posterior`` module docstring), with
the noise model fitted on public batches simulated at the same model state and protocol;
``presence_prior``: the same without the class-conditional evidence, i.e. the prior conditioned on
which classes the gradient shows present (and, with public data, on how likely a present class is
to be missed). Without public data both use equal class frequencies (or ``LabelConfig.prior``), a
miss probability of 1/(n + 1), and ``posterior`` reduces to ``presence_prior``.

``calibrate`` does the per-state work once per (model state, protocol, batch size) and caches it
on the ``PublicData``: the class-conditional statistics, ``LabelConfig.simulations`` simulated
client batches, the fitted miss probability β and noise (τ, ν), and the LnAcc of every candidate
method on the simulated batches, from which ``auto`` picks.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from fastleak.labels import posterior as P
from fastleak.labels.conditional import ClassStatistics, class_statistics
from fastleak.labels.evidence import Evidence, gather
from fastleak.labels.presence import detected, nonnegative_features
from fastleak.labels.public import PublicData, draw_counts, protocol_key, simulate
from fastleak.labels.registry import register
from fastleak.labels.rounding import largest_remainder
from fastleak.labels.types import LabelConfig

log = logging.getLogger("fastleak.labels")

# The (ν, τ) pairs tried for the class-conditional likelihood: Student-t with 4 degrees of freedom
# or Gaussian, at several temperatures; τ = inf leaves the evidence out (the posterior is then the
# presence-conditioned prior).
NOISE_GRID = tuple((dof, temp) for dof in (4.0, None) for temp in (1.0, 4.0, 16.0)) + ((None, math.inf),)
POSTERIOR_METHODS = ("posterior", "presence_prior")
MISS_GRID = torch.linspace(0.002, 0.998, 499, dtype=torch.float64)
# Sampler settings while fitting the noise model (cheaper than those of the final answer).
FIT_CHAINS, FIT_SWEEPS = 8, 20


@dataclass(frozen=True, eq=False)
class Calibration:
    """What the public data says at one (model state, protocol, batch size): the class-conditional
    ``statistics``, the public class ``frequencies``, the miss probability β (``log_miss``, pooled
    over classes) and the fitted noise (``dof``, ``temperature``); the simulated public batches
    (``simulated``: their evidence, ``truth`` [S, C]: their counts, ``shown``: the classes their
    gradients show present); ``scores``: mean LnAcc of each method scored on them so far, and
    ``errors``: per method, the true minus the recovered counts [S, C]."""

    statistics: ClassStatistics
    frequencies: torch.Tensor
    log_miss: float
    dof: float | None
    temperature: float
    simulated: Evidence
    truth: torch.Tensor
    shown: torch.Tensor
    residual_limit: float = math.inf
    scores: dict[str, float] = field(default_factory=dict)
    errors: dict[str, torch.Tensor] = field(default_factory=dict)

    def best(self, candidates: tuple[str, ...]) -> str:
        """The candidate with the highest mean LnAcc (posterior methods first among equals)."""
        order = {"posterior": 0, "presence_prior": 1}
        return max(candidates, key=lambda m: (round(self.scores[m], 9), -order.get(m, 2)))


def lnacc(found: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per row, the share of classes present in ``truth`` or ``found`` whose count is exact."""
    active = (truth > 0) | (found > 0)
    return ((found == truth) & active).sum(1).double() / active.sum(1).clamp_min(1).double()


def fit_miss(shown: torch.Tensor, truth: torch.Tensor) -> float:
    """log β by maximum likelihood of P(class missed | n_c = n) = β^n over present classes."""
    present = truth > 0
    missed = present & ~shown
    found = present & shown
    if not bool(missed.any()):
        return float(MISS_GRID[0].log())
    n = truth.double()
    logb = MISS_GRID.log()[:, None, None]
    ll = (missed * n * logb).sum((1, 2)) + (found * torch.log1p(-torch.exp(n * logb).clamp_max(1 - 1e-12))).sum((1, 2))
    return float(logb[int(ll.argmax()), 0, 0])


def _key(ev: Evidence, row: int, config: LabelConfig) -> tuple:
    i, j = ev.pair_ids[row]
    obs = ev.observations[i]
    w = ev.weight[int(ev.state_index[row])].double()
    signature = (float(w.sum()), float(w.abs().sum()), tuple(w.shape))
    return ("calibration", signature, protocol_key(obs), int(ev.num_samples[row]), config.prior, config.clients,
            config.simulations, config.num_dummies, config.dummy_seed, config.dummy_distribution,
            config.trajectory_points)


def best_residual(quad: torch.Tensor, lin: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest r²(n) over real-valued n: how far the evidence lies from every
    combination of the class-conditional means."""
    solution = (torch.linalg.pinv(quad, hermitian=True) @ lin[..., None])[..., 0]
    return offset - (lin * solution).sum(1)


def _evidence(stats: ClassStatistics | None, ev: Evidence, shown: torch.Tensor, *, log_miss: float | None,
              dof: float | None, temperature: float, residual_limit: float = math.inf) -> P.Evidence:
    """The posterior's evidence for the rows of ``ev``; rows whose best residual exceeds
    ``residual_limit`` (the public batches' largest) keep only their presence evidence: the noise
    model fitted on public batches does not describe them."""
    b = ev.num_samples.to(shown.device)
    shown = P.feasible_detected(shown, b)
    silent = ~shown.any(1)
    miss = None if log_miss is None else torch.full(shown.shape, log_miss, dtype=torch.float64, device=shown.device)
    if stats is None or not math.isfinite(temperature):
        return P.Evidence(shown, log_miss=miss, temperature=math.inf, silent=silent)
    g = stats.vectors(ev.grad_w, ev.grad_b if stats.has_bias else None, ev.num_samples)
    quad, lin, offset = stats.terms(g, ev.num_samples)
    outside = (best_residual(quad, lin, offset) > residual_limit) | (g == 0).all(1)
    if bool(outside.any()):
        log.info("labels: %d of %d observation(s) lie outside what public batches leave in the final layer (best "
                 "residual above the public batches' %.3g); their counts rest on presence and the prior",
                 int(outside.sum()), len(outside), residual_limit)
        keep = (~outside).double()
        quad, lin, offset = quad * keep[:, None, None], lin * keep[:, None], offset * keep
    return P.Evidence(shown, quad, lin, offset, temperature, dof, stats.dim, miss, silent)


def calibrate(ev: Evidence, row: int, config: LabelConfig, data: PublicData) -> Calibration:
    """The calibration of ``ev``'s row ``row`` (computed once per model state, protocol and batch
    size, and cached on ``data``)."""
    key = _key(ev, row, config)
    hit = data.cache.get(key)
    if hit is not None:
        return hit
    i, j = ev.pair_ids[row]
    obs = ev.observations[i]
    c, b = ev.num_classes, int(ev.num_samples[row])
    stats = class_statistics(ev.model, obs, j, data, b, c, seed=config.dummy_seed)
    freq = data.frequencies(c)
    gen = torch.Generator().manual_seed(config.dummy_seed + 7919 * b)
    truths, sims = [], []
    for s in range(config.simulations):
        counts = draw_counts(config.clients[s % len(config.clients)], b, freq, gen)
        sims.append(simulate(ev.model, obs, j, data, b, counts, gen))
        truths.append(counts)
    sim_ev = gather(sims, ev.model)
    truth = torch.stack(truths).double().to(sim_ev.grad_w.device)
    shown = detected(sim_ev, stats.nonnegative)
    false_shown = int((shown & (truth == 0)).sum())
    if false_shown:
        log.warning("labels: %d classes shown present in simulated public batches hold no sample; the presence test "
                    "is unreliable for this model", false_shown)
    log_miss = fit_miss(shown.cpu(), truth.cpu())
    prior = P.make_prior(config.prior, freq.to(shown.device), config.clients)
    best, best_score = (None, math.inf), -math.inf
    fits = []
    for dof, temp in NOISE_GRID:
        pe = _evidence(stats, sim_ev, shown, log_miss=log_miss, dof=dof, temperature=temp)
        res = P.sample(prior, pe, sim_ev.num_samples, chains=FIT_CHAINS, sweeps=FIT_SWEEPS, seed=config.dummy_seed)
        score = float(P.marginal_log_score(res.marginals, truth))
        fits.append(f"{noise_name(dof, temp)} {score:.3f}")
        if score > best_score:
            best, best_score = (dof, temp), score
    dof, temp = best
    g = stats.vectors(sim_ev.grad_w, sim_ev.grad_b if stats.has_bias else None, sim_ev.num_samples)
    # An observation that public batches could have left has a best residual of the order of theirs
    # (about d for well-described noise); above twice their largest, the noise model no longer holds.
    limit = max(2 * float(best_residual(*stats.terms(g, sim_ev.num_samples)).max()), float(stats.dim))
    cal = Calibration(stats, freq, log_miss, dof, temp, sim_ev, truth, shown, limit)
    log.info("labels: fitted on %d public batches of %d (%s): miss probability %.3f per sample, noise %s (log "
             "scores: %s)", config.simulations, b, obs.kind, math.exp(log_miss), noise_name(dof, temp),
             ", ".join(fits))
    data.cache[key] = cal
    return cal


def noise_name(dof: float | None, temp: float) -> str:
    """The fitted noise model in words: "none", "gauss/τ" or "tν/τ"."""
    if not math.isfinite(temp):
        return "none"
    return f"{'t' + format(dof, 'g') if dof else 'gauss'}/{temp:g}"


def score(cal: Calibration, candidates: tuple[str, ...], config: LabelConfig) -> dict[str, float]:
    """Mean LnAcc of ``candidates`` on the calibration's simulated public batches (each method is
    run once per calibration)."""
    from fastleak.labels import registry

    sim, truth = cal.simulated, cal.truth
    for name in candidates:
        if name in cal.scores:
            continue
        if name in ("posterior", "presence_prior"):
            prior = P.make_prior(config.prior, cal.frequencies.to(truth.device), config.clients)
            temp = cal.temperature if name == "posterior" else math.inf
            pe = _evidence(cal.statistics, sim, cal.shown, log_miss=cal.log_miss, dof=cal.dof, temperature=temp,
                           residual_limit=cal.residual_limit)
            found = P.sample(prior, pe, sim.num_samples, chains=FIT_CHAINS, sweeps=FIT_SWEEPS,
                             seed=config.dummy_seed).map
        else:
            found = largest_remainder(registry.get(name).estimate(sim, config).double(), sim.num_samples).double()
        cal.scores[name] = float(lnacc(found, truth).mean())
        cal.errors[name] = (truth - found).cpu()
    return {name: cal.scores[name] for name in candidates}


def _nonnegative_without_public(ev: Evidence, config: LabelConfig) -> bool:
    from fastleak.labels.statistics import dummy_inputs

    x = dummy_inputs(ev, config, ev.pair_ids[0][0])
    return nonnegative_features(ev, x[:min(len(x), 64)])


def solve(ev: Evidence, config: LabelConfig, *, informative: bool = True,
          calibrations: list[Calibration | None] | None = None) -> P.Result:
    """The posterior of every row of ``ev``: ``informative`` adds the class-conditional evidence
    (with public data); ``calibrations``: per row, its calibration (None without public data)."""
    n_rows, c = ev.num_rows, ev.num_classes
    device = ev.grad_w.device
    if calibrations is None:
        calibrations = [None] * n_rows
    maps = torch.zeros(n_rows, c, dtype=torch.float64, device=device)
    means = torch.zeros_like(maps)
    bmax = int(ev.num_samples.max())
    marginals = torch.zeros(n_rows, c, bmax + 1, dtype=torch.float64, device=device)
    groups: dict[int, list[int]] = {}
    for row, cal in enumerate(calibrations):
        groups.setdefault(id(cal), []).append(row)
    nonneg = None
    for rows in groups.values():
        cal = calibrations[rows[0]]
        sub = ev.subset(torch.tensor(rows, device=ev.obs_index.device))
        if cal is None:
            if nonneg is None:
                nonneg = _nonnegative_without_public(ev, config)
            freq = torch.ones(c, dtype=torch.float64, device=device)
            prior = P.make_prior(config.prior, freq, config.clients)
            pe = _evidence(None, sub, detected(sub, nonneg), log_miss=None, dof=None, temperature=math.inf)
        else:
            prior = P.make_prior(config.prior, cal.frequencies.to(device), config.clients)
            temp = cal.temperature if informative else math.inf
            pe = _evidence(cal.statistics, sub, detected(sub, cal.statistics.nonnegative), log_miss=cal.log_miss,
                           dof=cal.dof, temperature=temp, residual_limit=cal.residual_limit)
        res = P.sample(prior, pe, sub.num_samples, chains=config.chains, sweeps=config.sweeps, seed=config.dummy_seed)
        idx = torch.tensor(rows, device=device)
        maps[idx], means[idx] = res.map, res.mean
        marginals[idx, :, :res.marginals.shape[-1]] = res.marginals
    return P.Result(maps, means, marginals)


def calibrations_of(ev: Evidence, config: LabelConfig) -> list[Calibration | None]:
    """Per row of ``ev``, its calibration on ``config.public`` (None for every row without it)."""
    if config.public is None:
        return [None] * ev.num_rows
    return [calibrate(ev, row, config, config.public) for row in range(ev.num_rows)]


@register("posterior")
def posterior_counts(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """MAP counts of the count posterior (prior, presence and, with public data, the class-conditional
    evidence); ``counts`` adds per-class intervals and probabilities."""
    return solve(ev, config, informative=True, calibrations=calibrations_of(ev, config)).map


@register("presence_prior")
def presence_prior_counts(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """MAP counts of the prior conditioned on the classes the gradient shows present."""
    return solve(ev, config, informative=False, calibrations=calibrations_of(ev, config)).map
