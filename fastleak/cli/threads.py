"""The command line's threading policy.

torch's OpenMP threads spin while they wait for work. On a machine whose cores are shared with
other processes, the spinning threads take turns with those processes and a run slows down
several-fold. So the command line

- sets ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep) before torch loads, since OpenMP reads it
  only then; a policy already in the environment is kept;
- gives torch one thread per core that is free when the command starts (sampled over 0.1 s from
  ``/proc/stat``), unless ``--threads`` says otherwise.

Measured in benchmarks/RESULTS.md, "The command line on a busy machine".
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from fastleak.cli.errors import CliError

WAIT_POLICY = "PASSIVE"
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int
    why: str  # how the count was chosen
    wait: str  # OpenMP's wait policy

    def __str__(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.why}; {self.wait})"


def set_wait_policy() -> str | None:
    """Put ``OMP_WAIT_POLICY=PASSIVE`` in the environment unless the user set a policy. None when
    torch was loaded already: the process is someone else's and keeps its settings."""
    if "torch" in sys.modules:
        return None
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies of each CPU in ``cpus``."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(v) for v in fields[:8]]
                times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def free_cores(seconds: float = SAMPLE_SECONDS) -> tuple[int, int] | None:
    """(free, usable): how many of this process's CPUs sat idle over ``seconds``, and how many it may
    use; None where ``/proc/stat`` or CPU affinity is not available."""
    try:
        cpus = set(os.sched_getaffinity(0))
        before = _cpu_times(cpus)
        time.sleep(seconds)
        after = _cpu_times(cpus)
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    idle = sum((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in after if c in before)
    return round(idle), len(cpus)


def apply(threads: int | None, wait: str | None) -> ThreadPolicy:
    """Set torch's thread count: ``threads`` if given, else one per free core when this process is
    the command line's own (``wait`` not None), else torch's setting as it is."""
    import torch

    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads must be a positive number of threads, got {threads}",
                           "leave it out to use the free cores, or pass e.g. --threads 1")
        torch.set_num_threads(threads)
        return ThreadPolicy(threads, "--threads", wait or "OpenMP wait policy as set when torch was loaded")
    if wait is None:
        return ThreadPolicy(torch.get_num_threads(), "as set by the calling process",
                            "OpenMP wait policy as set when torch was loaded")
    sample = free_cores()
    if sample is None:
        return ThreadPolicy(torch.get_num_threads(), "torch's default", wait)
    free, usable = sample
    count = max(1, min(free, torch.get_num_threads()))
    torch.set_num_threads(count)
    return ThreadPolicy(count, f"{free} of {usable} cores free at the start", wait)
