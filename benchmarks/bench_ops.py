"""Fused fastleak ops against eager, per-tensor PyTorch, measured side by side in one run.

    python -m benchmarks.bench_ops [--json runs/bench/ops.json] [--device cpu|cuda] [--repeat N] [--only NAME]

Each case module under benchmarks/cases/ contributes Case objects; every case is run
with both implementations on the same inputs, and the median times and the ratio
eager/fused are printed and written as JSON.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch

from benchmarks.cases import Case
from benchmarks.environment import environment, write_results


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device: str, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def all_cases(device: str) -> list[Case]:
    from benchmarks.cases import fc_row_stats, grad_distance, imprint_recover, total_variation

    return [c for mod in (grad_distance, total_variation, fc_row_stats, imprint_recover) for c in mod.cases(device)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="runs/bench/ops.json", help="write results to this JSON file")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed calls per side (default 20 on the CPU, 200 on CUDA, where one call takes "
                         "well under a millisecond and single timings scatter)")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 200 if args.device == "cuda" else 20

    import fastleak.ops  # noqa: F401  (loads the compiled ops)

    rows = []
    print(f"{'case':58s} {'eager ms':>9s} {'fused ms':>9s} {'ratio':>6s} {'target':>6s}")
    for case in all_cases(args.device):
        if args.only and args.only not in case.name:
            continue
        t_eager = median_time(case.eager, args.device, args.repeat)
        t_fused = median_time(case.fused, args.device, args.repeat)
        ratio = t_eager / t_fused
        ok = "ok" if ratio >= case.target else "MISS"
        print(f"{case.name:58s} {t_eager*1e3:9.3f} {t_fused*1e3:9.3f} {ratio:6.2f} {case.target:5.1f}x {ok}")
        rows.append({"case": case.name, "eager_ms": t_eager * 1e3, "fused_ms": t_fused * 1e3,
                     "ratio": ratio, "target": case.target, "met": ratio >= case.target})
    write_results(args.json, environment(args.device, repeat=args.repeat), rows)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
