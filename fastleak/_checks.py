"""Argument checks shared across packages; each raises a ValueError that names the argument."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from fastleak.errors import InvalidValueError


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValueError(f"{name} must be a positive int, got {value!r}")
    return value


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
