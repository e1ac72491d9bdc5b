"""Argument checks shared across packages; each raises a ValueError that names the argument."""
from __future__ import annotations

from typing import Any


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
