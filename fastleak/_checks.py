"""Argument checks shared across packages; each raises a ValueError that names the argument."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def known_fields(values: Iterable[str], config: type, what: str) -> None:
    """Reject names in ``values`` that are not fields of the dataclass ``config``."""
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
