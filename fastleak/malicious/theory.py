"""How many samples of a batch sit alone in their bin, predicted from the bins' masses.

A sample is recovered exactly when no other sample of its batch shares its bin. For a batch of
``B`` samples drawn independently from a distribution that puts mass ``p_k`` in bin ``k``, a given
sample lands in bin ``k`` with probability ``p_k`` and is alone there with probability
``(1 - p_k)^(B - 1)``, so the expected fraction of singletons is

    sum_k p_k (1 - p_k)^(B - 1),

which is ``(1 - 1/K)^(B - 1)`` for ``K`` bins of equal mass (about ``exp(-B/K)``). For a batch
drawn without replacement from a finite pool of ``N`` samples, ``n_k`` of them in bin ``k``, the
other ``B - 1`` samples avoid the ``n_k - 1`` others of its bin with probability
``C(N - n_k, B - 1) / C(N - 1, B - 1)``, so the fraction is

    sum_k (n_k / N) C(N - n_k, B - 1) / C(N - 1, B - 1).

Where a sample reaches several bins (trap rows, imprint blocks with several measurements), a
sample alone in any of them is read there, and then subtracted from the others, which can leave
another alone (peeling, ``fastleak.malicious.recovery``). ``peeling_fraction`` runs that on a
batch's true memberships: the most a peeling server can read, the upper bound for those layouts
as the singleton fraction is for one measurement. For ``B`` samples each in one bin of each of
``M`` groups of ``K / M`` bins (uniformly), peeling reads almost everything while ``B / K`` stays
under the threshold of the matching random hypergraph (about 0.41 for M = 3, 0.39 for M = 4,
after the analysis of invertible Bloom lookup tables), and the singletons' share elsewhere.
"""
from __future__ import annotations

import math

import torch

from fastleak._checks import positive_int
from fastleak.errors import InvalidValueError


def singleton_fraction(bin_masses: torch.Tensor, batch_size: int) -> float:
    """Expected fraction of a batch of ``batch_size`` i.i.d. samples that is alone in its bin."""
    b = positive_int(batch_size, "batch_size")
    p = torch.as_tensor(bin_masses, dtype=torch.float64)
    if p.dim() != 1 or not bool((p >= 0).all()) or not math.isclose(float(p.sum()), 1.0, rel_tol=0, abs_tol=1e-9):
        raise InvalidValueError("bin_masses must be a 1-D tensor of non-negative masses summing to 1")
    return float((p * (1 - p).pow(b - 1)).sum())


def equal_bins_singleton_fraction(bins: int, batch_size: int) -> float:
    """``(1 - 1/bins)^(batch_size - 1)``: the singleton fraction for ``bins`` bins of equal mass."""
    k = positive_int(bins, "bins")
    return (1 - 1 / k) ** (positive_int(batch_size, "batch_size") - 1)


def pool_singleton_fraction(bin_counts: torch.Tensor, batch_size: int) -> float:
    """Expected singleton fraction of a batch drawn without replacement from a pool whose samples
    fall ``bin_counts[k]`` in bin ``k`` (samples outside every bin count as their own bin)."""
    b = positive_int(batch_size, "batch_size")
    counts = torch.as_tensor(bin_counts, dtype=torch.int64)
    n = int(counts.sum())
    if counts.dim() != 1 or bool((counts < 0).any()) or n < b:
        raise InvalidValueError(f"bin_counts must be a 1-D tensor of non-negative counts summing to at least "
                                f"batch_size={b}, got a total of {n}")

    def log_choose(a: int, k: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)

    total = 0.0
    for c in counts.tolist():
        if c > 0 and n - c >= b - 1:
            total += c / n * math.exp(log_choose(n - c, b - 1) - log_choose(n - 1, b - 1))
    return total


def bin_counts(bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """How many samples fall in each of ``num_bins`` bins, given each sample's bin index (-1: below
    every bin, counted in an extra last entry so that the counts cover every sample)."""
    index = torch.as_tensor(bins, dtype=torch.int64).flatten()
    return torch.bincount(torch.where(index < 0, num_bins, index), minlength=num_bins + 1)


def _sampled(members: torch.Tensor, batch_size: int, draws: int, seed: int, fraction) -> float:
    """The mean of ``fraction(batch members)`` over ``draws`` batches drawn without replacement from
    a pool whose samples reach the bins ``members`` [N, bins]."""
    b = positive_int(batch_size, "batch_size")
    positive_int(draws, "draws")
    pool = torch.as_tensor(members, dtype=torch.bool)
    if pool.dim() != 2 or len(pool) < b:
        raise InvalidValueError(f"members must be a bool matrix [N, rows] with N >= batch_size={b}, got shape "
                                f"{tuple(pool.shape)}")
    gen = torch.Generator().manual_seed(seed)
    return sum(fraction(pool[torch.randperm(len(pool), generator=gen)[:b]]) for _ in range(draws)) / draws


def sampled_singleton_fraction(members: torch.Tensor, batch_size: int, draws: int = 200, seed: int = 0) -> float:
    """Singleton fraction of batches drawn without replacement from a pool, by sampling: ``members``
    [N, rows] says which rows (bins) each pool sample reaches; a sample is alone when one of its
    rows holds no other sample of its batch. Needed where rows overlap (trap weights), so that no
    closed form applies; for bins it agrees with ``pool_singleton_fraction``."""
    def singletons(batch: torch.Tensor) -> float:
        return float((batch & (batch.sum(0) == 1)).any(1).double().mean())

    return _sampled(members, batch_size, draws, seed, singletons)


def peeling_fraction(members: torch.Tensor) -> float:
    """The share of a batch a peeling server reads, given which bins each sample reaches (``members``
    bool [B, K]): a bin reached by one sample not yet read gives that sample, repeatedly (module
    docs)."""
    reached = torch.as_tensor(members, dtype=torch.bool)
    if reached.dim() != 2 or not len(reached):
        raise InvalidValueError(f"members must be a non-empty bool matrix [B, bins], got shape {tuple(reached.shape)}")
    known = torch.zeros(len(reached), dtype=torch.bool)
    while True:
        unknown = reached & ~known[:, None]
        lone = unknown.sum(0) == 1
        fresh = (unknown[:, lone]).any(1) & ~known
        if not bool(fresh.any()):
            return float(known.double().mean())
        known |= fresh


def sampled_peeling_fraction(members: torch.Tensor, batch_size: int, draws: int = 200, seed: int = 0) -> float:
    """``peeling_fraction`` of batches drawn without replacement from a pool whose samples reach the
    bins ``members`` [N, bins], averaged over ``draws``."""
    return _sampled(members, batch_size, draws, seed, peeling_fraction)
