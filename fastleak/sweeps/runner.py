"""Run a sweep: skip the jobs already in the results file, run the rest, append each result."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastleak.sweeps.backends import BACKENDS, BackendOptions, resolve
from fastleak.sweeps.grid import Job, SweepSpec
from fastleak.sweeps.results import JobResult, ResultsWriter, finished_keys, read_results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Reported once before the first job (result None), then after every job."""

    done: int
    pending: int
    skipped: int
    result: JobResult | None


@dataclass(frozen=True)
class SweepSummary:
    output: Path
    backend: str
    total: int
    skipped: int
    ok: int
    failed: int


def default_output(sweep_path: str | os.PathLike) -> Path:
    return Path("runs") / "sweeps" / f"{Path(sweep_path).stem}.jsonl"


def pending_jobs(jobs: Sequence[Job], output: str | os.PathLike, *, retry_failed: bool = False) -> tuple[Job, ...]:
    """The jobs that the results file ``output`` does not yet hold (see ``finished_keys``)."""
    done = finished_keys(read_results(output), retry_failed=retry_failed)
    return tuple(job for job in jobs if job.key not in done)


def run_sweep(sweep: SweepSpec, output: str | os.PathLike, *, backend: str = "auto", workers: int | None = None,
              address: str | None = None, cpus_per_job: int | None = None, retry_failed: bool = False,
              callback: Callable[[Progress], None] | None = None) -> SweepSummary:
    """Run every job of ``sweep`` not yet recorded in ``output`` and append its result there.

    Jobs whose last record is ok are skipped; so are failed ones unless ``retry_failed``.
    A job that raises is tried ``sweep.attempts`` times in all, then recorded as failed; the
    sweep goes on. ``backend``: "auto" (ray when installed, else serial), "serial" or "ray".
    """
    options = BackendOptions(attempts=sweep.attempts, workers=workers, address=address, cpus_per_job=cpus_per_job)
    name = resolve(backend)
    output = Path(output)
    every = sweep.jobs()
    total = len(every)
    ok = failed = 0
    with ResultsWriter(output) as writer:
        jobs = pending_jobs(every, output, retry_failed=retry_failed)
        skipped = total - len(jobs)
        log.info("%s: %d jobs, %d already done, %d to run on the %s backend", sweep.source, total, skipped,
                 len(jobs), name)
        if callback:
            callback(Progress(done=0, pending=len(jobs), skipped=skipped, result=None))
        if jobs:
            results = BACKENDS.get(name)(jobs, options)
            try:
                for done, result in enumerate(results, start=1):
                    writer.append(result)
                    ok, failed = ok + result.ok, failed + (not result.ok)
                    if not result.ok:
                        log.warning("job %s failed after %d attempts: %s", result.key[:12], result.attempts,
                                    result.error)
                    if callback:
                        callback(Progress(done=done, pending=len(jobs), skipped=skipped, result=result))
            finally:
                results.close()
    return SweepSummary(output=output, backend=name, total=total, skipped=skipped, ok=ok, failed=failed)
