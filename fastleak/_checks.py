"""Argument checks shared across packages; each raises a ValueError (a TypeError for ``integer``) that names the
argument and returns the checked value."""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from fastleak.errors import InvalidTypeError, InvalidValueError


def all_finite(tensor: "torch.Tensor") -> bool:
    """Whether every entry of ``tensor`` is finite. A NaN or inf entry makes the sum NaN or inf, so a finite
    sum settles it in one reduction; only a sum that is not finite (a bad entry, or finite entries that
    overflow) is checked entry by entry."""
    import torch

    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(value: Any, name: str) -> int:
    """``value`` when it is an int (not a bool); else InvalidTypeError."""
    if not _is_int(value):
        raise InvalidTypeError(f"{name} must be an int, got {value!r}")
    return value


def _int_from(value: Any, name: str, low: int, what: str) -> int:
    if not _is_int(value) or value < low:
        raise InvalidValueError(f"{name} must be {what}, got {value!r}")
    return value


def positive_int(value: Any, name: str) -> int:
    return _int_from(value, name, 1, "a positive int")


def optional_positive_int(value: Any, name: str) -> int | None:
    if value is not None and (not _is_int(value) or value < 1):
        raise InvalidValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


def nonnegative_int(value: Any, name: str) -> int:
    return _int_from(value, name, 0, "a non-negative int")


def int_in_range(value: Any, name: str, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return value


def positive_ints(value: Any, name: str, example: str = "") -> tuple[int, ...]:
    """A non-empty sequence of positive ints, as a tuple."""
    if not isinstance(value, (tuple, list)) or not value or not all(_is_int(v) and v > 0 for v in value):
        raise InvalidValueError(f"{name} must be a sequence of positive ints{f' such as {example}' if example else ''}"
                                f", got {value!r}")
    return tuple(value)


def nonnegative_number(value: Any, name: str) -> float:
    """A finite int or float >= 0, as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def positive_number(value: Any, name: str) -> float:
    """A finite int or float > 0, as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def fraction(value: Any, name: str) -> float:
    """A number in [0, 1], as a float."""
    if nonnegative_number(value, name) > 1:
        raise InvalidValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def known_fields(values: Iterable[str], config: type, what: str) -> None:
    """Reject names in ``values`` that are not fields of the dataclass ``config``."""
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise InvalidValueError(f"unknown {what} option(s) {unknown}; valid options: {', '.join(sorted(valid))}")


def _fits(value: Any, expected: Any) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def typed_fields(values: Mapping[str, Any], config: type, what: str) -> None:
    """Reject values that do not have the annotated type of the dataclass field they set (an int
    passes for a float; a bool passes only for a bool)."""
    hints = typing.get_type_hints(config)
    for name, value in values.items():
        allowed = typing.get_args(hints[name]) or (hints[name],)
        if not any(_fits(value, expected) for expected in allowed):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise InvalidValueError(f"{what} option {name} must be {names}, got {value!r}")
