"""Attack sweeps: a grid of experiments from a TOML file, run on Ray or serially, with results
streamed into one resumable JSON Lines file, and summary tables and plots of that file.

    sweep = load("sweep.toml")                       # grid.py: schema and job keys
    run_sweep(sweep, "results.jsonl", backend="ray")   # runner.py, backends.py, results.py
    write_report("results.jsonl")                    # report.py

Ray is optional (``pip install fastleak[ray]``) and imported only by the ray backend.
"""
from fastleak.sweeps.backends import BACKENDS, BackendOptions, resolve
from fastleak.sweeps.execute import execute_job
from fastleak.sweeps.grid import Job, SweepSpec, job_key, load
from fastleak.sweeps.report import Summary, summarize, write_report
from fastleak.sweeps.results import JobResult, ResultsWriter, finished_keys, latest, read_results
from fastleak.sweeps.runner import Progress, SweepSummary, default_output, pending_jobs, run_sweep

__all__ = ["SweepSpec", "Job", "load", "job_key", "run_sweep", "pending_jobs", "default_output", "Progress",
           "SweepSummary", "BACKENDS", "BackendOptions", "resolve", "execute_job", "JobResult", "ResultsWriter",
           "read_results", "latest", "finished_keys", "Summary", "summarize", "write_report"]
