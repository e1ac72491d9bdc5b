"""Writing files so that a reader, or a run killed mid-write, sees the old file or the new one."""
from __future__ import annotations

import os
from collections.abc import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` for a temporary path beside ``path``, then rename it over ``path``.

    The temporary name carries the process id, so processes writing the same file do not share
    it; it is removed if ``write`` raises."""
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
