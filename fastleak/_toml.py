"""Reading TOML files (configs, sweeps) with errors that name the file."""
from __future__ import annotations

import os
from typing import Any

from fastleak.errors import InvalidValueError

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The TOML table in ``path``; FileNotFoundError or ValueError naming ``what`` and the path."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"{what} {os.fspath(path)!r} is not valid TOML: {exc}") from None
