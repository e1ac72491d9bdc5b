"""Argument checks shared by the defenses."""
from __future__ import annotations

import math
from typing import Any

from fastleak.errors import InvalidValueError


def nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def positive(value: Any, name: str) -> float:
    if nonnegative(value, name) == 0:
        raise InvalidValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def fraction(value: Any, name: str) -> float:
    if nonnegative(value, name) > 1:
        raise InvalidValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)
