"""Loading a saved ``state_dict`` into a model, with one-line errors that say what does not fit."""
from __future__ import annotations

import os

import torch
from torch import nn

from fastleak._checks import first_line
from fastleak.errors import InvalidValueError


def _first(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def load_state(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the ``torch.save(model.state_dict(), path)`` file ``path`` into ``model`` (read with
    ``weights_only=True``: no code is executed). ValueError, naming the file, for a missing or
    unreadable file and for missing, unexpected or differently shaped entries."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidValueError(f"state dict file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidValueError(f"state dict file {path!r} cannot be read ({first_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidValueError(f"{path!r} holds no state dict (a mapping of names to tensors); save one with "
                                "torch.save(model.state_dict(), path)")
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if shapes:
        problems.append(f"shapes in file vs model: {_first(shapes)}")
    if problems:
        raise InvalidValueError(f"state dict {path!r} does not fit this {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state)
    return model
