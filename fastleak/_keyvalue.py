"""KEY=VALUE settings written as text (command-line options, protection rows), parsed by one set of rules.

* A value is a Python literal (``0.5``, ``(1, 2)``, ``None``, ``'x'``), ``true``/``false`` in any
  case, or else the text itself (``cosine``).
* A key is the text before the first ``=``; dashes in it become underscores (``per-layer`` is
  ``per_layer``). A later key replaces an earlier one.
* A named setting is ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (no commas inside values).

Errors are InvalidValueError naming the option (``what``) and showing an example.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from fastleak.errors import InvalidValueError


def parse_value(text: str) -> Any:
    """A Python literal, true/false in any case, or else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _pair(item: str, what: str, example: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InvalidValueError(f"{what} expects KEY=VALUE, got {item!r}; write e.g. {what} {example}")
    return key.strip().replace("-", "_"), parse_value(value.strip())


def key_values(items: Iterable[str] | None, what: str, example: str = "name=1") -> dict[str, Any]:
    """``{key: value}`` of ``["k=v", ...]`` (None: no items); ``what`` names the option in errors."""
    return dict(_pair(item, what, example) for item in items or ())


def named_key_values(text: str, what: str, example: str = "name:key=1") -> tuple[str, dict[str, Any]]:
    """``(NAME, {key: value})`` of ``"NAME"`` or ``"NAME:KEY=VALUE,KEY=VALUE"``."""
    name, _, params = text.partition(":")
    if not name.strip():
        raise InvalidValueError(f"{what} expects NAME or NAME:KEY=VALUE,KEY=VALUE, got {text!r}; write e.g. "
                                f"{what} {example}")
    try:
        return name.strip(), key_values(filter(None, params.split(",")), what)
    except InvalidValueError:
        raise InvalidValueError(f"{what} expects NAME or NAME:KEY=VALUE,KEY=VALUE, got {text!r}; write e.g. "
                                f"{what} {example}") from None
