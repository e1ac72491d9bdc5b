"""Run one sweep job in the current process: ``fastleak.experiments.run`` -> a ``JobResult`` holding the
outcome's ``metrics()``."""
from __future__ import annotations

import logging
import socket
import time
import traceback
from typing import Any

import torch

from fastleak.sweeps.results import JobResult

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def failed_result(key: str, settings: dict[str, Any], error: str, *, attempts: int, wall_time_s: float,
                  trace: str | None = None) -> JobResult:
    return JobResult(key=key, settings=settings, status="failed", attempts=attempts, wall_time_s=wall_time_s,
                     error=error, traceback=trace, finished=_now(), host=socket.gethostname())


def execute_job(key: str, settings: dict[str, Any], attempts: int = 2, threads: int | None = None) -> JobResult:
    """Run the experiment ``settings`` up to ``attempts`` times until it does not raise.

    ``threads``: torch intra-op threads while the job runs (None leaves them as they are).
    Exceptions become a failed ``JobResult`` holding the last error; KeyboardInterrupt propagates.
    """
    from fastleak.experiments import ExperimentSpec, run

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    error, trace = "", None
    try:
        for attempt in range(1, attempts + 1):
            try:
                outcome = run(ExperimentSpec.from_dict(settings))
            except Exception as exc:
                error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
                log.info("job %s attempt %d of %d failed: %s", key[:12], attempt, attempts, error)
                continue
            return JobResult(key=key, settings=settings, status="ok", attempts=attempt,
                             wall_time_s=time.perf_counter() - start, metrics=outcome.metrics(),
                             finished=_now(), host=socket.gethostname())
        return failed_result(key, settings, error, attempts=attempts, wall_time_s=time.perf_counter() - start,
                             trace=trace)
    finally:
        if threads is not None:
            torch.set_num_threads(previous)
