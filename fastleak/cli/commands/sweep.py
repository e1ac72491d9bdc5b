"""fastleak sweep: a grid of experiments on Ray or serially, and its report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError, interrupted


def _configure_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", nargs="?", help="sweep file (TOML: output, retries, [fixed], [grid], [[cases]])")
    p.add_argument("--output", default=None, help="results file (default: the file's 'output', else "
                   "runs/sweeps/<name>.jsonl)")
    p.add_argument("--backend", default="auto", help="auto (ray if installed), ray or serial")
    p.add_argument("--workers", type=int, default=None, help="parallel jobs of a local Ray (default: CPUs)")
    p.add_argument("--address", default=None, help="an existing Ray cluster, e.g. ray://head:10001 "
                   "(default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--cpus-per-job", type=int, default=None, help="CPUs and torch threads per job (Ray default 1)")
    p.add_argument("--retry-failed", action="store_true", help="run jobs recorded as failed again")
    p.add_argument("--dry-run", action="store_true", help="list the jobs still to run and exit")
    p.add_argument("--report", default=None, metavar="RESULTS",
                   help="summarise a results file instead (default: run the sweep file)")
    p.add_argument("--report-dir", default=None, help="where --report writes (default: <results>_report/)")


@command("sweep", "Run a grid of attack experiments from a TOML file on Ray (or serially), streaming results "
         "into a resumable JSONL file; or summarise such a file with --report.",
         "  fastleak sweep examples/sweep_defenses.toml\n"
         "  fastleak sweep grid.toml --address ray://head:10001 --output runs/grid.jsonl\n"
         "  fastleak sweep grid.toml --backend serial --retry-failed\n"
         "  fastleak sweep --report runs/sweep_defenses.jsonl\n"
         "a rerun skips the jobs already in the results file; the sweep file schema is documented in\n"
         "fastleak/sweeps/grid.py and the results format in fastleak/sweeps/results.py",
         _configure_sweep)
def sweep_command(args: argparse.Namespace) -> int:
    from fastleak import sweeps

    if bool(args.sweep) == bool(args.report):
        raise CliError("give either a sweep file or --report RESULTS", "see 'fastleak sweep --help'")
    fix = "fix the sweep file or options; see 'fastleak sweep --help'"
    try:
        if args.report:
            files = sweeps.write_report(args.report, args.report_dir)
            print(files.summary.table())
            print(f"\nreport: {files.markdown}" + "".join(f"\n        {p}" for p in files.plots))
            return 0
        sweep = sweeps.load(args.sweep)
        output = Path(args.output or sweep.output or sweeps.default_output(args.sweep))
        if args.dry_run:
            every = sweep.jobs()
            jobs = sweeps.pending_jobs(every, output, retry_failed=args.retry_failed)
            for job in jobs:
                print(job.key[:12], ", ".join(f"{k}={v}" for k, v in job.varied.items()))
            print(f"{len(jobs)} of {len(every)} jobs to run; results go to {output}")
            return 0
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc), fix) from None
    progress = _SweepProgress()
    try:
        summary = sweeps.run_sweep(sweep, output, backend=args.backend, workers=args.workers,
                                   address=args.address, cpus_per_job=args.cpus_per_job,
                                   retry_failed=args.retry_failed, callback=progress)
    except KeyboardInterrupt:
        progress.close()
        return interrupted(f"finished jobs are saved in {output}", "resume with the same command")
    except (ValueError, RuntimeError) as exc:
        raise CliError(str(exc), fix) from None
    finally:
        progress.close()
    print(f"{summary.total} jobs: {summary.skipped} already done, {summary.ok} ok, {summary.failed} failed "
          f"({summary.backend} backend)\nresults: {summary.output}\n  summarise with: fastleak sweep --report "
          f"{summary.output}")
    return 1 if summary.failed else 0


class _SweepProgress:
    """A tqdm bar over the jobs a sweep runs."""

    def __init__(self) -> None:
        self.bar, self.ok, self.failed = None, 0, 0

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.result is None:
            print(f"{event.pending + event.skipped} jobs, {event.skipped} already done", file=sys.stderr)
            self.bar = tqdm(total=event.pending, desc="sweep", unit="job", dynamic_ncols=True)
            return
        self.ok, self.failed = self.ok + event.result.ok, self.failed + (not event.result.ok)
        self.bar.update(1)
        self.bar.set_postfix(ok=self.ok, failed=self.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
