"""Defenses against gradient leakage, all in one registry (``DEFENSES``), each acting at one stage of a round.

Transforms of what one client shares, ``apply(obs, name, **params)``: gaussian(sigma),
laplace(scale), clip(max_norm, per_layer=False), topk(keep), prune(ratio), quantize(bits).
A client step: dp_sgd(clip, sigma, seed=0), DP-SGD's per-example clipping and noise in place of
the client's FedSGD step, ``dp_sgd(model, x, y, ...)`` (FedSGD only). An aggregation:
secure_aggregation(clients), the mean of K clients' observations, ``secure_aggregate(observations)``.
Each entry says which protocols (``PROTOCOLS``) it applies to; ``protect`` runs a round under any of them.
"""
from fastleak.defenses import transforms  # noqa: F401  (registers the transforms)
from fastleak.defenses.dp import dp_sgd
from fastleak.defenses.registry import (DEFENSES, PROTOCOLS, STAGES, Aggregation, ClientStep, Defense, Transform, apply,
                                        check, get, names, protect, register, register_aggregation, register_client)
from fastleak.defenses.secure_aggregation import secure_aggregate

__all__ = ["apply", "dp_sgd", "secure_aggregate", "protect", "check", "names", "get", "register", "register_client",
           "register_aggregation", "DEFENSES", "PROTOCOLS", "STAGES", "Defense", "Transform", "ClientStep",
           "Aggregation"]
