"""The sweep results file: JSON Lines, one record per finished job, append-only.

Each line is one ``JobResult.as_dict()``::

    {"version": 1, "key": "<sha256 of the job's settings>", "status": "ok" | "failed",
     "settings": {ExperimentSpec fields}, "attempts": 1, "wall_time_s": 12.3,
     "metrics": {"psnr", "ssim", "mse", "ln_acc", "le_acc", "exact", "label_method",
                 "iterations", "attack_time_s", "iterations_per_second"} | null,
     "error": "ValueError: ..." | null, "traceback": "..." | null,
     "finished": "2026-11-25T17:20:52Z", "host": "node-1"}

Lines are written whole, flushed and fsync'ed one by one, so a killed sweep leaves at most one
torn last line (no trailing newline). Readers ignore it; ``ResultsWriter`` cuts it off before
appending. When a key has several records (a failed job retried later), the last one counts.
Non-finite metric values are written as null.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastleak.errors import InvalidValueError

log = logging.getLogger(__name__)

RESULTS_VERSION = 1
STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class JobResult:
    key: str
    settings: dict[str, Any]
    status: str
    attempts: int
    wall_time_s: float
    metrics: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    finished: str = ""
    host: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InvalidValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        metrics = None if self.metrics is None else {k: _finite(v) for k, v in self.metrics.items()}
        return {"version": RESULTS_VERSION, "key": self.key, "status": self.status, "settings": self.settings,
                "attempts": self.attempts, "wall_time_s": self.wall_time_s, "metrics": metrics,
                "error": self.error, "traceback": self.traceback, "finished": self.finished, "host": self.host}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "JobResult":
        if values.get("version") != RESULTS_VERSION:
            raise InvalidValueError(f"results record version {values.get('version')!r} is not {RESULTS_VERSION}")
        fields = {k: v for k, v in values.items() if k != "version"}
        return cls(**fields)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _line(result: JobResult) -> bytes:
    return (json.dumps(result.as_dict(), allow_nan=False) + "\n").encode("utf-8")


def read_results(path: str | os.PathLike) -> tuple[JobResult, ...]:
    """Every complete record in file order; a missing file has none. A torn last line is skipped."""
    path = Path(path)
    if not path.exists():
        return ()
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:
        log.warning("%s: ignoring a torn last line (%d bytes) left by an interrupted write", path, len(lines[-1]))
    out = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            out.append(JobResult.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise InvalidValueError(f"{path}, line {number}: not a sweep results record ({exc})") from None
    return tuple(out)


def latest(results: Iterable[JobResult]) -> dict[str, JobResult]:
    """The last record of every key, in order of first appearance."""
    out: dict[str, JobResult] = {}
    for result in results:
        out[result.key] = result
    return out


def finished_keys(results: Iterable[JobResult], *, retry_failed: bool = False) -> set[str]:
    """Keys not to run again: those whose last record is ok, plus failed ones unless ``retry_failed``."""
    return {key for key, r in latest(results).items() if r.ok or not retry_failed}


@dataclass
class ResultsWriter:
    """Appends records to a results file, holding an exclusive lock so two sweeps cannot share it.

    Use as a context manager. Opening cuts off a torn last line; each ``append`` writes one whole
    line, then flushes and fsyncs.
    """

    path: Path
    _file: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def __enter__(self) -> "ResultsWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = open(self.path, "ab")
        try:
            _lock(self._file, self.path)
            self._cut_torn_tail()
        except BaseException:
            self._file.close()
            raise
        if created:
            _fsync_dir(self.path.parent)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()
        self._file = None

    def _cut_torn_tail(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write",
                        self.path, len(data) - keep)
            self._file.truncate(keep)
            os.fsync(self._file.fileno())

    def append(self, result: JobResult) -> None:
        if self._file is None:
            raise RuntimeError("ResultsWriter.append outside its 'with' block")
        self._file.write(_line(result))
        self._file.flush()
        os.fsync(self._file.fileno())


def _lock(f: Any, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(f"{path} is being written by another sweep; wait for it or choose another "
                           "output file") from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
