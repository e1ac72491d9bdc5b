"""The run directory and its JSON files (format documented in the README; an experiment's are written by
``fastleak.reports.outcomes``).

runs/<timestamp>/
  config.json   {"version", "spec": ExperimentSpec fields, "attack_config": AttackConfig fields,
                 "torch", "fastleak"}: everything needed to reproduce the run
  metrics.json  {"version", "psnr", "ssim", "mse", "psnr_per_image", "ssim_per_image", "order",
                 "lpips", "labels": {"ln_acc", "le_acc", "exact"}, "wall_time_s",
                 "iterations", "iterations_per_second", "best_restart", "restart_losses", "resets",
                 "search": null or {"select", "chosen": {knob: value}, "candidates": [{"values", "score",
                 "dropped_at"}, ...]}}
  labels.json   {"version", "method", "true": [...], "recovered": [...],
                 "counts": {"class": [true, recovered], ...}}
  grid.png      ground truth (top) and matched reconstructions (bottom) with PSNR captions
  loss.png      objective per restart against the step
  checkpoint.pt the attack checkpoint (used by --resume)

Under the malicious threat (closed-form recovery, no iterations) metrics.json holds
``MaliciousOutcome.metrics()`` plus "psnr_per_image" (per true sample),
"bins" ({"status", "failed_checks"} per bin), grid.png shows the first 32 true samples over
their matched recoveries (black: none), recovered.pt holds the recovered inputs and their bins,
and there is no loss.png or checkpoint.pt.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

import fastleak
from fastleak._files import write_atomically

REPORT_VERSION = 1


def fresh_run_path(root: str | os.PathLike = "runs") -> Path:
    """``root/<timestamp>`` (with a suffix when taken), not yet created."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    suffix = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{suffix}"
        suffix += 1
    return path


def new_run_dir(root: str | os.PathLike = "runs") -> Path:
    path = fresh_run_path(root)
    path.mkdir(parents=True)
    return path


@contextmanager
def removed_if_it_fails_empty(run_dir: Path, created: bool) -> Iterator[Path]:
    """Remove ``run_dir`` when the run inside fails (Ctrl-C excepted) while the folder holds
    nothing but its config.json and was ``created`` for this run: a mistyped option leaves no
    folder behind, and a checkpoint or a result is never removed."""
    try:
        yield run_dir
    except Exception:
        if created and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {"config.json"}:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps({"version": REPORT_VERSION, **payload}, indent=2, sort_keys=True) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def write_config(run_dir: Path, spec_dict: dict[str, Any], attack_config: dict[str, Any] | None = None) -> None:
    write_json(run_dir / "config.json", {"spec": spec_dict, "attack_config": attack_config,
                                         "torch": torch.__version__, "fastleak": fastleak.__version__})
