"""Which labels an attack uses: recovered, optimised jointly with the images, or given."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fastleak.attacks.presets import AttackConfig
from fastleak.errors import InvalidValueError
from fastleak.federated.observation import Observation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackLabels:
    """mode: "recover", "optimize" or "fixed" (given); fixed: one label tensor [B] per observation,
    None when the labels are optimised; method: how they were found (the label method, "given" or None)."""

    mode: str
    fixed: list[Tensor] | None
    method: str | None


def attack_labels(observations: Sequence[Observation], model: nn.Module, config: AttackConfig,
                  labels: Sequence[Tensor] | Tensor | str | None, public=None) -> AttackLabels:
    """``labels`` None follows ``config.labels``; "recover" or "optimize" override it; tensors fix the labels.
    ``public``: the server's labelled public data for recovery (see ``fastleak.labels.counts_many``)."""
    mode = config.labels if labels is None else labels
    if isinstance(mode, str):
        if mode == "optimize":
            return AttackLabels("optimize", None, None)
        if mode != "recover":
            raise InvalidValueError(f"labels must be None, 'recover', 'optimize' or label tensors, got {mode!r}")
        from fastleak import labels as label_recovery

        found = label_recovery.counts_many(observations, model, config.label_method, public=public)
        for c in found:
            log.info("labels recovered with %s: %s", c.method, c.labels.tolist())
        return AttackLabels("recover", [c.labels for c in found], found[0].method)
    if isinstance(mode, Tensor):
        mode = [mode]
    if len(mode) != len(observations):
        raise InvalidValueError(f"labels must give one tensor per observation ({len(observations)}), got {len(mode)}")
    fixed = [_fixed_labels(y, obs, obs.num_classes_for(model)) for y, obs in zip(mode, observations)]
    return AttackLabels("fixed", fixed, "given")


def _fixed_labels(labels: Tensor, obs: Observation, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype != torch.long or labels.dim() != 1:
        raise InvalidValueError(f"labels must be a 1-D int64 tensor, got dtype {labels.dtype} shape "
                                f"{tuple(labels.shape)}")
    if labels.numel() != obs.num_samples:
        raise InvalidValueError(f"labels has {labels.numel()} entries but the observation's batch has "
                                f"{obs.num_samples} samples")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise InvalidValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, "
                                f"{int(labels.max())}]")
    return labels
