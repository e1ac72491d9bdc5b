"""What both sides of the peer comparison share: their options and the case files they take."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch


def side_options(description: str, out: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", default="runs/peers/cases")
    ap.add_argument("--only", default="", help="comma-separated prefixes of case names")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=out)
    ap.add_argument("--profile", action="store_true",
                    help="run under torch.profiler and write its table of ops beside each result (slower)")
    return ap


@contextlib.contextmanager
def profiled(enabled: bool, path: Path):
    """Profile the block's CPU ops when ``enabled`` and write the table, by self time, to ``path``."""
    if not enabled:
        yield
        return
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        yield
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30) + "\n")


def selected_cases(cases: str, only: str) -> list[Path]:
    prefixes = [p for p in only.split(",") if p]
    return [path for path in sorted(Path(cases).glob("*.pt"))
            if not prefixes or any(path.stem.startswith(p) for p in prefixes)]
