"""Defenses against gradient leakage: ``apply(obs, name, **params)`` and client-side ``dp_sgd``.

Registered: gaussian(sigma), laplace(scale), clip(max_norm, per_layer=False), topk(keep),
prune(ratio), quantize(bits). DP-SGD needs per-example gradients and is ``dp_sgd(model, x, y, ...)``;
secure aggregation combines K clients and is ``secure_aggregate(observations)``.
"""
from fastleak.defenses import transforms  # noqa: F401  (registers the defenses)
from fastleak.defenses.dp import dp_sgd
from fastleak.defenses.registry import DEFENSES, apply, names, register
from fastleak.defenses.secure_aggregation import secure_aggregate

__all__ = ["apply", "dp_sgd", "secure_aggregate", "names", "register", "DEFENSES"]
