"""Saving and loading observations.

On-disk format ``fastleak.observation``, version 1: one file written by ``torch.save`` holding only
plain containers, strings, numbers and CPU tensors (so it loads with ``torch.load(weights_only=True)``;
no arbitrary pickle is ever executed)::

    {
      "format": "fastleak.observation",
      "version": 1,
      "fields": {"kind": str, "param_names": [str, ...], "num_samples": int, "reduction": str,
                 "loss": str, "bn_train": bool, "local_steps": int, "local_lr": float | None,
                 "local_batch_size": int | None, "local_epochs": int,
                 "input_shape": [int, ...] | None, "num_classes": int | None},
      "meta": {...},                      # Observation.meta: str/int/float/bool/None, lists, tuples,
                                          # dicts with str keys (no tensors)
      "pairs": [{"state": {name: Tensor}, "shared": [Tensor, ...]}, ...],
      "sha256": str,                      # hex digest of everything above (see _digest)
    }

``load`` refuses (ValueError naming the file and the problem) unreadable, truncated or corrupt files,
a different format name or version, a digest mismatch, and, when a model is given, parameter names
or tensor shapes that differ from the model's.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import torch
from torch import nn

from fastleak._files import write_atomically
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation, Pair

FORMAT = "fastleak.observation"
VERSION = 1
_FIELDS = ("kind", "param_names", "num_samples", "reduction", "loss", "bn_train", "local_steps", "local_lr",
           "local_batch_size", "local_epochs", "input_shape", "num_classes")
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidTypeError(f"cannot save observation: {where} has a non-string key {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise InvalidTypeError(f"cannot save observation: {where} is a {type(value).__name__}; meta may hold only "
                           "str, int, float, bool, None, lists, tuples and dicts with str keys")


def _tensor_digest(h: "hashlib._Hash", tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def _digest(payload: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([payload["format"], payload["version"], payload["fields"], payload["meta"]],
                        sort_keys=True).encode())
    for pair in payload["pairs"]:
        for name in sorted(pair["state"]):
            h.update(name.encode())
            _tensor_digest(h, pair["state"][name])
        for t in pair["shared"]:
            _tensor_digest(h, t)
    return h.hexdigest()


def save(obs: Observation, path: str | os.PathLike) -> None:
    """Write ``obs`` to ``path`` in the format above (tensors moved to the CPU; atomic replace)."""
    if not isinstance(obs, Observation):
        raise InvalidTypeError(f"obs must be an Observation, got {type(obs).__name__}")
    fields = {f: getattr(obs, f) for f in _FIELDS}
    fields["param_names"] = list(obs.param_names)
    fields["input_shape"] = None if obs.input_shape is None else list(obs.input_shape)
    meta = dict(obs.meta)
    _check_plain(meta, "meta")
    payload: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "fields": fields, "meta": meta,
        "pairs": [{"state": {k: v.detach().cpu() for k, v in p.state.items()},
                   "shared": [t.detach().cpu() for t in p.shared]} for p in obs.pairs],
    }
    payload["sha256"] = _digest(payload)
    write_atomically(path, lambda tmp: torch.save(payload, tmp))


def _require(cond: bool, path: str, what: str) -> None:
    if not cond:
        raise InvalidValueError(f"{path}: not a valid {FORMAT} file: {what}")


def load(path: str | os.PathLike, model: nn.Module | None = None, map_location: str | torch.device = "cpu") -> Observation:
    """Read an observation written by ``save``; with ``model``, also check it matches that model."""
    path = os.fspath(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise InvalidValueError(f"{path}: not a readable {FORMAT} file (truncated or corrupt: torch.load raised "
                                f"{type(exc).__name__})") from None
    _require(isinstance(payload, dict) and payload.get("format") == FORMAT, path,
             f"the 'format' field is not {FORMAT!r}")
    version = payload.get("version")
    if version != VERSION:
        raise InvalidValueError(f"{path}: {FORMAT} version {version!r} is not supported (this fastleak reads version "
                                f"{VERSION})")
    for key, kind in (("fields", dict), ("meta", dict), ("pairs", list), ("sha256", str)):
        _require(isinstance(payload.get(key), kind), path, f"{key!r} missing or not a {kind.__name__}")
    _require(set(payload["fields"]) == set(_FIELDS), path, "the 'fields' entry has the wrong keys")
    for i, pair in enumerate(payload["pairs"]):
        _require(isinstance(pair, dict) and isinstance(pair.get("state"), dict) and isinstance(pair.get("shared"), list)
                 and all(isinstance(t, torch.Tensor) for t in [*pair["state"].values(), *pair["shared"]]),
                 path, f"pair {i} is malformed")
    if _digest(payload) != payload["sha256"]:
        raise InvalidValueError(f"{path}: checksum mismatch: the file is corrupt")
    try:
        obs = Observation(pairs=tuple(Pair(state=p["state"], shared=tuple(p["shared"])) for p in payload["pairs"]),
                          meta=payload["meta"], **payload["fields"])
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{path}: not a valid {FORMAT} file: {exc}") from None
    if model is not None:
        obs.check_against(model, where=f"{path}: observation")
    return obs
