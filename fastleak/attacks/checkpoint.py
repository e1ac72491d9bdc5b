"""Attack checkpoints: one ``torch.save`` file of plain containers and tensors.

Format ``fastleak-attack-checkpoint``, version 3 (the configuration lists its priors; each prior
keeps its own state)::

    {"format", "version", "step", "config": AttackConfig.as_dict(), "shape": [Q, B, *input_shape],
     "history" [T, Q], "history_steps", "resets", "generator", "priors": {name: Prior.state_dict()},
     ...the optimiser's own entries (Adam: "x", "soft", "optimizer", "scheduler", "losses";
        L-BFGS: "lbfgs")}

A checkpoint resumes only the attack it was written by: same format, version, configuration
and shape.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from fastleak._files import write_atomically
from fastleak.errors import InvalidValueError

FORMAT = "fastleak-attack-checkpoint"
VERSION = 3


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` with the format's name and version (atomic replace)."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load(path: str | os.PathLike, device: torch.device, config: dict[str, Any], shape: list[int]) -> dict[str, Any]:
    """The state saved at ``path``, on ``device``, refused unless it belongs to an attack with this
    ``config`` (``AttackConfig.as_dict()``) and ``shape`` ([Q, B, *input_shape])."""
    where = os.fspath(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise InvalidValueError(f"checkpoint {where!r} cannot be read (truncated or corrupt: torch.load raised "
                                f"{type(exc).__name__}); delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InvalidValueError(f"{where!r} is not a fastleak attack checkpoint")
    if state.get("version") != VERSION:
        raise InvalidValueError(f"checkpoint {where!r} has version {state.get('version')}, expected {VERSION}")
    if state["config"] != config or list(state["shape"]) != shape:
        raise InvalidValueError(f"checkpoint {where!r} belongs to a different attack configuration; "
                                "use the same options or delete it")
    return state
