"""How a train split is dealt out to the clients, registered by name."""
from __future__ import annotations

from typing import Callable

import numpy as np

from fastleak._registry import Registry

Partition = Callable[[np.ndarray, int, float, np.random.Generator], list[np.ndarray]]
PARTITIONS: Registry[Partition] = Registry("partition")


@PARTITIONS.register("iid")
def iid(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the indices and cut them into ``clients`` shards whose sizes differ by at most one."""
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), clients)]


@PARTITIONS.register("dirichlet")
def dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, deal its shuffled indices out in shares drawn from Dirichlet(alpha, ..., alpha);
    a client may receive no image at all when alpha is small."""
    shards: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        shares = rng.dirichlet(np.full(clients, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        for k, part in enumerate(np.split(members, cuts)):
            shards[k].append(part)
    return [np.sort(np.concatenate(parts)) for parts in shards]


def partition(labels: np.ndarray, clients: int, name: str, alpha: float, seed: int) -> list[np.ndarray]:
    """The train indices of every client; deterministic given ``seed``."""
    return PARTITIONS.get(name)(labels, clients, alpha, np.random.default_rng([seed, 0x5EED]))
