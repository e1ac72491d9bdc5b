"""Executors of sweep jobs, registered by name: ``serial`` (this process) and ``ray``.

A backend is ``fn(jobs, options) -> iterator of JobResult``, yielding each result as its job
finishes (in any order). Closing the iterator early cancels the jobs still queued.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from fastleak._checks import optional_positive_int, positive_int
from fastleak._registry import Registry
from fastleak.errors import InvalidValueError
from fastleak.sweeps.execute import execute_job, failed_result
from fastleak.sweeps.grid import Job
from fastleak.sweeps.results import JobResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendOptions:
    """attempts: tries per job (1 + retries). workers: parallel jobs of a local Ray started here
    (default: CPU count // cpus_per_job). address: an existing Ray cluster ("ray://host:10001",
    "auto"); default the RAY_ADDRESS environment variable, else a local Ray. cpus_per_job: CPUs
    (and torch threads) per job; None means 1 on Ray and leaves torch's setting alone in serial."""

    attempts: int = 2
    workers: int | None = None
    address: str | None = None
    cpus_per_job: int | None = None

    def __post_init__(self) -> None:
        positive_int(self.attempts, "attempts")
        optional_positive_int(self.workers, "workers")
        optional_positive_int(self.cpus_per_job, "cpus_per_job")


Backend = Callable[[Sequence[Job], BackendOptions], Iterator[JobResult]]
BACKENDS: Registry[Backend] = Registry("sweep backend")


def resolve(name: str) -> str:
    """``auto`` -> ``ray`` when ray is importable, else ``serial``; other names are checked."""
    if name == "auto":
        try:
            import ray  # noqa: F401
        except ImportError:
            log.warning("ray is not installed (pip install fastleak[ray]); running the sweep serially")
            return "serial"
        return "ray"
    BACKENDS.get(name)
    return name


@BACKENDS.register("serial")
def serial(jobs: Sequence[Job], options: BackendOptions) -> Iterator[JobResult]:
    if options.workers not in (None, 1) or options.address:
        log.warning("the serial backend runs one job at a time in this process; --workers/--address are ignored")
    for job in jobs:
        yield execute_job(job.key, job.settings, options.attempts, options.cpus_per_job)


def _connect(ray, options: BackendOptions) -> bool:
    """Connect to or start Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        log.info("using the Ray instance already initialised in this process")
        return False
    address = options.address or os.environ.get("RAY_ADDRESS")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        if address:
            log.info("connecting to the Ray cluster at %s", address)
            ray.init(address=address, log_to_driver=False)
        else:
            cpus = options.cpus_per_job or 1
            workers = options.workers or max(1, (os.cpu_count() or 1) // cpus)
            log.info("starting a local Ray with %d CPUs (%d parallel jobs)", workers * cpus, workers)
            ray.init(num_cpus=workers * cpus, include_dashboard=False, log_to_driver=False)
    return True


def resources(job: Job, cpus: int) -> dict[str, int]:
    """Ray resources of one job: ``cpus`` CPUs, and one GPU when its device is CUDA."""
    return {"num_cpus": cpus, "num_gpus": 1 if str(job.spec.device).startswith("cuda") else 0}


@BACKENDS.register("ray")
def ray_backend(jobs: Sequence[Job], options: BackendOptions) -> Iterator[JobResult]:
    try:
        import ray
    except ImportError:
        raise InvalidValueError("the ray backend needs Ray: pip install fastleak[ray], or use --backend "
                                "serial") from None
    started = _connect(ray, options)
    cpus = options.cpus_per_job or 1
    # max_retries re-runs a job whose worker process died; exceptions are retried inside execute_job.
    remote = ray.remote(max_retries=1)(execute_job)
    refs: dict = {}
    try:
        for job in jobs:
            ref = remote.options(**resources(job, cpus)).remote(job.key, job.settings, options.attempts, cpus)
            refs[ref] = job
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            job = refs.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                log.warning("job %s was lost by Ray: %s", job.key[:12], exc)
                result = failed_result(job.key, job.settings, f"{type(exc).__name__}: {exc}",
                                       attempts=options.attempts, wall_time_s=0.0)
            yield result
    finally:
        for ref in refs:
            ray.cancel(ref)
        if started:
            ray.shutdown()
