"""The weights convention between Flower's list of ndarrays and a torch model.

A client sends, and the server sends back, EVERY entry of ``model.state_dict()`` in its order:
parameters and buffers (BatchNorm running statistics and ``num_batches_tracked`` included), i.e.
``[v.cpu().numpy() for v in model.state_dict().values()]``. ``get_weights`` and ``set_weights``
implement both directions; ``state_from_arrays`` is the checked conversion the server uses.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Copies of every ``model.state_dict()`` entry, in order, as numpy arrays (what a client sends)."""
    _check_model(model)
    return [v.detach().cpu().clone().numpy() for v in model.state_dict().values()]


def state_from_arrays(model: nn.Module, arrays: Sequence[np.ndarray], *,
                      source: str = "arrays") -> dict[str, torch.Tensor]:
    """The ``state_dict`` that ``arrays`` (in the convention above) encode for ``model``.

    Each array is converted to the dtype of the model's entry. Raises ValueError, starting with
    ``source`` (e.g. the client it came from), when the number of arrays or a shape differs from
    the model's state_dict.
    """
    _check_model(model)
    reference = model.state_dict()
    arrays = list(arrays)
    if len(arrays) != len(reference):
        names = list(reference)
        raise InvalidValueError(f"{source}: {len(arrays)} arrays, but the model's state_dict has {len(reference)} "
                                "entries (parameters and buffers in state_dict order: "
                                f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}); clients must send "
                                "get_weights(model) of the same model")
    state = {}
    for i, ((name, ref), array) in enumerate(zip(reference.items(), arrays)):
        tensor = torch.as_tensor(np.asarray(array))
        if tuple(tensor.shape) != tuple(ref.shape):
            raise InvalidValueError(f"{source}: array {i} ({name!r}) has shape {tuple(tensor.shape)}, the model's "
                                    f"entry has shape {tuple(ref.shape)}")
        state[name] = tensor.to(dtype=ref.dtype).clone()
    return state


def set_weights(model: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load ``arrays`` (every state_dict entry, in order) into ``model`` (what a client does on receipt)."""
    model.load_state_dict(state_from_arrays(model, arrays, source="set_weights"), strict=True)
