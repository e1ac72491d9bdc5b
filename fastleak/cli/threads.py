"""The command line's threading policy.

torch's OpenMP threads spin while they wait for work. On a machine whose cores are shared with
other processes, the spinning threads take turns with those processes and an attack slows down
2-10x. With ``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep instead; on two cores, one of them
kept busy by another process, an attack then takes about 1.4x its idle time rather than 2.5x or
more (benchmarks/RESULTS.md, "The command line on a busy machine"). OpenMP reads the policy once,
when torch loads, so it must be in the environment before that.
"""
from __future__ import annotations

import os
import sys

from fastleak.cli.errors import CliError

WAIT_POLICY = "PASSIVE"


def set_wait_policy() -> str:
    """Put ``OMP_WAIT_POLICY=PASSIVE`` in the environment unless the user set a policy, and say
    which policy torch's threads follow."""
    if "torch" in sys.modules:
        return "OpenMP wait policy as set when torch was loaded"
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``; None keeps torch's default, one per core."""
    if threads is None:
        return
    if threads < 1:
        raise CliError(f"--threads must be a positive number of threads, got {threads}",
                       "leave it out to use every core, or pass e.g. --threads 1")
    import torch

    torch.set_num_threads(threads)


def describe(policy: str) -> str:
    import torch

    count = torch.get_num_threads()
    return f"{count} thread{'s' if count != 1 else ''}, {policy}"
