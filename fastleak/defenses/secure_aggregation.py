"""Secure aggregation over K clients: the server sees only the sum of their shared tensors.

``secure_aggregate(observations)`` takes what K clients shared from the SAME model state(s) and
returns one observation holding the mean of their shared tensors: the sum the secure-aggregation
protocol reveals, divided by K as a FedAvg server does. Nothing else about any single client
reaches the server.

For FedSGD with equal batch sizes and the "mean" reduction, the mean of the K gradients is exactly
the gradient of the union of the K batches, so the result is an ordinary FedSGD observation of
``sum num_samples`` samples; any attack then faces one large batch. For FedAvg the mean of K updates
is not the update of any one local training run; the result keeps the clients' schedule fields
for reference, and only attacks that read the shared tensors in closed form (the malicious
server's, ``fastleak.malicious``) apply to it.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from fastleak._checks import positive_int
from fastleak.defenses.registry import defense_meta, register_aggregation
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation, Pair, same_protocol


def _same_state(a: Pair, b: Pair) -> bool:
    return a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def secure_aggregate(observations: Sequence[Observation]) -> Observation:
    """The mean of the shared tensors of ``observations`` (K >= 1 clients of one round); see the module."""
    observations = list(observations)
    if not observations:
        raise InvalidValueError("observations must hold at least one client's Observation")
    for i, obs in enumerate(observations):
        if not isinstance(obs, Observation):
            raise InvalidTypeError(f"observations[{i}] must be an Observation, got {type(obs).__name__}")
    same_protocol(observations, "secure aggregation sums the clients of one round, who run the same protocol")
    first = observations[0]
    for i, obs in enumerate(observations[1:], start=1):
        if obs.num_pairs != first.num_pairs or not all(_same_state(a, b) for a, b in zip(obs.pairs, first.pairs)):
            raise InvalidValueError(f"observations[{i}] was computed from other model states than observations[0]; "
                                    "the clients of one round all start from the server's model")
    k = len(observations)
    pairs = tuple(Pair(state=pair.state,
                       shared=tuple(torch.stack([obs.pairs[p].shared[j] for obs in observations]).sum(0) / k
                                    for j in range(len(first.param_names))))
                  for p, pair in enumerate(first.pairs))
    record = {"name": "secure_aggregation", "clients": k}
    return dataclasses.replace(first, pairs=pairs, num_samples=sum(obs.num_samples for obs in observations),
                               meta=defense_meta(first.meta, record))


@register_aggregation("secure_aggregation", use="fastleak.defenses.secure_aggregate(observations)")
def _over_clients(observations: Sequence[Observation], clients: int) -> Observation:
    """``secure_aggregate`` of the observations of exactly ``clients`` clients."""
    if len(observations) != positive_int(clients, "clients"):
        raise InvalidValueError(f"secure aggregation over clients={clients} got {len(observations)} clients' "
                                "observations")
    return secure_aggregate(observations)
