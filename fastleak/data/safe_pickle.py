"""Reading the CIFAR "python version" batch files, which are pickles, without ever running code.

A pickle names the callables that rebuild its objects, and ``pickle.load`` calls them: a crafted
file can run any command. The CIFAR files only hold dicts, lists, strings, ints and numpy uint8
arrays, which need exactly three globals (numpy's array reconstructor, ``ndarray`` and ``dtype``);
everything else is refused before it is looked up.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from fastleak._checks import first_line
from fastleak.data.errors import DatasetError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]   # numpy's _reconstruct, wherever this numpy keeps it
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,   # as written by numpy 1.x (the CIFAR files)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # as written by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR batch never holds "
                                         "(only dicts, lists, strings and numpy arrays); refused unread") from None


def load_cifar_batch(path: Path, layout: str) -> dict[str, Any]:
    """The dict in a CIFAR batch file, with str keys; DatasetError for anything else in the file."""
    try:
        with open(path, "rb") as f:
            blob = _ArraysOnly(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; expected {layout}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DatasetError(f"{path} is not a readable CIFAR batch ({_reason(exc)}); expected {layout}") from None
    if not isinstance(blob, dict):
        raise DatasetError(f"{path} holds a {type(blob).__name__}, not a CIFAR batch dict; expected {layout}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in blob.items()}


def _reason(exc: BaseException) -> str:
    return "truncated" if isinstance(exc, EOFError) else first_line(exc)
