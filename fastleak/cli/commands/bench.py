"""fastleak bench: run a benchmark suite of a source checkout."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError


def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="ops", help="ops, labels or attack")
    p.add_argument("--json", default=None, help="where to save the results (default runs/bench/<suite>.json)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="further options for the benchmark script")


@command("bench", "Run a benchmark suite from a source checkout and save its tables.",
         "  fastleak bench\n  fastleak bench --suite labels -- --quick", _configure_bench)
def bench(args: argparse.Namespace) -> int:
    checkout = Path(__file__).resolve().parents[3]
    script = checkout / "benchmarks" / f"bench_{args.suite}.py"
    if not script.exists():
        raise CliError(f"benchmark script {script} not found",
                       "run from a source checkout of fastleak (benchmarks/ is not installed with the package)")
    out = Path(args.json or Path("runs") / "bench" / f"{args.suite}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rest = [a for a in args.rest if a != "--"]
    # the thread policy's choice; the checkout on the path, so that its benchmarks/ package runs from any folder
    path = os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": path}
    code = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{args.suite}", "--json", str(out), *rest],
                           env=env)
    if code == 0:
        print(f"results: {out}")
    return code
